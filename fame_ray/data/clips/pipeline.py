"""Manifest -> streams of uint8 clips for training and eval, decoded in Ray tasks.

Pretraining (`pretrain_stream`): each Ray Train worker streams its own rows of every step. Which
video every clip of every step comes from is a pure function of the run's seed
(`sampling.EpochSampler`: a fresh permutation of all videos per epoch), so a resumed run picks
up in the epoch and at the step where it stopped, and two runs with the same seed and worker
count get the same clips. CPU tasks decode two clips of each video at distinct random
positions, crop and flip them, and compute the FAME mask of the query clip; the rows arrive at
the worker in order, exactly one per-worker batch per step:
{"view_q", "view_k": uint8 C T H W, "mask": uint8 H W (FAME only), "label", "video_index"}.
For Background Erasing, view_k is a second crop of view_q's clip (its positive: the same
segment) and "view_n" a crop of the other clip (its intra-video negative). For DCLR,
"static_q" and "static_k" (uint8 C H W): one raw frame of each clip, at the same position in
both (drawn in [0, frames_per_clip * temporal_stride), the official dataset's 32 raw frames of a
16-frame clip at stride 2), each with its own random resized crop and flip; the worker repeats
it over time.
The merge itself runs on the worker over its full batch (fame_ray.pretrain.step), so every
clip of every step takes its background from a full per-worker batch.
How the rows are made (`data.stream`): 'tasks' (`StepStream`, the default) runs one plain Ray task
per step, a few steps ahead, and takes the results in step order; 'ray_data' (`RayDataStream`)
is a Ray Data map_batches stream with `preserve_order`. Both call the same row function, so they
give the same rows; on 2 CPUs the first delivers about twice the clips/s of the second (Ray
Data's executor kept 1.2 of 2 CPUs busy; `fame-ray bench data` measures both against a torch
DataLoader).

Finetuning / eval (`supervised_dataset`): a Ray Data dataset of rows {"clip": uint8 C T H W,
"label", "video_index", "clip_index"}; training rows are reshuffled across all videos every epoch.

CPU budget: the decode tasks ask for fractions of the CPUs `runtime.plan_resources` leaves to
the data side (a pretraining stream `tasks` of them, Ray running no more at once than those CPUs
hold), so the whole pipeline fits in what the training workers leave free (no deadlock on 2 CPUs).

A video that fails to decode never breaks a step: pretraining takes a replacement video
(`EpochSampler.replacement`), evaluation skips it; both count it in a small named actor that
`decode_failures()` reads.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import ray
import torch

from fame_ray.config import DataConfig
from fame_ray.data import manifest
from fame_ray.data.clips import decode, fame, sampling, transforms
from fame_ray.errors import UserError
from fame_ray.storage import Location

log = logging.getLogger(__name__)

FAILURE_COUNTER = "fame_ray_decode_failures"
# Keep at most this many failing paths (with reasons) for the report; the count is exact.
FAILURE_EXAMPLES = 20
# Blocks of an evaluation dataset: enough for parallel decode tasks, few enough to plan fast.
TARGET_BLOCKS = 1000
# Blocks of a training dataset, whose rows Ray Data reshuffles every epoch: its random_shuffle costs
# about the square of the block count (240 one-row blocks: 59 s an epoch on 2 CPUs; 32 blocks: 4 s),
# so a few per decode task, at least this many.
SHUFFLE_BLOCKS = 32
# Other videos tried in place of one that fails to decode, before the step gives up.
REPLACEMENTS = 3
# Calls a decoding task's worker process serves before Ray replaces it with a fresh one: bounds
# what an abandoned decode thread or decord's slow growth can hold (a new process costs about a
# second; a pretraining task is one step).
TASK_CALLS = 200
# Steps a pretraining stream keeps decoding beyond one per task: what the worker's next steps
# find ready while it trains (each holds one per-worker batch of uint8 clips in the object store).
PREFETCH_STEPS = 2
# The per-clip stage times every pretraining row carries (milliseconds).
STAGE_COLUMNS = ("decode_ms", "crop_ms", "mask_ms")


@ray.remote(num_cpus=0)
class FailureCounter:
    """Counts videos skipped because they failed to decode (a named actor per Ray job)."""

    def __init__(self):
        self.count = 0
        self.examples: list[tuple[str, str]] = []

    def add(self, path: str, reason: str) -> None:
        self.count += 1
        if len(self.examples) < FAILURE_EXAMPLES:
            self.examples.append((path, reason))

    def report(self) -> dict:
        return {"count": self.count, "examples": list(self.examples)}


_COUNTERS: dict = {}


def failure_counter():
    """The job's decode-failure counter actor (created on first use).

    This process keeps a reference per Ray job, so the actor lives as long as the job
    (an actor nobody references any more is removed by Ray).
    """
    job = ray.get_runtime_context().get_job_id()
    if job not in _COUNTERS:
        _COUNTERS[job] = FailureCounter.options(name=FAILURE_COUNTER, get_if_exists=True).remote()
    return _COUNTERS[job]


def decode_failures() -> dict:
    """{"count": videos skipped so far in this Ray job, "examples": [(path, reason), ...]}."""
    return ray.get(failure_counter().report.remote())


def _count_failure(counter, path: str, error: Exception) -> None:
    log.warning("video failed to decode: %s", error)
    # Waited for, so the count is up to date once the batch holding this row arrives;
    # a lost counter must not turn a skipped video into a failed job.
    try:
        ray.get(counter.add.remote(path, str(error)))
    except ray.exceptions.RayError as lost:
        log.warning("could not count the skipped video: %s", lost)


def load_manifest(location: Location, data: DataConfig) -> pa.Table:
    """The manifest with a `video_index` column (row number), checked against the crop size."""
    table = manifest.read(location)
    if table.num_rows == 0:
        raise UserError(f"manifest {location} lists no videos", "run `fame-ray data prepare` on a dataset with videos")
    sizes = np.minimum(table["height"].to_numpy(), table["width"].to_numpy())
    known = sizes[sizes > 0]
    if known.size:
        row = int(np.argmin(np.where(sizes > 0, sizes, np.iinfo(np.int32).max)))
        transforms.check_crop_fits(
            data.crop_size,
            int(table["height"][row].as_py()),
            int(table["width"][row].as_py()),
            table["path"][row].as_py(),
        )
    return table.append_column("video_index", pa.array(np.arange(table.num_rows), pa.int64()))


@functools.lru_cache(maxsize=4)
def videos_of(location: Location) -> dict:
    """The manifest as plain columns, read once per process (tasks of a run share it)."""
    table = manifest.read(location)
    return {
        name: table[name].to_pylist() if name in ("path", "decoder") else table[name].to_numpy()
        for name in ("path", "label", "start_frame", "end_frame", "decoder")
    }


# ---------------------------------------------------------------------------------------
# pretraining


@dataclass(frozen=True)
class PretrainShard:
    """What one Ray Train worker streams: its rows of the run, from `first_step` on."""

    manifest: Location
    data: DataConfig
    sampler: sampling.EpochSampler
    first_step: int
    total_steps: int
    masks: bool
    """Compute the FAME mask of each query clip (method 'fame')."""
    beta: float = 0.5
    segment_positive: bool = False
    """Background Erasing ('be'): view_k is a second crop of view_q's segment (BE's positive) and
    view_n a crop of the video's other clip (BE's intra-video negative)."""
    statics: bool = False
    """DCLR ('dclr'): a static frame of each clip, static_q and static_k (C H W), cropped on its own."""

    def segments(self, steps_per_segment: int = 2000) -> list[range]:
        """The steps still to stream, cut at every epoch's end and into runs of at most
        `steps_per_segment` (each one Ray Data execution, whose stats are kept per epoch: long
        enough that starting one costs nothing, short enough to plan fast)."""
        per_epoch = self.sampler.steps_per_epoch
        out, start = [], self.first_step
        while start < self.total_steps:
            end = min(start + steps_per_segment, (start // per_epoch + 1) * per_epoch, self.total_steps)
            out.append(range(start, end))
            start = end
        return out


def clip_pair(videos: dict, video: int, epoch: int, shard: PretrainShard) -> dict:
    """Two clips of one video (distinct positions), cropped, flipped, and the query's mask (for
    Background Erasing three crops: two of the first clip, one of the second; for DCLR a static
    frame of each clip as well); with the milliseconds each stage took (the pipeline's live
    telemetry)."""
    data = shard.data
    rng = sampling.clip_rng(shard.sampler.seed, epoch, video)
    start, end = int(videos["start_frame"][video]), int(videos["end_frame"][video])
    offsets = sampling.distinct_offsets(end - start, data.clip_span, 2, rng)
    stills = ()
    if shard.statics:
        # One index for both clips, uniform over the raw frames the clip spans (official).
        index = int(rng.integers(data.frames_per_clip * data.temporal_stride))
        stills = tuple(offset + index for offset in offsets)
    source = shard.manifest.at(videos["path"][video])
    started = time.perf_counter()
    clips = decode.decode_clips(source, range(start, end), offsets, data, videos["decoder"][video], stills)
    clips, frames = clips[: len(offsets)], clips[len(offsets) :]
    decoded = time.perf_counter()
    # Background Erasing crops the first clip twice (anchor and positive) and the second once.
    sources = (clips[0], clips[0], clips[1]) if shard.segment_positive else clips
    query, key, *negative = (
        np.ascontiguousarray(
            transforms.random_resized_crop(
                clip, data.crop_size, data.crop_scale, rng, antialias=data.resize_antialias
            ).transpose(3, 0, 1, 2)
        )
        for clip in sources
    )
    row = {"view_q": query, "view_k": key, "label": np.int64(videos["label"][video]), "video_index": np.int64(video)}
    if negative:
        row["view_n"] = negative[0]
    for name, frame in zip(("static_q", "static_k"), frames):
        crop = transforms.random_resized_crop(
            frame, data.crop_size, data.crop_scale, rng, antialias=data.resize_antialias
        )
        row[name] = np.ascontiguousarray(crop[0].transpose(2, 0, 1))
    cropped = time.perf_counter()
    if shard.masks:
        ties = torch.Generator().manual_seed(int(rng.integers(2**62)))
        row["mask"] = fame.clip_mask(torch.from_numpy(query), shard.beta, ties).numpy()
    # Per clip: decoding produces two clips, cropping two (three for BE; DCLR's static frames
    # counted with their clips), the mask is of the query clip only.
    row.update(
        decode_ms=np.float32(500 * (decoded - started)),
        crop_ms=np.float32(1000 * (cropped - decoded) / len(sources)),
        mask_ms=np.float32(1000 * (time.perf_counter() - cropped) if shard.masks else 0.0),
    )
    return row


def _pretrain_row(videos: dict, step: int, slot: int, shard: PretrainShard, counter) -> dict:
    """The row of (step, slot): its video, or a replacement when that one fails to decode."""
    epoch, video = shard.sampler.video(step, slot)
    for attempt in range(REPLACEMENTS + 1):
        try:
            return clip_pair(videos, video, epoch, shard)
        except decode.DecodeError as error:
            _count_failure(counter, videos["path"][video], error)
            epoch, video = shard.sampler.replacement(step, slot, attempt)
    raise decode.DecodeError(
        f"step {step}: {REPLACEMENTS + 1} videos in a row failed to decode; see `fame-ray runs show` and the data"
    )


def _stacked(rows: list[dict]) -> dict:
    """Rows -> one array per column, a row each."""
    return {name: np.stack([row[name] for row in rows]) for name in rows[0]}


def step_rows(shard: PretrainShard, step: int, counter) -> dict:
    """The worker's rows of one step (its per-worker batch, slot by slot), stacked."""
    videos = videos_of(shard.manifest)
    return _stacked(
        [_pretrain_row(videos, step, slot, shard, counter) for slot in range(shard.sampler.per_worker_batch)]
    )


