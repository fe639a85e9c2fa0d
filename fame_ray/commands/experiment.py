"""`fame-ray experiment background-bias`: every pretraining method on synthetic videos whose classes
differ only by motion, with controls, a recipe search and harder variants, through the whole product."""

from __future__ import annotations

from typing import Annotated

import typer

from fame_ray.commands import common
from fame_ray.config import METHODS
from fame_ray.errors import UserError

# The names (kept in step with experiments.scene_bias.VARIANTS, which the run checks against).
VARIANT_NAMES = ("base", "palette", "small", "camera", "distractor")

Out = Annotated[
    str,
    typer.Option(
        "--out", "-o", help="Local folder for the sets, runs, results.json / .md / .png and maps/ (reruns resume)."
    ),
]
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
Methods = Annotated[
    str | None,
    typer.Option("--methods", help=f"Comma-separated pretraining methods out of {', '.join(METHODS)} (default: all)."),
]
Variants = Annotated[
    str | None,
    typer.Option(
        "--variants",
        help=(
            f"Comma-separated sets out of {', '.join(VARIANT_NAMES)}, or all (default: base, palette, camera; base is "
            "needed: the recipe is searched there)."
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
    verbose: Verbose = False,
) -> None:
    """Does pretraining learn the motion or the scene? Every pretraining method, tuned the same way, with controls.

    Writes synthetic sets whose classes differ only by how an object moves: a biased one (each class mostly on its
    own background family; its training videos are the pretraining set, its held-out split the validation set) and
    a decorrelated one (random backgrounds), for the base generator and for variants that each change one factor:
    palette (the object's fill from its background's texture), small (half the radius), camera (the background pans
    and shakes), distractor (a second object moving the same way in every class). Every method of config.METHODS
    gets the same recipe search (--grid, on the base set's validation split), then pretrains the tiny backbone with
    every seed on every variant (Ray Data + Ray Train). Frozen features are read out by linear probes: motion, scene
    (background family) and biased-to-decorrelated, each also on static twins of the sets (one frame repeated). A
    randomly initialised encoder (every seed) and a supervised ceiling frame the numbers; activation maps show where
    each encoder looks, with the share of activation inside the moving object.

    Writes OUT/results.json, results.md, results.png and OUT/maps/<variant>/<method>.png. A rerun with the same --out
    keeps every finished run. The default form takes about 90 minutes on 2 CPUs with three methods (time grows with
    the methods); --full about 6 hours (README "The proof").

    Examples:

      fame-ray experiment background-bias --out bias-experiment

      fame-ray experiment background-bias --out /tmp/bias --quick

      fame-ray experiment background-bias --out bias-experiment --variants base,camera --methods fame,moco --seeds 2

      fame-ray experiment background-bias --out thorough --full --grid optim.lr=0.03,0.1,0.3 --grid moco.momentum=0.99
    """
    common.start_logging()
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
    )
    bias_plan.check(plan)
    from fame_ray.experiments import background_bias as experiment  # torch and ray: loaded only to run

    experiment.check_out(out)
    record = experiment.run(out, plan, verbose)
    typer.echo(experiment.bias_report.markdown(record))
    typer.echo(f"results: {out}/results.md, results.json, results.png and maps/")
