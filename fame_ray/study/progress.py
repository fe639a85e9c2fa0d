"""The progress view of a study: its stages done, running and left, and when it should end.

    text = view(stages, record, now=time.time())

The estimate of a stage left is the mean wall time of the finished stages of its kind in this
study (the same protocol on the same cluster), else the mean of every finished stage except
manifests, else unknown until a stage of that kind has finished; the ETA is their sum.
"""

from __future__ import annotations

import time

from fame_ray.eval.report import markdown_table


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def estimates(stages, record: dict) -> dict[str, float | None]:
    """Stage key -> the seconds it is expected to take (its own wall time once done)."""
    walls: dict[str, list[float]] = {}
    for stage in stages:
        entry = record["stages"][stage.key]
        if entry["status"] == "done" and entry.get("wall_s") is not None:
            walls.setdefault(stage.kind, []).append(float(entry["wall_s"]))
    training = [wall for kind, found in walls.items() if kind != "manifests" for wall in found]
    fallback = sum(training) / len(training) if training else None
    out = {}
    for stage in stages:
        found = walls.get(stage.kind)
        out[stage.key] = sum(found) / len(found) if found else fallback
    return out


def counts(stages, record: dict) -> dict[str, int]:
    """How many stages have each status."""
    found = {"done": 0, "running": 0, "left": 0, "skipped": 0}
    for stage in stages:
        found[record["stages"][stage.key]["status"]] += 1
    return found


def eta(stages, record: dict, now: float | None = None) -> float | None:
    """Seconds until the last stage should end; None while a stage left has no estimate."""
    now = time.time() if now is None else now
    guess = estimates(stages, record)
    total = 0.0
    for stage in stages:
        entry = record["stages"][stage.key]
        if entry["status"] in ("done", "skipped"):
            continue
        if guess[stage.key] is None:
            return None
        elapsed = now - entry.get("started", now) if entry["status"] == "running" else 0.0
        total += max(guess[stage.key] - elapsed, 0.0)
    return total


def view(stages, record: dict, now: float | None = None) -> str:
    """The stages as a table (status, attempts, wall time) under one line of totals and the ETA."""
    now = time.time() if now is None else now
    found = counts(stages, record)
    left = eta(stages, record, now)
    head = (
        f"study {record.get('study')}: {found['done']} done, {found['running']} running, {found['left']} left, "
        f"{found['skipped']} skipped; ETA {_minutes(left) if left is not None else 'once a stage of each kind ends'}"
    )
    rows = []
    for stage in stages:
        entry = record["stages"][stage.key]
        wall = entry.get("wall_s") if entry["status"] == "done" else None
        if entry["status"] == "running":
            wall = now - entry.get("started", now)
        rows.append([stage.key, entry["status"], entry.get("attempts", 0), _minutes(wall), entry.get("reason", "")])
    return head + "\n\n" + markdown_table(["stage", "status", "attempts", "wall", "note"], rows)