# Ray: one step's rows; a fresh worker process every TASK_CALLS steps; a crashed worker is retried.
@ray.remote(max_calls=TASK_CALLS, max_retries=3)
def _step_task(shard: PretrainShard, step: int, counter) -> dict:
    return step_rows(shard, step, counter)


@dataclass
class _Segment:
    """What a task stream delivered over one segment of its steps (its stats file)."""

    steps: range
    delivered: int = 0
    wait_s: float = 0.0
    first_wait_s: float = 0.0
    longest_wait_s: float = 0.0
    started: float = 0.0
    ended: float = 0.0
    stage_ms: dict = field(default_factory=dict)

    def record(self, waited: float, rows: dict) -> None:
        if self.delivered == 0:
            self.first_wait_s = waited
        else:
            self.longest_wait_s = max(self.longest_wait_s, waited)
        self.wait_s += waited
        self.delivered += 1
        self.ended = time.perf_counter()
        for name in STAGE_COLUMNS:
            if name in rows:
                self.stage_ms[name] = self.stage_ms.get(name, 0.0) + float(np.mean(rows[name]))


class _StepFeeder:
    """Starts a stream's step tasks in step order: at most `tasks` running (what the plan grants;
    tasks queued beyond it would make an autoscaler add nodes the plan never asked for) and at
    most `ahead` steps running or done that the worker has not taken. A thread starts the next
    task as soon as one ends, while the worker trains; `take(step)` hands over a step's result."""

    def __init__(self, submit, steps: range, tasks: int, ahead: int, poll_s: float = 0.1):
        self.submit, self.upcoming, self.tasks, self.ahead, self.poll_s = submit, iter(steps), tasks, ahead, poll_s
        self.changed = threading.Condition()
        self.running: dict = {}  # ref -> step
        self.done: dict = {}  # step -> ref
        self.stopped, self.error = False, None
        self.thread = threading.Thread(target=self._watch, name="fame-ray-step-feeder", daemon=True)

    def start(self) -> _StepFeeder:
        """Start the first steps and the thread that starts the rest."""
        with self.changed:
            self._fill()
        self.thread.start()
        return self

    def _fill(self) -> None:
        """Start steps while there is room (the caller holds the lock)."""
        while len(self.running) < self.tasks and len(self.running) + len(self.done) < self.ahead:
            step = next(self.upcoming, None)
            if step is None:
                return
            self.running[self.submit(step)] = step

    def _watch(self) -> None:
        try:
            while True:
                with self.changed:
                    if self.stopped:
                        return
                    refs = list(self.running)
                    if not refs:  # all started are done: wait until the worker takes one
                        self.changed.wait(self.poll_s)
                        continue
                ended, _ = ray.wait(refs, num_returns=1, timeout=self.poll_s)  # Ray: the next task to end
                with self.changed:
                    for ref in ended:
                        self.done[self.running.pop(ref)] = ref
                    self._fill()
                    self.changed.notify_all()
        except Exception as error:  # noqa: BLE001 - handed to the worker, which raises it
            with self.changed:
                self.error = error
                self.changed.notify_all()

    def take(self, step: int):
        """The ref of `step`'s rows once its task has ended (the next step the worker trains)."""
        with self.changed:
            while step not in self.done:
                if self.error is not None:
                    raise self.error
                self.changed.wait(self.poll_s)
            ref = self.done.pop(step)
            self._fill()
            self.changed.notify_all()
            return ref

    def stop(self) -> None:
        """Stop starting steps; cancel those running or not taken."""
        with self.changed:
            self.stopped = True
            left = [*self.running, *self.done.values()]
            self.changed.notify_all()
        self.thread.join(timeout=10 * self.poll_s + 5)
        for ref in left:
            ray.cancel(ref)


