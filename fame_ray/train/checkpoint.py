"""The fame-ray checkpoint format: what a checkpoint directory holds, and how it gets there.

A checkpoint is a directory `<storage>/<run>/checkpoint_<step>/` (local or s3://) holding:

- `state.pt`    torch.save dict: "model" (MoCo state_dict: both encoders, queue, queue_ptr),
                "optimizer", "scaler" (or None), "step", "epoch", "world_size",
                "rng" (one entry per rank: torch CPU state, augment generator state, numpy
                bit-generator state), "format" (FORMAT_VERSION).
- `config.yaml` the resolved config (fame_ray.config.to_dict), so a run can be resumed or
                reproduced from storage alone.
- `meta.json`   step, epoch, metrics, git SHA, time. Uploaded LAST: a directory without it is
                incomplete (an upload that was cut off) and is never taken as the latest.

Ray Train uploads the directory through `upload` (passed as `checkpoint_upload_fn`), which
copies state.pt and config.yaml first and meta.json only once they are stored.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import re
import subprocess
import time
from pathlib import Path

import pyarrow.fs as pafs
import yaml

from fame_ray import storage

logger = logging.getLogger(__name__)

STATE_FILE = "state.pt"
CONFIG_FILE = "config.yaml"
META_FILE = "meta.json"
FORMAT_VERSION = 1
_NAME = re.compile(r"^checkpoint_(\d+)$")


@dataclasses.dataclass
class CheckpointInfo:
    """One checkpoint directory found in storage."""

    name: str
    uri: str
    step: int
    complete: bool
    meta: dict


def dir_name(step: int) -> str:
    """Checkpoint directory name for a step; zero-padded so names sort by step."""
    return f"checkpoint_{step:08d}"


def git_sha() -> str:
    """The commit of the code that is running ('unknown' outside a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def write_local(directory: str, state: dict, config_dict: dict, meta: dict) -> str:
    """Write the three files of a checkpoint into a local directory (meta.json last)."""
    import torch

    os.makedirs(directory, exist_ok=True)
    torch.save(state, os.path.join(directory, STATE_FILE))
    Path(directory, CONFIG_FILE).write_text(yaml.safe_dump(config_dict, sort_keys=False))
    Path(directory, META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True))
    return directory


def upload(checkpoint, checkpoint_dir_name: str):
    """Ray Train `checkpoint_upload_fn`: copy a local checkpoint to the run dir, meta.json last.

    Runs on the reporting worker (rank 0). The target filesystem and run directory come from
    Ray Train's storage context, so the returned checkpoint is one Ray Train manages
    (keeps `num_to_keep`, restores after failures). Any storage error propagates: with
    synchronous reports the step fails, with asynchronous ones Ray Train raises it in the
    training thread, so a failed upload always surfaces and never leaves a meta.json behind.
    """
    import ray.train

    context = ray.train.get_context().get_storage()
    fs = context.storage_filesystem
    target = f"{context.experiment_fs_path}/{checkpoint_dir_name}"
    copy_directory(checkpoint.path, fs, target)
    return ray.train.Checkpoint(path=target, filesystem=fs)


def copy_directory(local_dir: str, fs: pafs.FileSystem, target: str) -> None:
    """Copy a local checkpoint directory onto `fs` at `target`, with meta.json last."""
    names = sorted(os.listdir(local_dir), key=lambda name: name == META_FILE)
    if META_FILE not in names or STATE_FILE not in names:
        raise FileNotFoundError(f"checkpoint {local_dir} lacks {STATE_FILE} or {META_FILE}")
    fs.create_dir(target, recursive=True)
    for name in names:
        with open(os.path.join(local_dir, name), "rb") as source, fs.open_output_stream(f"{target}/{name}") as sink:
            while chunk := source.read(16 << 20):
                sink.write(chunk)


def is_complete(fs: pafs.FileSystem, path: str) -> bool:
    """A checkpoint counts only when meta.json and state.pt are both stored."""
    infos = fs.get_file_info([f"{path}/{META_FILE}", f"{path}/{STATE_FILE}"])
    return all(info.type == pafs.FileType.File for info in infos)


def list_checkpoints(run_uri: str, endpoint: str = "") -> list[CheckpointInfo]:
    """All checkpoint directories of a run, oldest first; incomplete ones flagged."""
    fs, path = storage.filesystem(run_uri, endpoint)
    try:
        entries = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except (OSError, FileNotFoundError):
        return []
    found = []
    for entry in entries:
        match = _NAME.match(entry.base_name)
        if entry.type != pafs.FileType.Directory or not match:
            continue
        complete = is_complete(fs, entry.path)
        meta = _read_json(fs, f"{entry.path}/{META_FILE}") if complete else {}
        found.append(CheckpointInfo(entry.base_name, storage.join(run_uri, entry.base_name), int(meta.get("step", match.group(1))), complete, meta))
    return sorted(found, key=lambda info: (info.step, info.name))


def latest_complete(run_uri: str, endpoint: str = "") -> CheckpointInfo | None:
    """The complete checkpoint with the highest step, or None."""
    complete = [info for info in list_checkpoints(run_uri, endpoint) if info.complete]
    return complete[-1] if complete else None


def _read_json(fs: pafs.FileSystem, path: str) -> dict:
    with fs.open_input_stream(path) as stream:
        return json.loads(stream.read().decode())


def load_state(uri: str, endpoint: str = "") -> dict:
    """state.pt of a checkpoint directory (local or s3://), on CPU."""
    import torch

    data = storage.read_bytes(storage.join(uri, STATE_FILE), endpoint)
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def load_checkpoint_state(checkpoint) -> dict:
    """state.pt of a `ray.train.Checkpoint` (any filesystem), on CPU."""
    import torch

    with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/{STATE_FILE}") as stream:
        data = stream.read()
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def checkpoint_step(checkpoint) -> int:
    """The step of a `ray.train.Checkpoint`, from its meta.json."""
    return int(_read_json(checkpoint.filesystem, f"{checkpoint.path}/{META_FILE}")["step"])


def read_meta(uri: str, endpoint: str = "") -> dict:
    """meta.json of a checkpoint directory."""
    return json.loads(storage.read_bytes(storage.join(uri, META_FILE), endpoint).decode())


def read_config(uri: str, endpoint: str = "") -> dict:
    """config.yaml of a checkpoint directory, as a dict."""
    return yaml.safe_load(storage.read_bytes(storage.join(uri, CONFIG_FILE), endpoint).decode()) or {}


def make_meta(step: int, epoch: int, metrics: dict, world_size: int, sha: str) -> dict:
    """The meta.json record of a checkpoint (`sha`: git SHA taken once on the driver)."""
    return {"step": step, "epoch": epoch, "metrics": metrics, "world_size": world_size, "git_sha": sha, "time": time.time(), "format": FORMAT_VERSION}
