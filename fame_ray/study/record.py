"""The study's record: `study-record.json` in the study folder, written after every change.

    record = open_record(folder, settings, keys)     # a new one, or the one a rerun resumes
    start(record, "pretrain-fame"); save(record, folder)

It holds the settings' fingerprint (sha256 of `plan.study_settings`) and each stage's status:
'left', 'running' (started and not finished: the driver died or is running it now; a rerun
resumes it from its run's checkpoints), 'done' (finished: a rerun skips it) or 'skipped' (an
optional dataset whose root is absent: a rerun looks again). A study folder whose record holds
other settings is refused in one line (the names of the settings that differ).
"""

from __future__ import annotations

import hashlib
import json
import time

from fame_ray.downstream.sweep import signature_differences
from fame_ray.errors import UserError
from fame_ray.storage import Location, parse_json

RECORD_FILE = "study-record.json"
STATUSES = ("left", "running", "done", "skipped")


def fingerprint(settings: dict) -> str:
    """sha256 of the settings as canonical JSON."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def new_record(name: str, settings: dict, keys: list[str], now: float | None = None) -> dict:
    """A record with every stage left."""
    now = time.time() if now is None else now
    return {
        "study": name,
        "fingerprint": fingerprint(settings),
        "settings": settings,
        "created": now,
        "sessions": 0,
        "stages": {key: {"status": "left", "attempts": 0} for key in keys},
    }


def check_same(saved: dict, settings: dict, name: str, where: str) -> None:
    """A UserError naming what differs when `saved` (a record) was made with other settings."""
    if saved.get("fingerprint") == fingerprint(settings):
        return
    differing = signature_differences(saved.get("settings") or {}, settings) or ["the settings"]
    raise UserError(
        f"study '{name}' in {where} was started with other settings ({', '.join(differing[:6])})",
        "rerun it with the settings it was started with to resume it, or pick another --run-name",
    )


def read(folder: Location) -> dict | None:
    """The record in `folder`, None when there is none; a damaged one is a UserError."""
    location = folder / RECORD_FILE
    if not location.exists():
        return None
    try:
        record = parse_json(location.read_bytes())
    except ValueError:
        record = None
    if not isinstance(record, dict) or not isinstance(record.get("stages"), dict):
        raise UserError(f"{location} is not a fame-ray study record", "pick another --run-name or --storage")
    return record


def open_record(folder: Location, settings: dict, keys: list[str], name: str) -> dict:
    """The study's record: a new one, or the saved one when its settings are these (refused
    otherwise). Not written here: the caller saves it once nothing refuses the study."""
    saved = read(folder)
    if saved is None:
        return new_record(name, settings, keys)
    check_same(saved, settings, name, str(folder.parent))
    return saved


def save(record: dict, folder: Location) -> None:
    """Write the record whole (locally a temporary name, then a rename; on S3 one PutObject)."""
    record["updated"] = time.time()
    (folder / RECORD_FILE).put_bytes(json.dumps(record, indent=1, default=str).encode())


def status(record: dict, key: str) -> str:
    return record["stages"][key]["status"]


def start(record: dict, key: str, now: float | None = None) -> bool:
    """Mark a stage running; True when it resumes an earlier attempt (its driver died)."""
    entry = record["stages"][key]
    resumed = entry["status"] == "running"
    entry.update(status="running", attempts=entry.get("attempts", 0) + 1, started=time.time() if now is None else now)
    entry.setdefault("first_started", entry["started"])
    return resumed


def finish(record: dict, key: str, results: str | None = None, now: float | None = None) -> None:
    """Mark a stage done, with where its results are and how long its last attempt took."""
    entry = record["stages"][key]
    now = time.time() if now is None else now
    entry.update(status="done", finished=now, wall_s=round(now - entry.get("started", now), 1))
    if results:
        entry["results"] = results


def skip(record: dict, key: str, reason: str) -> None:
    record["stages"][key].update(status="skipped", reason=reason)
