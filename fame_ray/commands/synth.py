"""`fame-ray synth`: write a synthetic dataset in an official layout (real H.264 videos)."""

from __future__ import annotations

from typing import Annotated

import typer

from fame_ray.commands import common
from fame_ray.errors import UserError

LAYOUTS = "ucf101, hmdb51, diving48, kinetics400, folder"


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    if not (width.isdigit() and height.isdigit()):
        raise UserError(f"--size must be WIDTHxHEIGHT, got '{text}'", "e.g. --size 160x120")
    return int(width), int(height)


def synth(
    out: Annotated[
        str,
        typer.Option(
            "--out",
            "-o",
            help="Folder to write the dataset into (created; must be new, empty or a synthetic dataset already).",
        ),
    ],
    layout: Annotated[str, typer.Option("--layout", "-l", help=f"Official layout to write: {LAYOUTS}.")] = "ucf101",
    classes: Annotated[
        int,
        typer.Option(
            "--classes",
            help=(
                "Number of classes (motions: horizontal, vertical, circle, diagonal, pulse, zigzag, figure eight, "
                "spiral; then faster)."
            ),
        ),
    ] = 6,
    videos_per_class: Annotated[int, typer.Option("--videos-per-class", help="Videos per class (at least 2).")] = 8,
    frames: Annotated[int, typer.Option("--frames", help="Frames per video.")] = 48,
    size: Annotated[str, typer.Option("--size", help="Frame size WIDTHxHEIGHT (even numbers).")] = "160x120",
    fps: Annotated[int, typer.Option("--fps", help="Frames per second written in the file.")] = 25,
    scene_bias: Annotated[
        bool,
        typer.Option(
            "--scene-bias", help="Tie each background's colour and texture to the class (the shortcut FAME removes)."
        ),
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed writes the same dataset.")] = 0,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Write into a folder that holds other files (files of the same names are overwritten)."
        ),
    ] = False,
) -> None:
    """Write a synthetic dataset of real H.264 videos in an official dataset layout.

    Classes differ by how a foreground object moves; every video has its own textured
    background. The split and annotation files are those the real dataset ships, so
    `fame-ray data prepare --dataset <layout>` reads the result like the real thing.

    Examples:

      fame-ray synth --layout ucf101 --out /tmp/ucf-synth

      fame-ray synth --layout kinetics400 --out /tmp/k400-synth --classes 8 --videos-per-class 12

      fame-ray synth --layout hmdb51 --out /tmp/hmdb-bias --scene-bias --size 224x168

      fame-ray data prepare --dataset ucf101 --data-root /tmp/ucf-synth
    """
    common.start_logging()
    import time

    from fame_ray.data.synthetic import write_dataset

    out = common.local_path(out, "--out")
    width, height = _size(size)
    started = time.time()
    root = write_dataset(
        out,
        layout,
        num_classes=classes,
        videos_per_class=videos_per_class,
        frames=frames,
        width=width,
        height=height,
        fps=fps,
        scene_bias=scene_bias,
        seed=seed,
        force=force,
    )
    typer.echo(
        f"wrote {classes * videos_per_class} videos ({classes} classes, {layout} layout"
        f"{', scene bias' if scene_bias else ''}) to {root} in {time.time() - started:.1f}s"
    )
    typer.echo(f"next: fame-ray data prepare --dataset {layout} --data-root {root}")
