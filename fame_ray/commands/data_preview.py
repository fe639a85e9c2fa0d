"""`fame-ray data preview`: a picture of what FAME does to a few clips of a dataset."""

from __future__ import annotations

import io
import os
from typing import Annotated

import typer

from fame_ray.commands import common
from fame_ray.config import PretrainConfig, presets
from fame_ray.errors import UserError, printable

Out = Annotated[
    str,
    typer.Option("--out", "-o", help="Picture to write (.png, or another format Pillow writes; --force overwrites)."),
]
Clips = Annotated[
    int, typer.Option("--clips", min=2, max=16, help="Clips (rows) to show; FAME swaps backgrounds among them.")
]
Beta = Annotated[
    float | None, typer.Option("--beta", help="Foreground share of the FAME mask (default: fame.beta, 0.5).")
]
Frames = Annotated[int, typer.Option("--frames", min=1, max=8, help="Frames shown per clip.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed for picking the videos.")]
SubsetOption = Annotated[str, typer.Option("--subset", help="Manifest subset: train or test.")]
Method = Annotated[
    str, typer.Option("--method", help="What to show: fame (mask and merge) or dclr (static and dynamic views).")
]


def preview(
    dataset: common.Dataset = None,
    data_root: common.DataRoot = None,
    split: common.Split = None,
    csv: common.CsvList = None,
    out: Out = "fame.png",
    clips: Clips = 4,
    beta: Beta = None,
    frames: Frames = 4,
    subset: SubsetOption = "train",
    seed: Seed = 0,
    method: Method = "fame",
    config_file: common.ConfigFile = None,
    overrides: common.Overrides = None,
    s3_endpoint: common.S3Endpoint = None,
    force: common.Force = False,
) -> None:
    """Write a picture of FAME on a few clips: original frames, the foreground mask, the merged clip.

    With --method dclr the picture shows DCLR's views instead: the clip, its static view (one
    frame) and its dynamic view (frame differences).

    Clips are centre crops (data.crop_size) from different videos of the manifest; each
    row gets the background of the next row (pretraining draws a random permutation
    within the batch instead). Decodes in this process; only a missing manifest is first
    prepared (probing on a local Ray instance).

    Examples:

      fame-ray data preview --out fame.png

      fame-ray data preview --dataset ucf101 --data-root ~/fame-ray-data/UCF101 --clips 6 --beta 0.4 --out ucf-fame.png

      fame-ray data preview --set data.crop_size=96 --set data.frames_per_clip=8
    """
    common.start_logging()
    image_format = _image_format(out)
    common.check_output_file(out, force=force)
    if method not in ("fame", "dclr"):
        raise UserError(f"--method must be fame or dclr, got {method[:40]!r}", "e.g. --method dclr")
    if subset not in ("train", "test"):
        raise UserError(f"--subset must be train or test, got {subset[:40]!r}", "e.g. --subset test")
    from fame_ray.data import ready  # torch, ray and decord: loaded only to run
    from fame_ray.data.clips.preview import render

    flags = {
        "data": common.data_flags(dataset, data_root, split, csv),
        "method": method,
        "fame": {"beta": beta},
        "storage": common.storage_flags(s3_endpoint=s3_endpoint),
    }
    cfg = common.assemble(PretrainConfig, presets.PRETRAIN, flags, dataset, config_file, None, overrides)
    sheet, shown = render(cfg, ready.manifests(cfg.data, cfg.data_location())[subset], clips, frames, seed)

    picture = io.BytesIO()
    sheet.save(picture, format=image_format)
    common.write_output_file(out, picture.getvalue())
    shown_what = "DCLR views" if method == "dclr" else f"FAME, beta {cfg.fame.beta}"
    typer.echo(f"wrote {out}: {shown} clips of {cfg.data.dataset}, {shown_what}")


def _image_format(out: str) -> str:
    """The Pillow format --out's extension names, checked before anything is decoded."""
    from PIL import Image

    Image.init()
    extension = os.path.splitext(out)[1].lower()
    image_format = Image.registered_extensions().get(extension)
    if image_format is None or image_format not in Image.SAVE:
        raise UserError(
            f"--out {printable(out)}: Pillow writes no '{printable(extension)}' pictures"
            if extension
            else f"--out {printable(out)} has no extension to tell the picture's format",
            "give a file name ending in .png",
        )
    return image_format
