"""Options shared by several commands, and the config-building step they all take."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from fame_ray import config as cfg
from fame_ray import logs

Dataset = Annotated[Optional[str], typer.Option("--dataset", "-d", help=f"Dataset: {', '.join(cfg.DATASETS)}.")]
DataRoot = Annotated[Optional[str], typer.Option("--data-root", help="Dataset folder or s3:// prefix (default: $FAME_RAY_DATA/<dataset>, $FAME_RAY_DATA defaults to ~/fame-ray-data).")]
Split = Annotated[Optional[int], typer.Option("--split", help="Official split 1, 2 or 3.")]
CsvList = Annotated[Optional[str], typer.Option("--csv", help="For --dataset csv: a `path,label` list file.")]
ConfigFile = Annotated[Optional[str], typer.Option("--config", "-c", help="YAML config file (see jobs/).")]
Preset = Annotated[Optional[str], typer.Option("--preset", help="Named preset the config starts from.")]
Overrides = Annotated[Optional[list[str]], typer.Option("--set", help="Override any config key: --set train.epochs=5 (repeatable).")]
Storage = Annotated[Optional[str], typer.Option("--storage", help="Runs root: local folder or s3://bucket/prefix (default ./fame-ray-runs).")]
S3Endpoint = Annotated[Optional[str], typer.Option("--s3-endpoint", help="S3-compatible endpoint URL (default: $AWS_ENDPOINT_URL).", envvar=None)]
RunName = Annotated[Optional[str], typer.Option("--run-name", help="Run name; running again with the same name resumes it.")]


def data_flags(dataset=None, data_root=None, split=None, csv=None) -> dict:
    """The `data` section from the common data flags (only those given)."""
    values = {"dataset": dataset, "data_root": data_root, "split": split, "csv_path": csv}
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


def start_logging() -> None:
    logs.setup()
