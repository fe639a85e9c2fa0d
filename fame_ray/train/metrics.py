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

from fame_ray import storage

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


class MetricsWriter:
    """Appends metric records to `<run_uri>/metrics.jsonl` and TensorBoard scalars."""

    def __init__(self, run_uri: str, endpoint: str = "", resume_step: int = 0):
        self.run_uri = run_uri
        self.endpoint = endpoint
        self.remote = storage.is_s3(run_uri)
        self.local_dir = tempfile.mkdtemp(prefix="fame-ray-metrics-") if self.remote else run_uri
        os.makedirs(os.path.join(self.local_dir, TENSORBOARD_DIR), exist_ok=True)
        self.jsonl_path = os.path.join(self.local_dir, METRICS_FILE)
        self._start_jsonl(resume_step)
        from torch.utils.tensorboard import SummaryWriter

        self.tensorboard = SummaryWriter(os.path.join(self.local_dir, TENSORBOARD_DIR), purge_step=resume_step or None)

    def _start_jsonl(self, resume_step: int) -> None:
        """Keep the records before `resume_step` (a resumed run re-does the steps after it)."""
        lines = []
        uri = storage.join(self.run_uri, METRICS_FILE)
        if self.remote and storage.exists(uri, self.endpoint):
            lines = storage.read_bytes(uri, self.endpoint).decode().splitlines()
        elif not self.remote and os.path.exists(self.jsonl_path):
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
        if not self.remote:
            return
        for root, _, files in os.walk(self.local_dir):
            for name in files:
                local = os.path.join(root, name)
                relative = os.path.relpath(local, self.local_dir)
                with open(local, "rb") as handle:
                    storage.write_bytes(storage.join(self.run_uri, relative), handle.read(), self.endpoint)

    def close(self) -> None:
        self.flush()
        self.tensorboard.close()


def _step_of(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None


def read_records(run_uri: str, endpoint: str = "") -> list[dict]:
    """All records of a run's metrics.jsonl ([] when it has none yet)."""
    uri = storage.join(run_uri, METRICS_FILE)
    if not storage.exists(uri, endpoint):
        return []
    records = []
    for line in storage.read_bytes(uri, endpoint).decode().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records
