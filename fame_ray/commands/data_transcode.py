"""`fame-ray data transcode`: a training-friendly copy of a dataset (H.264, frequent keyframes,
the frame size kept unless asked), written by Ray tasks, same layout, resumable."""

from __future__ import annotations

from typing import Annotated

import typer

from fame_ray.commands import common
from fame_ray.config import PretrainConfig, presets
from fame_ray.errors import UserError
from fame_ray.storage import Location

Out = Annotated[
    str | None,
    typer.Option(
        "--out",
        "-o",
        help=(
            "Folder or s3:// prefix for the copy: new, or one this command wrote with the same settings (a rerun "
            "resumes it)."
        ),
    ),
]
ShortSide = Annotated[
    int,
    typer.Option(
        "--short-side",
        help=(
            "0 (default): keep every frame's size, the official geometry (the recipe crops the full frame). N: "
            "scale the short side to N pixels (aspect kept, even sizes, never upscaled; 112 at least), faster to "
            "decode but a deviation from the official geometry (docs/recipe.md), for frames much larger than the "
            "crop (Kinetics-400: 256 for I3D's 224-pixel crops)."
        ),
    ),
]
Gop = Annotated[
    int,
    typer.Option(
        "--gop", help="A keyframe every N frames: a random clip then decodes at most N-1 frames it does not use."
    ),
]
CropSize = Annotated[
    int | None,
    typer.Option(
        "--crop-size",
        help=(
            "The training crop the copy is for (default: data.crop_size of --config, else 112); a resized copy's "
            "--short-side must be at least 8/7 of it."
        ),
    ),
]
Crf = Annotated[int, typer.Option("--crf", help="x264 quality, 0 (lossless) to 51; 23 is x264's default.")]
Preset = Annotated[str, typer.Option("--preset", help="x264 speed preset (ultrafast ... veryslow).")]
OnlySplit = Annotated[
    int | None,
    typer.Option("--split", help="Only the videos that this split's files list (default: every video in the root)."),
]


def transcode(
    dataset: common.Dataset = None,
    data_root: common.DataRoot = None,
    out: Out = None,
    short_side: ShortSide = 0,
    gop: Gop = 16,
    split: OnlySplit = None,
    crop_size: CropSize = None,
    crf: Crf = 23,
    preset: Preset = "veryfast",
    s3_endpoint: common.S3Endpoint = None,
    config_file: common.ConfigFile = None,
) -> None:
    """Write a copy of a dataset that trains faster: H.264 with a keyframe every --gop frames,
    frame size, frame rate and frame count kept, audio dropped. --short-side N also scales the
    frames down (faster still, but the recipe then crops other pixels than the official code,
    which reads UCF101 and HMDB51 at 320x240: a deviation, docs/recipe.md). Videos keep their
    relative paths and file names (a UCF101 .avi holds H.264), the split and annotation files are
    copied unchanged: `fame-ray data prepare` and every other command take the copy's folder as
    --data-root, as they take the original.

    Runs as Ray tasks over chunks of videos (a local instance unless RAY_ADDRESS is set); reads
    and writes local folders or s3:// prefixes. A rerun skips the videos already written (each
    is written whole, never half); unreadable videos are listed, not fatal, and tried again on
    a rerun. The copy records its settings, the skipped videos and the sizes before and after
    in <out>/.fame-ray/transcode.json (skipped list also in transcode_skipped.csv).

    Examples:

      fame-ray data transcode --dataset ucf101 --data-root ~/fame-ray-data/UCF101 --out ~/fame-ray-data/UCF101-gop16

      fame-ray data transcode --config jobs/pretrain-k400-i3d.yaml --short-side 256 --out s3://bucket/k400-256

      fame-ray data transcode --dataset hmdb51 --data-root s3://data/hmdb51 --split 1 --out s3://data/hmdb51-copy
    """
    common.start_logging()
    from fame_ray.data import transcode  # ray, pyarrow and PyAV: loaded only to run

    settings = transcode.EncodeSettings(short_side=short_side, gop=gop, crf=crf, preset=preset)
    if not out:
        raise UserError(
            "--out is required", "give a new folder or s3:// prefix for the copy, e.g. --out <data root>-gop16"
        )
    if not dataset and not config_file:
        raise UserError("--dataset is required", "e.g. --dataset ucf101, or --config jobs/<recipe>.yaml")
    if dataset == "csv":
        raise UserError(
            "a csv list has no layout to copy", "transcode the folder the list points into with --dataset folder"
        )
    flags = {
        "data": {**common.data_flags(dataset, data_root, split), "crop_size": crop_size},
        "storage": common.storage_flags(s3_endpoint=s3_endpoint),
    }
    config = common.assemble(PretrainConfig, presets.PRETRAIN, flags, dataset, config_file, "recipe", None)
    settings.check_crop(config.data.crop_size)
    source = config.data_location()
    try:
        target = Location.parse(out, source.endpoint)
    except UserError as error:
        raise UserError(f"--out: {error.message}", error.hint) from None
    typer.echo(f"{settings.describe()}: {source} -> {target}")
    result = transcode.run(config.data, source, target, settings, split, on_progress=lambda p: typer.echo(p.line()))
    _summary(result, config.data.dataset)


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def _summary(result, dataset: str) -> None:
    typer.echo(
        f"transcoded {result.transcoded} videos, {result.already_done} done before, {len(result.skipped)} skipped; "
        f"copied {len(result.copied)} other files ({result.seconds:.1f}s)"
    )
    for path, reason in result.skipped[:20]:
        typer.echo(f"  skipped {path}: {reason}")
    if len(result.skipped) > 20:
        typer.echo(f"  ... {len(result.skipped) - 20} more")
    if result.skipped:
        typer.echo(f"  skipped videos listed in {result.skipped_file} (a rerun tries them again)")
    typer.echo(
        f"size before {_mib(result.bytes_before)}, after {_mib(result.bytes_after)} "
        f"({result.ratio:.1%} of the original, {1 / max(result.ratio, 1e-9):.1f}x smaller)"
    )
    typer.echo(f"summary in {result.record}")
    typer.echo(f"next: fame-ray data prepare --dataset {dataset} --data-root {result.out}")
