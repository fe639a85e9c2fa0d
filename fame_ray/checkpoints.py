"""The one home of the checkpoint format, of run listing, and of "the latest complete checkpoint",
used by pretraining, finetuning and weight loading alike.

A run is a directory `<storage>/<run name>/` (local or s3://) holding checkpoint_* directories,
metrics.jsonl, TensorBoard events and Ray Train's own checkpoint_manager_snapshot.json.
A checkpoint is a directory `<run>/checkpoint_<step:08d>/` holding:

- `state.pt`    torch.save dict: "model" (MoCo state_dict: both encoders, queue, queue_ptr),
                "optimizer", "step", "epoch", "world_size", "format". No random state: every
                random draw of a step derives from (seed, step, rank), so a resumed run draws
                the same numbers on any device. (An "rng" entry of older checkpoints is ignored.)
- `config.yaml` the resolved config (`fame_ray.config.to_dict`), so a run can be resumed or
                reproduced from storage alone.
- `meta.json`   step, epoch, metrics, git SHA, time. Uploaded LAST: a directory without it is
                incomplete (an upload that was cut off) and is never taken as the latest; so is
                one whose meta.json is not a JSON object with an integer "step" (empty, cut
                off, or not ours), with one warning naming it.

`write_local` writes each file under a temporary name and renames it into place, meta.json
last, so a crash mid-save never leaves a file that looks whole.

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
import ray.train
import yaml

from fame_ray.config import parse_yaml
from fame_ray.errors import UserError
from fame_ray.storage import Location, parse_json, write_file_atomically

logger = logging.getLogger(__name__)

STATE_FILE = "state.pt"
CONFIG_FILE = "config.yaml"
META_FILE = "meta.json"
METRICS_FILE = "metrics.jsonl"
FORMAT_VERSION = 1
# The sections of a saved config.yaml that are mappings (fame_ray.config.to_dict).
CONFIG_SECTIONS = ("data", "fame", "model", "moco", "optim", "train", "storage")
_NAME = re.compile(r"^checkpoint_(\d+)$")
# Files that mark a directory as a run (any one of them).
DATA_STATS_DIR = "data_stats"  # the pretraining data stream's stats, one file per epoch (or 2000 steps)
RAY_SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train's record of the checkpoints it registered
RUN_MARKERS = (METRICS_FILE, RAY_SNAPSHOT, "run.json")


@dataclasses.dataclass
class CheckpointInfo:
    """One checkpoint directory found in storage."""

    name: str
    location: Location
    step: int
    complete: bool
    meta: dict

    @property
    def uri(self) -> str:
        return self.location.uri


def dir_name(step: int) -> str:
    """Checkpoint directory name for a step; zero-padded so names sort by step."""
    return f"checkpoint_{step:08d}"


def git_sha() -> str:
    """The commit of the code that is running ('unknown' outside a git checkout)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def make_meta(step: int, epoch: int, metrics: dict, world_size: int, sha: str) -> dict:
    """The meta.json record of a checkpoint (`sha`: git SHA taken once on the driver)."""
    return {
        "step": step,
        "epoch": epoch,
        "metrics": metrics,
        "world_size": world_size,
        "git_sha": sha,
        "time": time.time(),
        "format": FORMAT_VERSION,
    }


def write_local(directory: str, state: dict, config_dict: dict, meta: dict) -> str:
    """Write the three files of a checkpoint into a local directory, each under a temporary
    name then renamed into place, meta.json last."""
    import torch

    os.makedirs(directory, exist_ok=True)
    config_text = yaml.safe_dump(config_dict, sort_keys=False).encode()
    meta_text = json.dumps(meta, indent=1, sort_keys=True).encode()
    write_file_atomically(os.path.join(directory, STATE_FILE), lambda stream: torch.save(state, stream))
    write_file_atomically(os.path.join(directory, CONFIG_FILE), lambda stream: stream.write(config_text))
    write_file_atomically(os.path.join(directory, META_FILE), lambda stream: stream.write(meta_text))
    return directory


