"""`fame-ray report`: several downstream runs side by side, the way a paper's table reads."""

from __future__ import annotations

from typing import Annotated

import typer

from fame_ray.commands import common
from fame_ray.config import StorageConfig
from fame_ray.errors import UserError

Runs = Annotated[
    list[str],
    typer.Argument(help="Run directories (local or s3://), results.json files, or run names under --storage."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the records as JSON instead of a Markdown table.")]
Out = Annotated[
    str | None, typer.Option("--out", "-o", help="Also write the table to this file (an existing one needs --force).")
]


def report(
    runs: Runs,
    storage: common.Storage = None,
    s3_endpoint: common.S3Endpoint = None,
    as_json: AsJson = False,
    out: Out = None,
    force: common.Force = False,
) -> None:
    """Print the results of several finetune / linear / retrieval runs as one table.

    One row per run: backbone, the pretraining recipe (data, epochs, schedule, MLP head, queue size K, read from the
    checkpoint's config.yaml), the downstream dataset, split and mode, then the metrics in percent (video/clip
    top-1/top-5, R@k).

    Examples:

      fame-ray report fame-ray-runs/finetune-ucf101-split1-r2plus1d_18 fame-ray-runs/linear-ucf101-split1-r2plus1d_18

      fame-ray report finetune-hmdb51-split1-i3d retrieval-ucf101-split1-i3d --storage s3://bucket/runs
    """
    import json
    import os

    from fame_ray.eval import report as results

    if out:
        common.check_output_file(out, force=force)
    root = StorageConfig(path=storage or "", s3_endpoint=s3_endpoint or "").root()
    found = [results.find(run, root) for run in runs]
    read = {os.path.realpath(location.uri) for location in found if not location.is_s3}
    if out and os.path.realpath(os.path.expanduser(out)) in read:
        raise UserError(f"--out {out} is one of the results files this report reads", "write the table elsewhere")
    records = [results.read_record(location) for location in found]
    text = json.dumps(records, indent=2, default=str) if as_json else results.side_by_side(records)
    typer.echo(text)
    if out:
        common.write_output_file(out, (text + "\n").encode())
