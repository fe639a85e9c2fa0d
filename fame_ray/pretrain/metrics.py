"""Per-step metrics of a run: a JSON-lines file and TensorBoard event files in the run dir.

Rank 0 writes them. For a local run directory the files are written in place; for s3://
they are written to a local staging folder and uploaded on `flush` (every checkpoint and at
the end), after the existing metrics.jsonl was downloaded first, so a resumed run appends.

    <run>/metrics.jsonl          {"step": 10, "loss": 6.1, "acc1": 0.12, ...} per line
    <run>/tensorboard/events.*   one events file per session of the run
"""

from __future__ import annotations

import json
import logging
import os
import tempfile

from fame_ray.checkpoints import METRICS_FILE
from fame_ray.storage import Location

logger = logging.getLogger(__name__)

TENSORBOARD_DIR = "tensorboard"


class MetricsWriter:
    """Appends metric records to `<run>/metrics.jsonl` and TensorBoard scalars."""

    def __init__(self, run: Location, resume_step: int = 0):
        self.run = run
        self.local_dir = tempfile.mkdtemp(prefix="fame-ray-metrics-") if run.is_s3 else run.uri
        os.makedirs(os.path.join(self.local_dir, TENSORBOARD_DIR), exist_ok=True)
        self.jsonl_path = os.path.join(self.local_dir, METRICS_FILE)
        self._start_jsonl(resume_step)
        from torch.utils.tensorboard import SummaryWriter

        self.tensorboard = SummaryWriter(os.path.join(self.local_dir, TENSORBOARD_DIR), purge_step=resume_step or None)

    def _start_jsonl(self, resume_step: int) -> None:
        """Keep the records before `resume_step` (a resumed run re-does the steps after it)."""
        lines = []
        remote = self.run / METRICS_FILE
        if self.run.is_s3 and remote.exists():
            lines = remote.read_text().splitlines()
        elif not self.run.is_s3 and os.path.exists(self.jsonl_path):
            with open(self.jsonl_path) as handle:
                lines = handle.read().splitlines()
        kept = [line for line in lines if _step_of(line) is not None and _step_of(line) <= resume_step]
        with open(self.jsonl_path, "w") as handle:
            handle.writelines(line + "\n" for line in kept)

    def write(self, step: int, metrics: dict) -> None:
        """One record: every numeric value goes to TensorBoard as `train/<name>`."""
        record = {"step": step, **metrics}
        with open(self.jsonl_path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        for name, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.tensorboard.add_scalar(f"train/{name}", value, step)

    def flush(self) -> None:
        """Make the files visible in the run directory (uploads them for s3://)."""
        self.tensorboard.flush()
        if not self.run.is_s3:
            return
        for root, _, files in os.walk(self.local_dir):
            for name in files:
                local = os.path.join(root, name)
                with open(local, "rb") as handle:
                    (self.run / os.path.relpath(local, self.local_dir)).write_bytes(handle.read())

    def close(self) -> None:
        self.flush()
        self.tensorboard.close()


def _step_of(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None