class StepStream:
    """This worker's rows of `steps` (data.stream 'tasks', the default): one Ray task per step,
    `tasks` at once (`task_cpus` each, what the plan grants), up to `tasks` + PREFETCH_STEPS steps
    decoded ahead of the one the worker trains, taken in step order (`_StepFeeder`): the decode
    tasks keep working while the worker trains, as a DataLoader's worker processes do. The
    tasks are scheduled outside any placement group the worker runs in. One stream runs
    across epochs (no cold start at an epoch's first step); its stats are kept per segment of
    `segments` (default: all of `steps`), `on_segment(steps, text)` called as each one ends."""

    def __init__(
        self, shard: PretrainShard, steps: range, tasks: int, task_cpus: float, segments=None, on_segment=None
    ):
        self.shard, self.steps, self.tasks, self.task_cpus = shard, steps, tasks, task_cpus
        self.ahead = tasks + PREFETCH_STEPS
        self.segments = list(segments) if segments is not None else [steps]
        self.on_segment = on_segment
        self.last_stats = ""
        self._segment: _Segment | None = None

    def iter_batches(self):
        """One dict of numpy arrays (writable) per step, in step order."""
        remote = _step_task.options(num_cpus=self.task_cpus, scheduling_strategy="DEFAULT")
        shard, counter = ray.put(self.shard), failure_counter()
        feeder = _StepFeeder(
            lambda step: remote.remote(shard, step, counter), self.steps, self.tasks, self.ahead
        ).start()
        segments = iter(self.segments)
        try:
            for step in self.steps:
                if self._segment is None or step not in self._segment.steps:
                    self._close_segment()
                    self._segment = _Segment(next(s for s in segments if step in s), started=time.perf_counter())
                asked = time.perf_counter()
                rows = ray.get(feeder.take(step))  # Ray: the step's rows, decoded meanwhile
                self._segment.record(time.perf_counter() - asked, rows)
                # Writable copies: the object store's arrays are read-only, and the step may work in place.
                yield {name: np.array(column) for name, column in rows.items()}
        finally:  # the worker stopped early (last step, an error): drop the steps it will not take
            feeder.stop()
            self._close_segment()

    def iter_torch_batches(self):
        """`iter_batches` as torch tensors."""
        for batch in self.iter_batches():
            yield {name: torch.from_numpy(column) for name, column in batch.items()}

    def _close_segment(self) -> None:
        segment, self._segment = self._segment, None
        if segment is None:
            return
        self.last_stats = self._text(segment)
        if self.on_segment is not None:
            self.on_segment(segment.steps, self.last_stats)

    def stats(self) -> str:
        """The last segment's stats (the current one while it runs)."""
        return self._text(self._segment) if self._segment is not None else self.last_stats

    def _text(self, segment: _Segment) -> str:
        """Steps, CPUs, the worker's wait for data, per-clip stage times of one segment."""
        steps, done = segment.steps, max(segment.delivered, 1)
        wall = max(segment.ended - segment.started, 1e-9)
        stages = ", ".join(
            f"{name.removesuffix('_ms')} {total / done:.1f} ms" for name, total in segment.stage_ms.items()
        )
        return "\n".join(
            [
                f"fame-ray step stream (data.stream=tasks), steps {steps.start + 1}-{steps.stop}: {segment.delivered} "
                f"of {len(steps)} delivered, {self.shard.sampler.per_worker_batch} rows each",
                f"one Ray task per step, {self.tasks} at once x {self.task_cpus:g} CPU, up to {self.ahead} steps "
                "decoded ahead, across segments",
                f"the worker waited for data {segment.wait_s:.1f} s of {wall:.1f} s ({segment.wait_s / wall:.0%}): "
                f"the segment's first step {segment.first_wait_s:.2f} s, the longest after it "
                f"{segment.longest_wait_s:.2f} s",
                f"per clip, means over the steps: {stages}",
                "",
            ]
        )


