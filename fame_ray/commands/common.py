"""Options shared by several commands, and the one config-assembly step they all take:
preset, then YAML file, then the command's flags, then `--set key=value` overrides."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from fame_ray import logs
from fame_ray.config import DATASETS, apply_overrides, build, load_yaml, presets
from fame_ray.errors import UserError, printable
from fame_ray.storage import S3_SCHEME, check_uri, write_file_atomically

Dataset = Annotated[str | None, typer.Option("--dataset", "-d", help=f"Dataset: {', '.join(DATASETS)}.")]
DataRoot = Annotated[
    str | None,
    typer.Option(
        "--data-root",
        help=(
            "Dataset folder or s3:// prefix (default: $FAME_RAY_DATA/<dataset>, $FAME_RAY_DATA defaults to "
            "~/fame-ray-data)."
        ),
    ),
]
Split = Annotated[int | None, typer.Option("--split", help="Official split 1, 2 or 3.")]
CsvList = Annotated[str | None, typer.Option("--csv", help="For --dataset csv: a `path,label` list file.")]
ConfigFile = Annotated[str | None, typer.Option("--config", "-c", help="YAML config file (see jobs/).")]
Preset = Annotated[str | None, typer.Option("--preset", help="Named preset the config starts from.")]
Overrides = Annotated[
    list[str] | None, typer.Option("--set", help="Override any config key: --set train.epochs=5 (repeatable).")
]
Storage = Annotated[
    str | None,
    typer.Option("--storage", help="Runs root: local folder or s3://bucket/prefix (default ./fame-ray-runs)."),
]
S3Endpoint = Annotated[
    str | None,
    typer.Option("--s3-endpoint", help="S3-compatible endpoint URL (default: $AWS_ENDPOINT_URL).", envvar=None),
]
DryRun = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help=(
            "Print the resolved config, the protocol (docs/recipe.md's settings with this run's values) and the plan "
            "(workers, CPUs, batch and micro batch, length, memory estimate), check the inputs, and exit without "
            "training."
        ),
    ),
]
Force = Annotated[
    bool, typer.Option("--force", help="Overwrite the --out file when it already exists (it is kept otherwise).")
]
RunName = Annotated[
    str | None, typer.Option("--run-name", help="Run name; running again with the same name resumes it.")
]


def data_flags(dataset=None, data_root=None, split=None, csv=None) -> dict:
    """The `data` section from the common data flags (only those given)."""
    values = {"dataset": dataset, "data_root": data_root, "split": split, "csv_path": csv}
    return {k: v for k, v in values.items() if v is not None}


def storage_flags(storage=None, s3_endpoint=None, run_name=None, resume=None) -> dict:
    """The `storage` section from the common storage flags (only those given)."""
    values = {"path": storage, "s3_endpoint": s3_endpoint, "run_name": run_name, "resume": resume}
    return {k: v for k, v in values.items() if v is not None}


def drop_none(values: dict) -> dict:
    """Nested dict without the None leaves (flags the user did not give)."""
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            value = drop_none(value)
            if value:
                out[key] = value
        elif value is not None:
            out[key] = value
    return out


def assemble(
    cls,
    table: dict,
    flags: dict,
    dataset: str | None,
    config_file: str | None,
    preset: str | None,
    overrides: list[str] | None,
):
    """The one way every command builds its config: the preset (`--preset`, else
    `presets.choose`: the demo for a bare synthetic run, the official linear probe for
    `--mode linear`, else the official recipe), then the YAML file, then the flags the user
    gave, then `--set` overrides; the result validated as a whole."""
    file_values = load_yaml(config_file) if config_file else None
    mode = flags.get("mode") or apply_overrides({}, overrides or []).get("mode")
    chosen = presets.choose(preset, config_file, dataset, mode)
    return build(cls, presets.get(table, chosen), file_values, drop_none(flags), overrides or [])


def local_path(path: str, flag: str) -> str:
    """A flag that takes a local path: through the same check as every location
    (storage.check_uri: no other scheme, no credentials in it), then s3:// refused; the path
    with `~` expanded."""
    try:
        check_uri(path)
    except UserError as error:
        raise UserError(f"{flag}: {error.message}", error.hint) from None
    if path.startswith(S3_SCHEME):
        raise UserError(f"{flag} takes a local folder or file, not an s3:// location", f"give a local path for {flag}")
    return os.path.expanduser(path)


def check_output_file(path: str, flag: str = "--out", force: bool = False) -> None:
    """Fail before any work when `path` cannot be written: it must be a local file in a folder
    that exists and is writable (a benchmark or a sweep should not run to the end and then lose
    its output), and a file already there is overwritten only with --force."""
    target = Path(local_path(path, flag))
    if target.is_dir():
        raise UserError(f"{flag} {printable(path)} is a folder", f"give a file name for {flag}")
    if not target.parent.is_dir():
        raise UserError(
            f"{flag} {printable(path)}: the folder {printable(target.parent)} does not exist",
            f"create it first or pick another {flag}",
        )
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {printable(path)}: the folder is not writable", f"pick another {flag}")
    if (target.exists() or target.is_symlink()) and not force:
        raise UserError(
            f"{flag} {printable(path)} already exists", f"pass --force to overwrite it, or pick another {flag}"
        )


def check_folder_target(path: str, flag: str) -> None:
    """A local folder that a command creates or writes into: not a file, no file on the way to
    it, and the nearest folder that exists is writable."""
    if os.path.lexists(path) and not os.path.isdir(path):
        raise UserError(f"{flag} {printable(path)} is a file, not a folder", f"give a folder for {flag}")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(parent):
        if os.path.lexists(parent):
            raise UserError(f"{flag} {printable(path)}: {printable(parent)} is a file", f"give a folder for {flag}")
        parent = os.path.dirname(parent)
    if not os.access(path if os.path.isdir(path) else parent, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {printable(path)} is not writable", f"pick another {flag}")


def write_output_file(path: str, data: bytes) -> None:
    """Write a command's output file whole (a temporary name, then a rename; a link at the path
    is replaced, never followed)."""
    write_file_atomically(os.path.expanduser(path), lambda stream: stream.write(data))


def start_logging() -> None:
    logs.setup()
