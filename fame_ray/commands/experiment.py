"""`fame-ray experiment background-bias`: FAME against plain MoCo and Background Erasing on
synthetic videos whose classes differ only by motion, through the whole product."""

from __future__ import annotations

import dataclasses
import os
from typing import Annotated

import typer

from fame_ray.commands import common
from fame_ray.config import METHODS
from fame_ray.errors import UserError, printable

Out = Annotated[
    str,
    typer.Option(
        "--out",
        "-o",
        help=(
            "Local folder for the sets, the runs and results.json / .md / .png: new, empty, or one this experiment "
            "wrote (a rerun resumes it)."
        ),
    ),
]
# The folder's mark of an experiment that writes into it, and everything the experiment writes
# there (a folder written before the mark existed holds only these, data/ first of all).
MARKER = ".fame-ray-experiment"
OWN_ENTRIES = ("data", "runs", "manifests", "random_init_tiny.pth", "results.json", "results.md", "results.png")
Quick = Annotated[
    bool,
    typer.Option(
        "--quick", help="The test suite's form: half the videos, 100 steps, one seed, FAME and MoCo (minutes)."
    ),
]
Seeds = Annotated[int | None, typer.Option("--seeds", min=1, help="Seeds per method (default 3; 1 with --quick).")]
Methods = Annotated[
    str | None,
    typer.Option(
        "--methods", help=f"Comma-separated pretraining methods out of {', '.join(METHODS)} (default: all three)."
    ),
]
Verbose = Annotated[bool, typer.Option("--verbose", help="Let Ray's own logs through.")]


def background_bias(
    out: Out = "bias-experiment",
    quick: Quick = False,
    seeds: Seeds = None,
    methods: Methods = None,
    verbose: Verbose = False,
) -> None:
    """Does pretraining learn the motion or the scene? FAME vs MoCo vs Background Erasing.

    Writes two synthetic sets whose classes differ only by how an object moves: a biased one (each class mostly on
    its own background family) and a decorrelated one (random backgrounds). Pretrains the tiny backbone with every
    method and seed on the biased set (Ray Data + Ray Train, the same budget each), then reads out frozen features
    with linear probes: motion (decorrelated set), scene (background family) and biased-to-decorrelated (trained on
    the biased set, tested on the decorrelated one). A randomly initialised encoder and a supervised finetune (the
    ceiling) frame the numbers.

    Writes OUT/results.json (mean and std over the seeds per method and read-out), OUT/results.md (the table) and
    OUT/results.png (the chart). The full form takes about 45 minutes on 2 CPUs.

    Examples:

      fame-ray experiment background-bias --out bias-experiment

      fame-ray experiment background-bias --out /tmp/bias --quick

      fame-ray experiment background-bias --out /tmp/bias --methods fame,moco --seeds 2
    """
    common.start_logging()
    from fame_ray.experiments import background_bias as experiment  # torch and ray: loaded only to run

    plan = experiment.quick_plan() if quick else experiment.Plan()
    if methods:
        chosen = tuple(m.strip() for m in methods.split(",") if m.strip())
        unknown = [m for m in chosen if m not in METHODS]
        if unknown or not chosen:
            raise UserError(
                f"unknown method(s) {', '.join(unknown) or '(none)'}",
                f"use a comma-separated list of {', '.join(METHODS)}",
            )
        plan = dataclasses.replace(plan, methods=chosen)
    if seeds:
        plan = dataclasses.replace(plan, seeds=tuple(range(seeds)))
    out = claim_folder(out)
    record = experiment.run(out, plan, verbose)
    typer.echo(experiment.markdown(record))
    typer.echo(f"results: {out}/results.md, results.json and results.png")


def claim_folder(out: str) -> str:
    """--out checked before anything runs, then marked as the experiment's: a new or empty
    folder, or one the experiment wrote (its finished runs are kept, so a rerun resumes). A file,
    or a folder that holds anything else, is refused: results.* would be overwritten at the end."""
    path = os.path.abspath(common.local_path(out, "--out"))
    common.check_folder_target(path, "--out")
    entries = sorted(os.listdir(path)) if os.path.isdir(path) else []
    if entries and MARKER not in entries and not _written_before(path, entries):
        foreign = [name for name in entries if not _own(name)] or entries
        raise UserError(
            f"--out {printable(out)} holds files this experiment did not write (e.g. {printable(foreign[0], 60)})",
            "pick a new or empty folder; a rerun into the experiment's own folder resumes it",
        )
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, MARKER), "w") as marker:
        marker.write("fame-ray experiment background-bias writes here; a rerun with this --out resumes it\n")
    return path


def _own(name: str) -> bool:
    """One of the experiment's entries, or the hidden temporary file of a write of one that was cut off."""
    return name in OWN_ENTRIES or any(name.startswith(f".{own}.") for own in OWN_ENTRIES)


def _written_before(path: str, entries: list[str]) -> bool:
    """A folder the experiment wrote before it marked its folders: only its own entries, and
    data/ holding only its two sets."""
    data = os.path.join(path, "data")
    return (
        all(_own(name) for name in entries)
        and os.path.isdir(data)
        and set(os.listdir(data)) <= {"biased", "decorrelated"}
    )