def upload(checkpoint, checkpoint_dir_name: str):
    """Ray Train `checkpoint_upload_fn`: copy a local checkpoint to the run dir, meta.json last.

    Runs on the reporting worker (rank 0). The target filesystem and run directory come from
    Ray Train's storage context, so the returned checkpoint is one Ray Train manages
    (keeps `num_to_keep`, restores after failures). Any storage error propagates: with
    synchronous reports the step fails, with asynchronous ones Ray Train raises it in the
    training thread, so a failed upload always surfaces and never leaves a meta.json behind.
    """
    context = ray.train.get_context().get_storage()
    fs = context.storage_filesystem
    target = f"{context.experiment_fs_path}/{checkpoint_dir_name}"
    copy_directory(checkpoint.path, fs, target)
    return ray.train.Checkpoint(path=target, filesystem=fs)


def copy_directory(local_dir: str, fs: pafs.FileSystem, target: str) -> None:
    """Copy a local checkpoint directory onto `fs` at `target`, with meta.json last.

    Hidden files are left out: they are temporary names of a write that did not finish."""
    names = sorted(
        (name for name in os.listdir(local_dir) if not name.startswith(".")), key=lambda name: name == META_FILE
    )
    if META_FILE not in names or STATE_FILE not in names:
        raise FileNotFoundError(f"checkpoint {local_dir} lacks {STATE_FILE} or {META_FILE}")
    fs.create_dir(target, recursive=True)
    for name in names:
        with open(os.path.join(local_dir, name), "rb") as source, fs.open_output_stream(f"{target}/{name}") as sink:
            while chunk := source.read(16 << 20):
                sink.write(chunk)


def is_complete(location: Location) -> bool:
    """Both meta.json and state.pt are stored (`complete_meta` also checks meta.json's content)."""
    return (location / META_FILE).is_file() and (location / STATE_FILE).is_file()


def _read_json(location: Location) -> dict:
    return parse_json(location.read_bytes())


