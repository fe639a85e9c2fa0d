"""A training-friendly copy of a whole dataset, transcoded in parallel Ray tasks (transcode.py
says what each video becomes and why).

    result = transcode.run(data, data.location(), Location.parse("s3://bucket/UCF101-128"), EncodeSettings())

The copy keeps the layout: every video under the same relative path and file name, every other
file (split lists, annotations, class vocabularies) copied byte for byte, so `fame-ray data
prepare` and every other command read the copy as they read the original. Hidden folders
(`.fame-ray/`: manifests that point at the original) are left out. With `split`, only the
videos that split's files list are transcoded (the split files are all copied).

Resumable: a video is done when the copy holds a file under its name. Each video is written
whole (local: a temporary name, then a rename; S3: one PUT of the finished bytes), so a run
that is killed never leaves half a video under a real name; a rerun skips the done ones and
removes the temporary files a killed run left behind. The encoding settings, the source (its
resolved path and a fingerprint of its videos) are recorded in `<out>/.fame-ray/transcode.json`
before the first video; a rerun with other settings or from another source is refused.

What the copy reads and how it writes (`bounds`): links that leave the data root are refused and
listed as skipped, the copy may not overlap the root once links are resolved, and every file
and folder it writes is no more open than its source.

An input that cannot be transcoded is listed (path, reason) in
`<out>/.fame-ray/transcode_skipped.csv` and in the summary of transcode.json; it never stops
the job, and a rerun tries it again. A write that fails (disk full, storage gone) stops the job.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import json
import logging
import os
import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow.fs as pafs
import ray

from fame_ray import config, runtime
from fame_ray.data import catalog
from fame_ray.data.catalog.listing import VIDEO_EXTENSIONS, Tree
from fame_ray.data.transcode import bounds
from fame_ray.data.transcode.encode import EncodeSettings, container_for, encode_video
from fame_ray.errors import UserError
from fame_ray.storage import Location

log = logging.getLogger(__name__)

RECORD = ".fame-ray/transcode.json"
SKIPPED = ".fame-ray/transcode_skipped.csv"
# At most 4 videos per task (a video takes seconds: small chunks keep the progress line moving),
# four tasks per CPU at least; one CPU each: one decoder and one single-threaded x264.
TASKS = runtime.ChunkedTasks(task_cpus=1.0, max_chunk=4, tasks_per_cpu=4, crashed="transcode crashed")
PROGRESS_EVERY_S = 5.0


@dataclass(frozen=True)
class Job:
    """One video to transcode: its path relative to the root, where it is read, where it goes."""

    relative: str
    source: Location
    target: Location
    mode: int | None = None
    """Permission bits of the written file (the source's under the umask); None: the umask's default."""


@dataclass
class Progress:
    """Videos done of the total, and the pace of this run (done before it does not count)."""

    total: int
    already_done: int = 0
    missing: int = 0
    """Videos the split lists but the root lacks (skipped at once, not part of the pace)."""
    transcoded: int = 0
    skipped: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        return self.already_done + self.missing + self.transcoded + self.skipped

    def rate(self) -> float:
        """Videos per second handled by this run."""
        return (self.transcoded + self.skipped) / max(time.monotonic() - self.started, 1e-9)

    def line(self) -> str:
        rate = self.rate()
        eta = str(datetime.timedelta(seconds=round((self.total - self.done) / rate))) if rate > 0 else "--"
        return (
            f"{self.done}/{self.total} videos ({self.missing + self.skipped} skipped), {rate:.2f} videos/s, ETA {eta}"
        )


@dataclass
class TranscodeResult:
    """What `run` wrote."""

    out: Location
    settings: EncodeSettings
    videos: int
    """Videos selected (the whole root, or the split's)."""
    transcoded: int
    """Videos transcoded by this run."""
    already_done: int
    """Videos an earlier run had written."""
    skipped: list[tuple[str, str]]
    """(path relative to the root, reason) of the videos left out."""
    copied: list[str]
    """The other files, copied unchanged."""
    bytes_before: int
    """Size of the original videos that the copy holds."""
    bytes_after: int
    """Size of their transcoded versions."""
    seconds: float
    record: Location
    skipped_file: Location

    @property
    def ratio(self) -> float:
        """Size after / size before (0.1 = ten times smaller)."""
        return self.bytes_after / self.bytes_before if self.bytes_before else 0.0


# ---------------------------------------------------------------------------------------
# one video, in a Ray task


def _write(target: Location, data: bytes, mode: int | None) -> None:
    """Write a file of the copy whole (S3: one PUT of the finished bytes); a local one gets
    `mode` (the atomic write's temporary file is created owner-only), never more than its source."""
    target.put_bytes(data)
    if not target.is_s3 and mode is not None:
        os.chmod(target.uri, mode)


def transcode_one(job: Job, settings: EncodeSettings) -> dict | str:
    """Transcode and write one video: {'bytes_out', 'frames'}, or the reason it was left out.
    Only reading and encoding errors become a reason; a failed write raises."""
    try:
        source = io.BytesIO(job.source.read_bytes()) if job.source.is_s3 else job.source.uri
        data, frames = encode_video(source, settings, container_for(job.relative))
    except FileNotFoundError:
        return "missing file"
    except Exception as error:  # PyAV raises InvalidDataError, ValueError, OSError...; TranscodeError
        first_line = str(error).splitlines()[0][:200] if str(error) else ""
        return f"unreadable: {type(error).__name__}: {first_line}".rstrip(": ")
    _write(job.target, data, job.mode)
    return {"bytes_out": len(data), "frames": frames}


def transcode_chunk(jobs: list[Job], settings: EncodeSettings) -> list[dict | str]:
    return [transcode_one(job, settings) for job in jobs]


# ---------------------------------------------------------------------------------------
# what to transcode


def file_sizes(root: Location) -> dict[str, int]:
    """Path (relative to `root`) -> size of every file below it; empty when it does not exist."""
    selector = pafs.FileSelector(root.path, recursive=True, allow_not_found=True)
    prefix = len(root.path.rstrip("/")) + 1
    return {
        info.path[prefix:]: info.size
        for info in root.filesystem.get_file_info(selector)
        if info.type == pafs.FileType.File
    }


def _hidden(relative: str, folders_only: bool = False) -> bool:
    parts = relative.split("/")
    return any(part.startswith(".") for part in (parts[:-1] if folders_only else parts))


def _is_video(relative: str) -> bool:
    return relative.lower().endswith(VIDEO_EXTENSIONS) and not _hidden(relative)


def select_videos(
    data: config.DataConfig, source: Location, split: int | None, sizes: dict[str, int]
) -> tuple[list[str], list[tuple[str, str]]]:
    """(relative paths of the videos to transcode, (path, reason) of those the split lists but
    the root lacks). The layout is read either way, so a wrong --dataset fails here, in one line."""
    listing = catalog.READERS[data.dataset](Tree(source), split or 1)
    if split is None:
        return sorted(p for p in sizes if _is_video(p)), []
    root = source.uri.rstrip("/") + "/"
    paths = [e.path for entries in listing.subsets.values() for e in entries]
    outside = [p for p in paths if not p.startswith(root)]
    if outside:
        raise UserError(
            f"split {split} lists videos outside {source}, e.g. {outside[0]}", "transcode the folder that holds them"
        )
    missing = [(path[len(root) :] if path.startswith(root) else path, reason) for path, reason in listing.missing]
    return list(dict.fromkeys(p[len(root) :] for p in paths)), missing


# ---------------------------------------------------------------------------------------
# the copy: checks, the record, files other than videos


def open_record(
    out: Location, settings: EncodeSettings, out_files: dict[str, int], header: dict, mode: int
) -> Location:
    """Check that `out` is new or a copy made with the same settings from the same source
    (`bounds.check_resume`), and record them there."""
    record = out / RECORD
    bounds.check_resume(out, record if RECORD in out_files else None, bool(out_files), header)
    _write(record, json.dumps({**header, "complete": False}, indent=1).encode(), mode)
    return record


def remove_leftovers(out: Location, out_files: dict[str, int], videos: list[str]) -> int:
    """Delete the temporary files (.<name>.<random suffix>) that a killed run left beside the videos."""
    if out.is_s3:
        return 0
    wanted = {(posixpath.dirname(v), posixpath.basename(v)) for v in videos}
    removed = 0
    for path in out_files:
        folder, name = posixpath.split(path)
        stem = name[1:].rsplit(".", 1)[0] if name.startswith(".") else ""
        if stem and (folder, stem) in wanted:
            out.filesystem.delete_file((out / path).path)
            removed += 1
    return removed


def other_files(sizes: dict[str, int]) -> list[str]:
    """Every file that is not a video (split lists, annotations...); hidden folders left out."""
    return sorted(p for p in sizes if not p.lower().endswith(VIDEO_EXTENSIONS) and not _hidden(p, folders_only=True))


def copy_other_files(source: Location, out: Location, relatives: list[str], mask: int) -> list[str]:
    """Copy the files that are not videos unchanged, with the source's permissions."""
    for relative in relatives:
        _write(out / relative, (source / relative).read_bytes(), bounds.file_mode(source / relative, mask))
    return relatives


def _write_skipped(location: Location, skipped: list[tuple[str, str]], mode: int) -> None:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["path", "reason"])
    writer.writerows(skipped)
    _write(location, text.getvalue().encode(), mode)


# ---------------------------------------------------------------------------------------
# the Ray job


def _failure(error: Exception) -> str:
    cause = getattr(error, "cause", None) or error
    text = str(cause).splitlines()[0][:200] if str(cause) else ""
    return f"{type(cause).__name__}: {text}".rstrip(": ")


def run_tasks(
    jobs: list[Job], settings: EncodeSettings, progress: Progress, on_progress: Callable[[Progress], None]
) -> dict[str, dict | str]:
    """Transcode `jobs` in parallel Ray tasks; relative path -> outcome. A task whose worker
    dies (a decoder crash on a broken file) is retried video by video, so one bad file costs
    only itself; a task that raises (a failed write) stops the job."""

    def count(job: Job, result) -> None:
        progress.transcoded += isinstance(result, dict)
        progress.skipped += isinstance(result, str)

    try:
        results = runtime.map_chunks(
            transcode_chunk, jobs, TASKS, settings, fatal=(ray.exceptions.RayTaskError,), on_item=count,
            every_s=PROGRESS_EVERY_S, on_progress=lambda: on_progress(progress),
        )  # fmt: skip
    except ray.exceptions.RayTaskError as error:  # the write that failed, raised in its task
        raise UserError(
            f"writing the copy failed: {_failure(error)}", "check the space and permissions at --out (a rerun resumes)"
        ) from None
    return {job.relative: result for job, result in zip(jobs, results)}


def run(
    data: config.DataConfig,
    source: Location,
    out: Location,
    settings: EncodeSettings,
    split: int | None = None,
    on_progress: Callable[[Progress], None] = lambda p: log.info("%s", p.line()),
) -> TranscodeResult:
    """Write the transcoded copy of the dataset at `source` to `out` (see the module docstring).

    Raises UserError for a missing root, a wrong layout, an `out` that holds something else or
    a copy made with other settings, a failed write, and when no video could be transcoded.
    """
    started = time.time()
    if data.dataset == "csv":
        raise UserError(
            "a csv list has no layout to copy", "transcode the folder the list points into with --dataset folder"
        )
    bounds.check_locations(source, out)
    files, out_files = bounds.source_files(source), file_sizes(out)
    videos, missing = select_videos(data, source, split, files.sizes)
    # A video the layout lists that the walk refused (a link out of the root) is skipped with its reason.
    videos = [v for v in videos if v not in files.refused]
    missing += sorted((p, reason) for p, reason in files.refused.items() if _is_video(p))
    refused_other = sorted((p, reason) for p, reason in files.refused.items() if not _is_video(p))
    if not videos:
        raise UserError(
            f"no videos to transcode in {source}" + (f" for split {split}" if split else ""),
            "check --data-root and --dataset",
        )
    header = {
        "settings": dataclasses.asdict(settings),
        "dataset": data.dataset,
        "source": bounds.resolved(source),
        "source_fingerprint": bounds.fingerprint(files, sorted(p for p in files.sizes if _is_video(p))),
        "split": split,
    }
    mask = bounds.umask()
    record = open_record(out, settings, out_files, header, bounds.default_mode(mask))
    removed = remove_leftovers(out, out_files, videos)
    if removed:
        log.info("removed %d temporary files an interrupted run left in %s", removed, out)
    others = other_files(files.sizes)
    bounds.make_folders(source, out, videos + others, mask)
    copied = copy_other_files(source, out, others, mask)
    todo = [Job(v, source / v, out / v, bounds.file_mode(source / v, mask)) for v in videos if v not in out_files]
    progress = Progress(total=len(videos) + len(missing), already_done=len(videos) - len(todo), missing=len(missing))
    on_progress(progress)
    outcomes = {}
    if todo:
        runtime.connect_ray()
        progress.started = time.monotonic()
        outcomes = run_tasks(todo, settings, progress, on_progress)
        on_progress(progress)
    return _finish(
        out,
        record,
        header,
        settings,
        files.sizes,
        out_files,
        videos,
        (missing, refused_other),
        outcomes,
        copied,
        time.time() - started,
    )


def _finish(
    out, record, header, settings, sizes, out_files, videos, left_out, outcomes, copied, seconds
) -> TranscodeResult:
    """Sum up sizes, write the skipped list and the summary; fail when no video made it.
    `left_out`: (videos the split lists that the root lacks or that were refused, other files refused)."""
    missing, refused_other = left_out
    skipped = list(missing) + [(v, outcomes[v]) for v in videos if isinstance(outcomes.get(v), str)]
    skipped += list(refused_other)
    written = {
        v: (outcomes[v]["bytes_out"] if v in outcomes else out_files[v])
        for v in videos
        if isinstance(outcomes.get(v), dict) or v in out_files
    }
    result = TranscodeResult(
        out,
        settings,
        len(videos) + len(missing),
        sum(isinstance(o, dict) for o in outcomes.values()),
        sum(v in out_files for v in videos),
        skipped,
        copied,
        sum(sizes[v] for v in written),
        sum(written.values()),
        seconds,
        record,
        out / SKIPPED,
    )
    own_mode = bounds.default_mode(bounds.umask())
    _write_skipped(result.skipped_file, skipped, own_mode)
    summary = {
        "videos": result.videos,
        "transcoded": result.transcoded,
        "already_done": result.already_done,
        "skipped": [{"path": p, "reason": r} for p, r in skipped],
        "copied_files": len(copied),
        "bytes_before": result.bytes_before,
        "bytes_after": result.bytes_after,
        "ratio": round(result.ratio, 4),
        "seconds": round(seconds, 1),
    }
    _write(record, json.dumps({**header, "complete": not skipped, "summary": summary}, indent=1).encode(), own_mode)
    if not written:
        reasons = sorted({reason for _, reason in skipped})[:3]
        raise UserError(
            f"none of the {result.videos} videos could be transcoded ({'; '.join(reasons)})",
            f"see {result.skipped_file}",
        )
    return result
