"""The live progress line of a training run (rank 0), and the timers behind it.

    step 40/120 (33%) | epoch 2 | loss 5.912 | acc@1 0.219 | 41.3 clips/s | data-wait 12% | eta 1m56s
        | ms/clip decode 7.7 crop 1.4 fame 3.0          (all on one line)

Loss and acc@1 are the means over the steps since the last line (MoCo's instance task); the
read-out, where the run reads its features out (`train.readout_every`), is a linear probe's
accuracy on held-out videos' features (pretrain.readout): what the encoder knows of the classes.
Clips/s, data-wait (the share of wall time spent waiting for the next batch) and the eta are
measured over the same steps as the loss.
"""

from __future__ import annotations

import math
import time


def format_duration(seconds: float) -> str:
    """'1h02m', '3m05s', '42s'."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def format_line(step: int, total: int, epoch: int, metrics: dict) -> str:
    """One progress line from the metrics of the last interval."""
    share = 100.0 * step / max(total, 1)
    return (
        f"step {step}/{total} ({share:.0f}%) | epoch {epoch} | loss {metrics['loss']:.3f} | acc@1 {metrics['acc1']:.3f}"
        f" | {metrics['clips_per_s']:.1f} clips/s | data-wait {100 * metrics['data_wait']:.0f}% | eta "
        f"{format_duration(metrics['eta_s'])}"
        + (f" | read-out {metrics['readout']:.3f}" if "readout" in metrics else "")
    ) + stage_text(metrics)


def stage_text(metrics: dict) -> str:
    """' | ms/clip decode 7.7 crop 1.4 fame 3.0' from the data tasks' per-clip timings ('' without;
    no 'fame' part for a method without FAME masks)."""
    if "decode_ms" not in metrics:
        return ""
    mask = metrics.get("mask_ms", 0.0)
    return f" | ms/clip decode {metrics['decode_ms']:.1f} crop {metrics.get('crop_ms', 0.0):.1f}" + (
        f" fame {mask:.1f}" if mask else ""
    )


class StepTimer:
    """Splits wall time into waiting for data, computing, and bookkeeping (reports, checkpoints)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.wait = 0.0
        self.compute = 0.0
        self.bookkeeping = 0.0
        self.steps = 0
        self.clips = 0
        self._mark = time.perf_counter()

    def data_ready(self) -> None:
        """Call when the next batch has arrived: the time since the last mark was data wait."""
        now = time.perf_counter()
        self.wait += now - self._mark
        self._mark = now

    def step_done(self, clips: int) -> None:
        """Call after the optimizer step: the time since data arrived was compute."""
        now = time.perf_counter()
        self.compute += now - self._mark
        self._mark = now
        self.steps += 1
        self.clips += clips

    def bookkeeping_done(self) -> None:
        """Call after logging / reporting / checkpointing: counted in step time, not as data wait."""
        now = time.perf_counter()
        self.bookkeeping += now - self._mark
        self._mark = now

    def summary(self, steps_left: int) -> dict:
        """clips/s, data-wait share and eta over the interval since the last reset, up to now:
        the time since the last mark (a log step's wait for the queued work, say) counts as
        bookkeeping, so no second of the interval is lost between summary() and reset()."""
        self.bookkeeping_done()
        elapsed = max(self.wait + self.compute + self.bookkeeping, 1e-9)
        seconds_per_step = elapsed / max(self.steps, 1)
        return {
            "clips_per_s": self.clips / elapsed,
            "data_wait": self.wait / elapsed,
            "bookkeeping": self.bookkeeping / elapsed,
            "compute_s": self.compute / max(self.steps, 1),
            "step_time_s": seconds_per_step,
            "eta_s": seconds_per_step * steps_left,
        }


def _finite(value) -> float | None:
    """A metrics record's number as a float; None for anything else (text, a bool, inf, nan, or
    an integer too large for a float: metrics.jsonl is a file anyone can edit)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def stage_report(records: list[dict], last: int = 50) -> str:
    """Where a run's time goes, over its last `last` step records: data wait against compute,
    and what a clip costs on the data side (decode, crop, FAME mask); '' without records."""
    recent = [record for record in records[-last:] if _finite(record.get("data_wait")) is not None]
    if not recent:
        return ""

    def mean(key: str) -> float | None:
        values = [_finite(record.get(key)) for record in recent]
        values = [value for value in values if value is not None]
        return sum(values) / len(values) if values else None

    wait, step = mean("data_wait"), mean("step_time_s")
    text = f"over the last {len(recent)} steps: data wait {100 * wait:.0f}% of the step" + (
        f" ({step:.2f} s)" if step else ""
    )
    stages = {name: mean(key) for name, key in (("decode", "decode_ms"), ("crop", "crop_ms"), ("FAME mask", "mask_ms"))}
    stages = {name: value for name, value in stages.items() if value is not None}
    bound = (
        "the data side (add CPUs for decoding, data.data_cpus, or transcode the dataset)"
        if wait > 0.2
        else "the training step"
    )
    text += f"; bottleneck: {bound}"
    if stages:
        worst = max(stages, key=stages.get)
        text += (
            "; per clip on the data side: "
            + ", ".join(f"{name} {value:.1f} ms" for name, value in stages.items())
            + f" ({worst} dominates)"
        )
    return text