def _is_step(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def complete_meta(location: Location) -> dict | None:
    """meta.json of a complete checkpoint, or None when the checkpoint is incomplete.

    A missing meta.json is an upload cut off (no message: it happens on every crash); a
    meta.json that cannot be read, is not a JSON object or has no integer "step" gets one
    warning, since someone or something damaged it.
    """
    if not is_complete(location):
        return None
    try:
        meta = _read_json(location / META_FILE)
    except (OSError, ValueError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        reason = f"cannot be read as JSON ({type(error).__name__})"
    else:
        if isinstance(meta, dict) and _is_step(meta.get("step")):
            return meta
        reason = "is not a JSON object with an integer 'step'"
    logger.warning("checkpoint %s is treated as incomplete: its %s %s", location, META_FILE, reason)
    return None


def list_checkpoints(run: Location) -> list[CheckpointInfo]:
    """All checkpoint directories of a run, oldest first; incomplete ones flagged."""
    try:
        entries = run.children()
    except OSError:
        return []
    found = []
    for entry in entries:
        match = _NAME.match(entry.base_name)
        if entry.type != pafs.FileType.Directory or not match:
            continue
        location = run / entry.base_name
        meta = complete_meta(location)
        step = meta["step"] if meta is not None else int(match.group(1))
        found.append(CheckpointInfo(entry.base_name, location, step, meta is not None, meta or {}))
    return sorted(found, key=lambda info: (info.step, info.name))


def latest_complete(run: Location) -> CheckpointInfo | None:
    """The complete checkpoint with the highest step, or None."""
    complete = [info for info in list_checkpoints(run) if info.complete]
    return complete[-1] if complete else None


def torch_load(data: bytes, where: str):
    """A torch file's content, on CPU, through the safe loader (tensors, containers and numbers
    only: a file that holds other Python objects is refused, never executed).

    torch's own error text ends with advice to pass weights_only=False, which would run
    whatever the file holds; the UserError says what is wrong in fame-ray's words instead.
    """
    import torch

    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the user's input
        raise UserError(
            (
                f"cannot read {where} as a PyTorch checkpoint saved with tensors only ({type(error).__name__}; "
                "fame-ray never unpickles arbitrary objects)"
            ),
            (
                "pass an official FAME .pth(.tar) or a fame-ray checkpoint directory; re-save other files as a "
                "plain state dict of tensors"
            ),
        ) from None


def load_state(checkpoint: Location) -> dict:
    """state.pt of a checkpoint directory (local or s3://), on CPU."""
    return torch_load((checkpoint / STATE_FILE).read_bytes(), (checkpoint / STATE_FILE).uri)


def load_ray_checkpoint_state(checkpoint: ray.train.Checkpoint) -> dict:
    """state.pt of a `ray.train.Checkpoint` (any filesystem), on CPU."""
    with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/{STATE_FILE}") as stream:
        return torch_load(stream.read(), f"{checkpoint.path}/{STATE_FILE}")


def ray_checkpoint_step(checkpoint: ray.train.Checkpoint) -> int | None:
    """The step of a `ray.train.Checkpoint`, from its meta.json; None when it is gone or its
    meta.json is damaged (the caller then resumes from what storage holds)."""
    try:
        with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/{META_FILE}") as stream:
            meta = parse_json(stream.read())
    except (OSError, ValueError) as error:  # FileNotFoundError is an OSError
        logger.warning(
            "checkpoint %s that Ray restored cannot be read (%s): resuming from storage",
            checkpoint.path,
            type(error).__name__,
        )
        return None
    return meta["step"] if isinstance(meta, dict) and _is_step(meta.get("step")) else None


def _registered_with_ray(run: Location) -> str:
    """The text of Ray Train's checkpoint snapshot ('' when there is none): the checkpoints it
    names are Ray's to delete (it fails when one is gone under it)."""
    try:
        return (run / RAY_SNAPSHOT).read_text()
    except (OSError, ValueError):
        return ""


def unmanaged(run: Location) -> frozenset[str]:
    """The checkpoints in storage that Ray Train's snapshot does not name: the ones it will never
    delete (a complete upload the run was killed before registering, a cut-off upload, a run
    whose snapshot is gone). Taken when a worker group starts, before it reports anything: a
    name Ray drops later stays Ray's, since Ray writes its snapshot before it deletes."""
    registered = _registered_with_ray(run)
    return frozenset(
        info.name for info in list_checkpoints(run) if not re.search(re.escape(info.name) + r"(?!\d)", registered)
    )


def prune(run: Location, keep: int, candidates: frozenset[str] | None = None) -> list[str]:
    """Delete the checkpoints among `candidates` (by default `unmanaged(run)` now) beyond the
    newest `keep` complete ones, and return their names.

    Ray Train keeps `num_to_keep` of the checkpoints it registered and deletes the others
    itself; a checkpoint it never registered is left to this function, and so are cut-off
    uploads older than the oldest kept checkpoint. The newest complete checkpoint is never
    deleted, nor is anything newer than it (an upload in flight). A running worker passes the
    set it took when it started: Ray writes the snapshot that drops a checkpoint before it
    deletes it, and a second deleter in between makes Ray's own delete fail the run.
    """
    found = list_checkpoints(run)
    complete = [info for info in found if info.complete]
    if not complete:
        return []
    candidates = unmanaged(run) if candidates is None else candidates
    kept = {info.name for info in complete[-max(keep, 1) :]}
    oldest_kept = min(info.step for info in complete if info.name in kept)
    deleted = []
    for info in found:
        if info.name in kept or info.step >= oldest_kept or info.name not in candidates:
            continue
        try:
            info.location.delete_dir()
        except OSError as error:
            logger.warning("could not delete old checkpoint %s (%s); it stays", info.location, error)
            continue
        deleted.append(info.name)
    if deleted:
        logger.info(
            "pruned %d checkpoint(s) beyond train.keep_checkpoints=%d: %s", len(deleted), keep, ", ".join(deleted)
        )
    return deleted


def read_meta(checkpoint: Location) -> dict:
    """meta.json of a checkpoint directory."""
    return _read_json(checkpoint / META_FILE)


def read_config(checkpoint: Location) -> dict:
    """config.yaml of a checkpoint directory, as a dict (a UserError when it is not a YAML
    mapping whose sections are mappings: every reader looks keys up in them)."""
    where = checkpoint / CONFIG_FILE
    try:
        values = parse_yaml(where.read_bytes().decode("utf-8")) or {}
    except ValueError:  # UnicodeDecodeError too
        values = None
    sections_ok = isinstance(values, dict) and all(isinstance(values.get(name) or {}, dict) for name in CONFIG_SECTIONS)
    if not sections_ok:
        raise UserError(
            f"{where} is not a fame-ray config (a YAML mapping of sections such as model: and train:)",
            "pass a checkpoint written by `fame-ray pretrain`, or its run directory",
        )
    return values


# ---------------------------------------------------------------------------------------
# runs in a storage root


@dataclasses.dataclass
class RunSummary:
    """One run: where it is, its checkpoints, and how far it got."""

    name: str
    location: Location
    checkpoints: list[CheckpointInfo]
    last_step: int
    last_metrics: dict

    @property
    def uri(self) -> str:
        return self.location.uri

    @property
    def latest(self) -> CheckpointInfo | None:
        complete = [info for info in self.checkpoints if info.complete]
        return complete[-1] if complete else None


def run_names(root: Location) -> list[str]:
    """Names of the run directories directly under the storage root, sorted (a folder that
    cannot be listed is left out, with a warning naming it)."""
    try:
        entries = root.children()
    except OSError:
        return []
    names = []
    for entry in entries:
        if entry.type != pafs.FileType.Directory:
            continue
        try:
            children = (root / entry.base_name).children()
        except OSError as error:
            logger.warning("%s is left out: it cannot be listed (%s)", root / entry.base_name, type(error).__name__)
            continue
        if any(child.base_name in RUN_MARKERS or child.base_name.startswith("checkpoint_") for child in children):
            names.append(entry.base_name)
    return sorted(names)


def run_exists(root: Location, name: str) -> bool:
    return name in run_names(root)


def read_records(run: Location) -> list[dict]:
    """All records of a run's metrics.jsonl ([] when it has none yet)."""
    location = run / METRICS_FILE
    if not location.exists():
        return []
    records = []
    for line in location.read_bytes().decode("utf-8", "replace").splitlines():
        try:
            record = parse_json(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def summarize(root: Location, name: str) -> RunSummary:
    """Checkpoints, last step and last metrics of one run (UserError when it does not exist)."""
    if not run_exists(root, name):
        known = run_names(root)
        hint = f"runs there: {', '.join(known)}" if known else "no runs there yet; start one with `fame-ray pretrain`"
        raise UserError(f"no run named '{name}' in {root}", hint)
    run = root / name
    checkpoints = list_checkpoints(run)
    # The last record with a usable step: a damaged last line does not hide how far the run got.
    last = next((record for record in reversed(read_records(run)) if _is_step(record.get("step"))), {})
    steps = [last.get("step", 0)] + [info.step for info in checkpoints if info.complete]
    return RunSummary(name, run, checkpoints, max(steps), last)


def data_stats(run: Location) -> list[str]:
    """Names of the data-stream stats files a run kept (one per epoch or 2000 steps), oldest first."""
    try:
        return sorted(entry.base_name for entry in (run / DATA_STATS_DIR).children())
    except OSError:
        return []


def summarize_all(root: Location) -> tuple[list[RunSummary], list[tuple[str, str]]]:
    """The summary of every run, and (name, reason) of the runs whose files cannot be read: one
    damaged run never hides the others."""
    summaries, skipped = [], []
    for name in run_names(root):
        try:
            summaries.append(summarize(root, name))
        except (OSError, ValueError, UserError) as error:
            skipped.append((name, f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"))
    return summaries, skipped
