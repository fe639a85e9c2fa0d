"""`fame-ray runs list` and `fame-ray runs show RUN`: runs in a storage root."""

from __future__ import annotations

from typing import Annotated

import typer

from fame_ray.commands import common
from fame_ray.config import StorageConfig

RunArgument = Annotated[str, typer.Argument(help="Run name (a folder under the storage root).")]
_SHOWN = ("loss", "acc1", "lr", "clips_per_s", "data_wait", "world_size")


def _root(storage: str | None, s3_endpoint: str | None):
    root = StorageConfig(path=storage or "", s3_endpoint=s3_endpoint or "").root()
    root.check_writable_root()
    return root


def _metrics_text(metrics: dict) -> str:
    parts = []
    for key in _SHOWN:
        value = metrics.get(key)
        if isinstance(value, float):
            parts.append(f"{key}={value:.4g}")
        elif value is not None:
            parts.append(f"{key}={value}")
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
    summaries = checkpoints.summarize_all(root)
    if not summaries:
        typer.echo(f"no runs in {root}")
        return
    typer.echo(f"{'run':40} {'step':>8} {'ckpts':>5}  latest metrics")
    for run in summaries:
        complete = sum(info.complete for info in run.checkpoints)
        typer.echo(f"{run.name:40} {run.last_step:>8} {complete:>5}  {_metrics_text(run.last_metrics)}")


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
    typer.echo(f"run {summary.name}: {summary.uri}")
    typer.echo(f"last step {summary.last_step}; latest metrics: {_metrics_text(summary.last_metrics)}")
    latest = summary.latest
    typer.echo(f"resume point: {latest.uri if latest else 'none (no complete checkpoint yet)'}")
    for info in summary.checkpoints:
        status = "complete" if info.complete else "INCOMPLETE (no valid meta.json: cut off or damaged; ignored)"
        sha = info.meta.get("git_sha", "")
        typer.echo(f"  {info.name}  step {info.step:>8}  {status}  {('git ' + sha) if sha else ''}".rstrip())
    stages = progress.stage_report(checkpoints.read_records(summary.location))
    if stages:
        typer.echo(f"time: {stages}")
    kept = checkpoints.data_stats(summary.location)
    if kept:
        typer.echo(
            f"Ray Data stats per epoch: {len(kept)} file(s) in "
            f"{summary.location / checkpoints.DATA_STATS_DIR}, latest {kept[-1]}"
        )
