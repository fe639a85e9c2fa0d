"""`fame-ray experiment background-bias`: every pretraining method on synthetic videos whose classes
differ only by motion, with controls, a recipe search and harder variants, through the whole product."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from fame_ray.commands import common
from fame_ray.config import METHODS
from fame_ray.errors import UserError, printable

# The names (kept in step with experiments.scene_bias.VARIANTS, which the run checks against).
VARIANT_NAMES = ("base", "palette", "small", "camera", "distractor")

Out = Annotated[
    str,
    typer.Option(
        "--out",
        "-o",
        help=(
            "Local folder for the sets, runs, results.json / .md / .png and maps/: new, empty, or one this "
            "experiment wrote (a rerun resumes it)."
        ),
    ),
]
# The folder's mark of an experiment that writes into it, and everything the experiment writes
# there (a folder written before the mark existed holds only these, data/ first of all).
MARKER = ".fame-ray-experiment"
OWN_ENTRIES = (
    "data",
    "runs",
    "manifests",
    "readouts",
    "ceiling",
    "maps",
    "random_init_tiny.pth",
    "results.json",
    "results.md",
    "results.png",
)
Quick = Annotated[
    bool,
    typer.Option("--quick", help="The test suite's form: tiny sets, base only, FAME and MoCo, 10 steps, one seed."),
]
Full = Annotated[
    bool,
    typer.Option(
        "--full", help="The thorough form: every variant, twice the videos, 300 steps, lr x momentum on every variant."
    ),
]
Seeds = Annotated[int | None, typer.Option("--seeds", min=1, help="Seeds per method (default 3; 1 with --quick).")]
Steps = Annotated[int | None, typer.Option("--steps", min=10, help="Pretraining steps per run (default 100).")]
CeilingEpochs = Annotated[
    int | None,
    typer.Option(
        "--ceiling-epochs", min=0, help="Epochs of the supervised ceiling (default 40, 60 with --full; 0: none)."
    ),
]
CeilingVariants = Annotated[
    str | None,
    typer.Option(
        "--ceiling-variants",
        help=(
            "Comma-separated sets that get a supervised ceiling, or all (default: base; every set with --full). "
            "Each is one supervised training of --ceiling-epochs, about 17 min on 2 CPUs at 40 epochs."
        ),
    ),
]
Methods = Annotated[
    str | None,
    typer.Option(
        "--methods",
        help=(f"Comma-separated pretraining methods out of {', '.join(METHODS)} (default: all of them)."),
    ),
]
Variants = Annotated[
    str | None,
    typer.Option(
        "--variants",
        help=(
            f"Comma-separated sets out of {', '.join(VARIANT_NAMES)}, or all (default: base; base is needed: the "
            "recipe is searched there). Each harder set adds 15 pretraining runs with the default methods and seeds."
        ),
    ),
]
Grid = Annotated[
    list[str] | None,
    typer.Option(
        "--grid",
        help="Recipe search, KEY=V1,V2 (repeatable; every combination is a point), e.g. --grid optim.lr=0.03,0.1,0.3.",
    ),
]
Verbose = Annotated[bool, typer.Option("--verbose", help="Let Ray's own logs through.")]


def _names(text: str | None, every: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """A comma-separated list as a tuple; 'all' is every name of `every`."""
    if text is None:
        return None
    return every if every and text.strip() == "all" else tuple(name.strip() for name in text.split(",") if name.strip())


def background_bias(
    out: Out = "bias-experiment",
    quick: Quick = False,
    full: Full = False,
    seeds: Seeds = None,
    steps: Steps = None,
    methods: Methods = None,
    variants: Variants = None,
    grid: Grid = None,
    ceiling_epochs: CeilingEpochs = None,
    ceiling_variants: CeilingVariants = None,
    verbose: Verbose = False,
) -> None:
    """Does pretraining learn the motion or the scene? Every pretraining method, tuned the same way, with controls.

    Writes synthetic sets whose classes differ only by how an object moves: a biased one (each class mostly on its
    own background family; its training videos are the pretraining set, its held-out split the validation set) and
    a decorrelated one (random backgrounds), for the base generator and for variants that each change one factor:
    palette (the object's fill from its background's texture), small (half the radius), camera (the background pans
    and shakes), distractor (a second object moving the same way in every class). Every method compared (--methods)
    gets the same recipe search (--grid, on the base set's validation split), then pretrains the tiny backbone with
    every seed on every variant (Ray Data + Ray Train). Frozen features are read out by linear probes: motion, scene
    (background family) and biased-to-decorrelated, each also on static twins of the sets (one frame repeated). A
    randomly initialised encoder (every seed) and a supervised ceiling frame the numbers; activation maps show where
    each encoder looks, with the share of activation inside the moving object.

    Writes OUT/results.json, results.md, results.png and OUT/maps/<variant>/<method>.png. A rerun with the same --out
    keeps every finished run. Time grows with the pretraining runs: the default form runs 25 (five methods, three
    seeds, a three-point lr search, the base set), about two minutes each on 2 CPUs (README "The proof" has the
    measured times); --variants all adds the four harder sets (60 runs more), --full is the thorough form;
    --methods, --seeds, --grid and --ceiling-epochs make it smaller; --ceiling-variants gives the harder sets a
    ceiling of their own.

    Examples:

      fame-ray experiment background-bias --out bias-experiment

      fame-ray experiment background-bias --out /tmp/bias --quick

      fame-ray experiment background-bias --out bias-experiment --variants base,camera --methods fame,moco --seeds 2

      fame-ray experiment background-bias --out bias-experiment --variants all --ceiling-variants all

      fame-ray experiment background-bias --out thorough --full --grid optim.lr=0.03,0.1,0.3 --grid moco.momentum=0.99
    """
    common.start_logging()
    plan = plan_of(quick, full, seeds, steps, methods, variants, grid, ceiling_epochs, ceiling_variants)
    from fame_ray.experiments import background_bias as experiment  # torch and ray: loaded only to run

    out = claim_folder(out)
    record = experiment.run(out, plan, verbose)
    typer.echo(experiment.bias_report.markdown(record))
    typer.echo(f"results: {out}/results.md, results.json, results.png and maps/")


def plan_of(
    quick: bool,
    full: bool,
    seeds: int | None,
    steps: int | None,
    methods: str | None,
    variants: str | None,
    grid: list[str] | None,
    ceiling_epochs: int | None,
    ceiling_variants: str | None,
):
    """The command's flags as a checked bias_plan.Plan (a UserError for bad input)."""
    if quick and full:
        raise UserError("--quick and --full are two different forms", "pass one of them")
    from fame_ray.experiments import bias_plan  # numpy and the config only: bad input is refused in seconds

    plan = bias_plan.FORMS["quick" if quick else "full" if full else "default"]()
    plan = bias_plan.with_overrides(
        plan,
        methods=_names(methods),
        variants=_names(variants, VARIANT_NAMES),
        seeds=tuple(range(seeds)) if seeds else None,
        steps=steps,
        grid=bias_plan.parse_grid(grid) if grid else None,
        ceiling_epochs=ceiling_epochs,
        ceiling_variants=_names(ceiling_variants, VARIANT_NAMES),
    )
    if ceiling_variants is None:  # the form's ceilings, on the sets this run writes (--full --variants base,camera)
        plan = bias_plan.with_overrides(
            plan, ceiling_variants=tuple(name for name in plan.ceiling_variants if name in plan.variants)
        )
    bias_plan.check(plan)
    return plan


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
