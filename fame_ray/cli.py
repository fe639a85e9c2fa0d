"""The `fame-ray` command: this file only wires commands; each lives in fame_ray/commands/.

fame-ray synth --layout ucf101 --out /tmp/ucf-synth
fame-ray data prepare --dataset ucf101 --data-root /tmp/ucf-synth
fame-ray data preview --dataset ucf101 --data-root /tmp/ucf-synth --out fame.png
fame-ray data transcode --dataset ucf101 --data-root /tmp/ucf-synth --out /tmp/ucf-synth-128
fame-ray pretrain                       # the demo: local Ray, synthetic data, tiny model
fame-ray finetune --dataset hmdb51 --pretrained fame-ray-runs/pretrain-.../checkpoint_...
fame-ray explain --pretrained fame-ray-runs/pretrain-synthetic-tiny --out maps.png
"""

from __future__ import annotations

import os
import sys

import typer

from fame_ray.commands import (
    bench,
    data_prepare,
    data_preview,
    data_transcode,
    experiment,
    explain,
    finetune,
    node,
    pretrain,
    report,
    reproduce,
    retrieve,
    runs,
    synth,
)
from fame_ray.errors import UserError, printable

app = typer.Typer(
    name="fame-ray",
    help="Self-supervised video pretraining with FAME + MoCo on Ray, and its downstream evaluation.\n\n"
    "Examples:\n\n"
    "  fame-ray pretrain                      (demo: local Ray, synthetic videos, tiny 3D CNN)\n\n"
    "  fame-ray synth --layout hmdb51 --out /tmp/hmdb-synth\n\n"
    "  fame-ray data prepare --dataset ucf101 --data-root ~/fame-ray-data/UCF101\n\n"
    "  fame-ray finetune --dataset ucf101 --pretrained fame-ray-runs/pretrain-synthetic-tiny",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Dataset catalogs, previews and training-friendly copies.", no_args_is_help=True)
bench_app = typer.Typer(help="Benchmarks that write JSON.", no_args_is_help=True)
runs_app = typer.Typer(help="Runs in a storage root: list them, show one.", no_args_is_help=True)
experiment_app = typer.Typer(help="Method comparisons through the whole product.", no_args_is_help=True)
node_app = typer.Typer(help="Helpers that run on the nodes of a cluster.", no_args_is_help=True)

app.command("synth")(synth.synth)
data_app.command("prepare")(data_prepare.prepare)
data_app.command("preview")(data_preview.preview)
data_app.command("transcode")(data_transcode.transcode)
app.add_typer(data_app, name="data")
app.command("pretrain")(pretrain.pretrain)
runs_app.command("list")(runs.list_runs)
runs_app.command("show")(runs.show_run)
app.add_typer(runs_app, name="runs")
app.command("finetune")(finetune.finetune)
app.command("retrieve")(retrieve.retrieve)
app.command("report")(report.report)
app.command("explain")(explain.explain)
app.command("reproduce")(reproduce.reproduce)
bench_app.command("data")(bench.bench_data)
bench_app.command("train")(bench.bench_train)
app.add_typer(bench_app, name="bench")
experiment_app.command("background-bias")(experiment.background_bias)
app.add_typer(experiment_app, name="experiment")
node_app.command("guard")(node.guard)
app.add_typer(node_app, name="node")


def _paragraphs(text: str) -> str:
    """A docstring as help text: the lines of a prose paragraph joined (so the terminal wraps
    them), indented lines (examples) kept as they are."""
    import inspect

    blocks = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(
        block if block[:1].isspace() else " ".join(line.strip() for line in block.splitlines()) for block in blocks
    )


def _unwrap_help(typer_app: typer.Typer) -> None:
    for command in typer_app.registered_commands:
        if command.help is None and command.callback is not None and command.callback.__doc__:
            command.help = _paragraphs(command.callback.__doc__)
    for group in typer_app.registered_groups:
        _unwrap_help(group.typer_instance)


_unwrap_help(app)


def debugging() -> bool:
    """FAME_RAY_DEBUG=1 (or true, yes, on) asks for tracebacks; 0, false, no, off or empty do not."""
    return os.environ.get("FAME_RAY_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def main() -> None:
    """Entry point: user mistakes print one line and exit 2 (traceback with FAME_RAY_DEBUG=1)."""
    try:
        app()
    except UserError as error:
        if debugging():
            raise
        # The message may quote the user's text: escaped, and cut so that it stays one line.
        print(f"error: {printable(error.one_line(), limit=2000)}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
