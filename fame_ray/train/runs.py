"""Runs in a storage root (local folder or s3:// prefix): list them, describe one.

A run is a directory `<storage>/<run name>/` holding checkpoint_* directories, metrics.jsonl,
TensorBoard events and Ray Train's own checkpoint_manager_snapshot.json.
"""

from __future__ import annotations

import dataclasses

import pyarrow.fs as pafs

from fame_ray import storage
from fame_ray.errors import UserError
from fame_ray.train import checkpoint as ckpt
from fame_ray.train import metrics as run_metrics

# Files that mark a directory as a run (any one of them).
_MARKERS = (run_metrics.METRICS_FILE, "checkpoint_manager_snapshot.json", "run.json")


@dataclasses.dataclass
class RunSummary:
    """One run: where it is, its checkpoints, and how far it got."""

    name: str
    uri: str
    checkpoints: list[ckpt.CheckpointInfo]
    last_step: int
    last_metrics: dict

    @property
    def latest(self) -> ckpt.CheckpointInfo | None:
        complete = [info for info in self.checkpoints if info.complete]
        return complete[-1] if complete else None


def run_uri(storage_root: str, name: str) -> str:
    return storage.join(storage_root, name)


def run_names(storage_root: str, endpoint: str = "") -> list[str]:
    """Names of the run directories directly under the storage root, sorted."""
    fs, path = storage.filesystem(storage_root, endpoint)
    try:
        entries = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except (OSError, FileNotFoundError):
        return []
    names = []
    for entry in entries:
        if entry.type != pafs.FileType.Directory:
            continue
        children = fs.get_file_info(pafs.FileSelector(entry.path, allow_not_found=True))
        if any(child.base_name in _MARKERS or child.base_name.startswith("checkpoint_") for child in children):
            names.append(entry.base_name)
    return sorted(names)


def run_exists(storage_root: str, name: str, endpoint: str = "") -> bool:
    return name in run_names(storage_root, endpoint)


def summarize(storage_root: str, name: str, endpoint: str = "") -> RunSummary:
    """Checkpoints, last step and last metrics of one run (UserError when it does not exist)."""
    if not run_exists(storage_root, name, endpoint):
        known = run_names(storage_root, endpoint)
        hint = f"runs there: {', '.join(known)}" if known else "no runs there yet; start one with `fame-ray pretrain`"
        raise UserError(f"no run named '{name}' in {storage_root}", hint)
    uri = run_uri(storage_root, name)
    checkpoints = ckpt.list_checkpoints(uri, endpoint)
    records = run_metrics.read_records(uri, endpoint)
    last = records[-1] if records else {}
    steps = [int(last.get("step", 0))] + [info.step for info in checkpoints if info.complete]
    return RunSummary(name, uri, checkpoints, max(steps), last)


def summarize_all(storage_root: str, endpoint: str = "") -> list[RunSummary]:
    return [summarize(storage_root, name, endpoint) for name in run_names(storage_root, endpoint)]