def _pretrain_batch(batch: dict, shard: PretrainShard, first_step: int, counter) -> dict:
    """Ray Data's map_batches form: rows numbered from `first_step`'s first clip -> stacked."""
    videos = videos_of(shard.manifest)
    per_worker = shard.sampler.per_worker_batch
    return _stacked(
        [
            _pretrain_row(videos, first_step + int(row) // per_worker, int(row) % per_worker, shard, counter)
            for row in batch["id"]
        ]
    )


class RayDataStream:
    """This worker's rows of `steps` (data.stream 'ray_data'): a Ray Data map_batches stream,
    one block (one task, at most `tasks` at once) per step, in order."""

    def __init__(self, shard: PretrainShard, steps: range, tasks: int, task_cpus: float):
        self.shard = shard
        per_worker = shard.sampler.per_worker_batch
        dataset = ray.data.range(len(steps) * per_worker, override_num_blocks=max(1, len(steps)))
        # In order: row n is the (n % per_worker)-th clip of step first + n // per_worker.
        dataset.context.execution_options.preserve_order = True
        self.dataset = dataset.map_batches(
            _pretrain_batch,
            fn_kwargs={"shard": shard, "first_step": steps.start, "counter": failure_counter()},
            batch_size=per_worker,
            batch_format="numpy",
            num_cpus=task_cpus,
            compute=ray.data.TaskPoolStrategy(size=tasks),
            max_calls=TASK_CALLS,
        )

    def iter_batches(self):
        """One dict of numpy arrays per step: iterated at the block size it was built with."""
        return self.dataset.iter_batches(batch_size=self.shard.sampler.per_worker_batch, batch_format="numpy")

    def iter_torch_batches(self):
        """`iter_batches` as torch tensors."""
        return self.dataset.iter_torch_batches(batch_size=self.shard.sampler.per_worker_batch, prefetch_batches=2)

    def stats(self) -> str:
        """Ray Data's execution stats."""
        return self.dataset.stats()


def pretrain_stream(shard: PretrainShard, steps: range, tasks: int, task_cpus: float) -> StepStream | RayDataStream:
    """This worker's rows of `steps` (across epoch boundaries), one batch per step in step order,
    made as `shard.data.stream` says: `.iter_batches()` (numpy), `.iter_torch_batches()`, `.stats()`."""
    kind = StepStream if shard.data.stream == "tasks" else RayDataStream
    return kind(shard, steps, tasks, task_cpus)


def pretrain_batches(shard: PretrainShard, tasks: int, task_cpus: float, keep_stats):
    """This worker's torch batches from `shard.first_step` to the end, one per step, and
    `keep_stats(steps, stats)` at the end of every segment (`shard.segments()`; `stats()` gives the
    text): one task stream across all of them, or one Ray Data execution per segment."""
    segments = shard.segments()
    if not segments:
        return
    if shard.data.stream == "tasks":
        every = range(segments[0].start, segments[-1].stop)
        stream = StepStream(
            shard, every, tasks, task_cpus, segments, lambda steps, text: keep_stats(steps, lambda: text)
        )
        yield from stream.iter_torch_batches()
        return
    for steps in segments:
        stream = RayDataStream(shard, steps, tasks, task_cpus)
        try:
            yield from stream.iter_torch_batches()
        finally:  # also when the loop stops at the last step
            keep_stats(steps, stream.stats)


# ---------------------------------------------------------------------------------------
# finetuning and evaluation


def _blocks(table: pa.Table, target: int = TARGET_BLOCKS) -> list[pa.Table]:
    """Rows cut into about `target` blocks (each of one row or more) for parallel decoding."""
    rows_per_block = max(1, math.ceil(table.num_rows / target))
    return [table.slice(start, rows_per_block) for start in range(0, table.num_rows, rows_per_block)]


def _supervised_rows(row: dict, data: DataConfig, train: bool, source: Location, counter) -> list[dict]:
    """One manifest row -> 1 random clip (train) or eval_clips test-cropped clips (eval)."""
    rng = np.random.default_rng()
    start, end = int(row["start_frame"]), int(row["end_frame"])
    if train:
        offsets = sampling.random_offsets(end - start, data.clip_span, 1, rng)
    else:
        offsets = sampling.uniform_offsets(end - start, data.clip_span, data.eval_clips)
    try:
        clips = decode.decode_clips(source.at(str(row["path"])), range(start, end), offsets, data, str(row["decoder"]))
    except decode.DecodeError as error:
        _count_failure(counter, str(row["path"]), error)
        return []
    rows = []
    for index, clip in enumerate(clips):
        cropped = (
            transforms.random_resized_crop(clip, data.crop_size, data.crop_scale, rng, antialias=data.resize_antialias)
            if train
            else transforms.eval_crop(clip, data.crop_size, data.test_crop, data.resize_antialias)
        )
        rows.append(
            {
                "clip": np.ascontiguousarray(cropped.transpose(3, 0, 1, 2)),
                "label": np.int64(row["label"]),
                "video_index": np.int64(row["video_index"]),
                "clip_index": np.int64(index),
            }
        )
    return rows


def supervised_dataset(
    manifest_location: Location, data: DataConfig, train: bool, data_cpus: float, seed: int = 0
) -> ray.data.Dataset:
    """Rows {"clip": uint8 C T H W, "label", "video_index", "clip_index"} (all int64 but clip).

    train=True: one random clip per video (random resized crop + flip), the videos in a new
    random order every epoch (each execution of the dataset reshuffles all of them);
    train=False: `data.eval_clips` uniformly spaced clips per video with the test crop, in
    manifest order (video_index says which video a clip belongs to).
    `data_cpus` bounds the decode tasks: what the run's resource plan leaves to Ray Data.
    """
    concurrency = max(1, int(data_cpus))
    table = load_manifest(manifest_location, data)
    dataset = ray.data.from_arrow(_blocks(table, max(SHUFFLE_BLOCKS, 2 * concurrency) if train else TARGET_BLOCKS))
    if train:  # every row to a random block each epoch: a full shuffle whatever the block count
        dataset = dataset.random_shuffle(seed=ray.data.RandomSeedConfig(seed=seed, reseed_after_execution=True))
    return dataset.flat_map(
        _supervised_rows,
        fn_kwargs={"data": data, "train": train, "source": manifest_location, "counter": failure_counter()},
        num_cpus=min(1.0, data_cpus / concurrency),
        compute=ray.data.TaskPoolStrategy(size=concurrency),
        max_calls=TASK_CALLS,
    )
