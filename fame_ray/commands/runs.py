"""`fame-ray runs list` and `fame-ray runs show RUN`: runs in a storage root."""

from __future__ import annotations

from typing import Annotated

import typer

from fame_ray.commands import common
from fame_ray.config import StorageConfig
from fame_ray.errors import UserError, printable

RunArgument = Annotated[str, typer.Argument(help="Run name (a folder under the storage root).")]
_SHOWN = ("loss", "acc1", "lr", "clips_per_s", "data_wait", "world_size")


def _root(storage: str | None, s3_endpoint: str | None):
    root = StorageConfig(path=storage or "", s3_endpoint=s3_endpoint or "").root()
    root.check_writable_root()
    # An s3:// prefix exists once something is written under it; a local root must be a folder.
    if not root.is_s3 and not root.is_dir():
        raise UserError(
            f"the storage root {root} does not exist"
            if not root.exists()
            else f"the storage root {root} is not a folder",
            "pass --storage DIR, the folder `fame-ray pretrain --storage` wrote its runs into",
        )
    return root


def _metrics_text(metrics: dict) -> str:
    """The latest metrics as `key=value` words; a value that is not a number (a metrics file
    that someone else wrote) is shown escaped and short."""
    parts = []
    for key in _SHOWN:
        value = metrics.get(key)
        if isinstance(value, float):
            parts.append(f"{key}={value:.4g}")
        elif value is not None:
            parts.append(f"{key}={printable(value, limit=24)}")
    return " ".join(parts) or "-"


def list_runs(storage: common.Storage = None, s3_endpoint: common.S3Endpoint = None) -> None:
    """List the runs in a storage root: last step, checkpoints, latest metrics.

    Examples:

      fame-ray runs list

      fame-ray runs list --storage s3://bucket/runs --s3-endpoint http://minio:9000
    """
    common.start_logging()
    from fame_ray import checkpoints

    root = _root(storage, s3_endpoint)
    summaries, skipped = checkpoints.summarize_all(root)
    if not summaries and not skipped:
        typer.echo(f"no runs in {root}")
        return
    typer.echo(f"{'run':40} {'step':>8} {'ckpts':>5}  latest metrics")
    for run in summaries:
        complete = sum(info.complete for info in run.checkpoints)
        step = printable(run.last_step, limit=12)
        typer.echo(f"{printable(run.name):40} {step:>8} {complete:>5}  {_metrics_text(run.last_metrics)}")
    for name, reason in skipped:
        typer.echo(f"{printable(name):40} skipped: its files cannot be read ({printable(reason)})")


def show_run(run: RunArgument, storage: common.Storage = None, s3_endpoint: common.S3Endpoint = None) -> None:
    """Show one run: where it is, every checkpoint (step, complete or not), latest metrics.

    Examples:

      fame-ray runs show pretrain-synthetic-tiny

      fame-ray runs show my-run --storage s3://bucket/runs
    """
    common.start_logging()
    from fame_ray import checkpoints
    from fame_ray.pretrain import progress

    root = _root(storage, s3_endpoint)
    summary = checkpoints.summarize(root, run)
    typer.echo(f"run {printable(summary.name)}: {printable(summary.uri, limit=500)}")
    typer.echo(
        f"last step {printable(summary.last_step, limit=24)}; latest metrics: {_metrics_text(summary.last_metrics)}"
    )
    latest = summary.latest
    typer.echo(f"resume point: {printable(latest.uri, limit=500) if latest else 'none (no complete checkpoint yet)'}")
    for info in summary.checkpoints:
        status = "complete" if info.complete else "INCOMPLETE (no valid meta.json: cut off or damaged; ignored)"
        sha = info.meta.get("git_sha", "")
        shown = f"git {printable(sha, limit=40)}" if sha else ""  # meta.json may hold anything here
        step = printable(info.step, limit=24)
        typer.echo(f"  {printable(info.name)}  step {step:>8}  {status}  {shown}".rstrip())
    stages = progress.stage_report(checkpoints.read_records(summary.location))
    if stages:
        typer.echo(f"time: {stages}")
    kept = checkpoints.data_stats(summary.location)
    if kept:
        typer.echo(
            f"data stream stats per epoch: {len(kept)} file(s) in "
            f"{printable(summary.location / checkpoints.DATA_STATS_DIR, limit=500)}, latest {printable(kept[-1])}"
        )
