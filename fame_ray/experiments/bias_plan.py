"""What the background-bias experiment runs: its forms (quick, default, full), the recipe grid,
and the pretraining config of one run. Pure: checked before anything starts.

Recipe search, the same for every method: each point of the grid (config keys and their values,
`Plan.grid`) pretrains seed 0 on the biased training set of the tuning variant; a linear probe fitted
on those training videos' features is scored on the held-out validation split of the same set
(`scene_bias`: biased/test, never pretrained on, never a probe test set); the best point of each
method is its recipe, for every seed (seed 0 of the grid is reused) and every variant.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import asdict, dataclass, field, replace

import yaml

from fame_ray.config import METHODS, PretrainConfig, build, presets, to_dict
from fame_ray.errors import ConfigError, UserError
from fame_ray.experiments.scene_bias import VARIANTS, SceneBiasSpec

# Epochs of the default supervised ceiling: where its test accuracy levels off on the base set (README "The proof").
CEILING_EPOCHS = 40
# Keys the experiment sets itself: a grid over them would change what is compared, not the recipe.
OWN_KEYS = ("method", "preset", "data.", "storage.", "model.arch", "train.seed", "train.max_steps", "train.epochs")


@dataclass(frozen=True)
class Plan:
    """Everything a run of the experiment does (defaults: the default form, 25 pretraining runs: the five methods,
    three seeds, a three-point lr search, on the base set; README "The proof" has its measured time)."""

    spec: SceneBiasSpec = field(default_factory=SceneBiasSpec)
    variants: tuple[str, ...] = ("base",)
    """The sets measured (the default form: base; --variants all adds the four harder ones, 15 runs each)."""
    methods: tuple[str, ...] = METHODS
    """The pretraining methods compared: every method of config.METHODS."""
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 100
    """Pretraining steps of 32 clips per run (a cosine schedule that ends there)."""
    grid: tuple[tuple[str, tuple], ...] = (("optim.lr", (0.03, 0.1, 0.3)),)
    """The recipe search: (config key, values) pairs; every combination is a grid point."""
    tune_each_variant: bool = False
    """Search the grid on every variant's own validation split (else on the base set only)."""
    ceiling_epochs: int = CEILING_EPOCHS
    """Epochs of the supervised ceiling (cosine; 0: none)."""
    ceiling_variants: tuple[str, ...] = ("base",)
    """The variants that get a ceiling (each about 17 min on 2 CPUs at 40 epochs, as much as nine pretraining runs)."""
    eval_clips: int = 2
    """Clips per video averaged by the probes."""
    map_clips: int = 4
    """Clips drawn in each activation-map figure."""
    share_clips: int = 32
    """Test clips the in-mask share of every run is averaged over."""

    def points(self) -> list[dict]:
        """Every grid point as {key: value}, in grid order."""
        keys = [key for key, _ in self.grid]
        return [dict(zip(keys, values)) for values in itertools.product(*(values for _, values in self.grid))]

    def tuning_variants(self) -> tuple[str, ...]:
        return self.variants if self.tune_each_variant else ("base",)

    def pretraining_runs(self) -> int:
        """How many pretraining runs the plan makes: per method, every grid point on each tuning variant (seed 0),
        the other seeds on those, and every seed elsewhere."""
        tuned = len(self.tuning_variants())
        per_method = tuned * (len(self.points()) + len(self.seeds) - (0 in self.seeds))
        return len(self.methods) * (per_method + (len(self.variants) - tuned) * len(self.seeds))


def quick_plan() -> Plan:
    """The test suite's form (about 3 minutes on 2 CPUs): tiny sets, the base variant, FAME and MoCo,
    one seed, a one-point grid (the search runs, with nothing to choose), a one-epoch ceiling; every
    control and output of the full experiment, none of its statistics."""
    spec = SceneBiasSpec(train_per_class=8, val_per_class=2, probe_per_class=4, frames=20)
    return Plan(
        spec=spec,
        variants=("base",),
        methods=("fame", "moco"),
        seeds=(0,),
        steps=10,
        grid=(("optim.lr", (0.1,)),),
        ceiling_epochs=1,
        eval_clips=1,
        map_clips=2,
        share_clips=8,
    )


def full_plan() -> Plan:
    """The thorough form: every variant, twice the videos, three times the steps, lr x momentum
    searched on every variant, a ceiling on every variant."""
    spec = SceneBiasSpec(train_per_class=80, val_per_class=20, probe_per_class=40)
    return Plan(
        spec=spec,
        variants=tuple(VARIANTS),
        steps=300,
        grid=(("optim.lr", (0.03, 0.1, 0.3)), ("moco.momentum", (0.99, 0.996))),
        tune_each_variant=True,
        ceiling_epochs=60,
        ceiling_variants=tuple(VARIANTS),
        eval_clips=4,
        share_clips=64,
    )


FORMS = {"quick": quick_plan, "default": Plan, "full": full_plan}


def parse_grid(items: list[str]) -> tuple[tuple[str, tuple], ...]:
    """'key=v1,v2' strings -> grid pairs (values parsed as YAML; each key once)."""
    grid, seen = [], set()
    for item in items:
        if "=" not in item:
            raise UserError(f"--grid '{item[:60]}' is not KEY=V1,V2", "e.g. --grid optim.lr=0.03,0.1,0.3")
        key, raw = (part.strip() for part in item.split("=", 1))
        values = tuple(yaml.safe_load(value) for value in raw.split(",") if value.strip())
        if not values or key in seen:
            raise UserError(f"--grid {key}: {'no values' if not values else 'given twice'}", "e.g. --grid optim.lr=0.1")
        seen.add(key)
        grid.append((key, values))
    return tuple(grid)


def check(plan: Plan) -> None:
    """Every method, variant and grid key known, every grid point a valid config: one UserError."""
    unknown = [m for m in plan.methods if m not in METHODS]
    if unknown or not plan.methods:
        raise UserError(
            f"unknown method(s) {', '.join(unknown) or '(none)'}", f"use a comma-separated list of {', '.join(METHODS)}"
        )
    unknown = [v for v in (*plan.variants, *plan.ceiling_variants) if v not in VARIANTS]
    if unknown or not plan.variants:
        raise UserError(
            f"unknown variant(s) {', '.join(unknown) or '(none)'}",
            f"use a comma-separated list of {', '.join(VARIANTS)}",
        )
    if "base" not in plan.variants and not plan.tune_each_variant:
        raise UserError("the recipe is searched on the base set", "include base in --variants")
    outside = [v for v in plan.ceiling_variants if v not in plan.variants]
    if outside:
        raise UserError(
            f"a ceiling on {', '.join(outside)}, a set this run does not write", "add it to --variants as well"
        )
    for key, _ in plan.grid:
        if key.startswith(OWN_KEYS) or key in OWN_KEYS:
            raise UserError(f"--grid {key}: the experiment sets this key itself", "search recipe keys: optim.*, moco.*")
    for point in plan.points():
        for method in plan.methods:
            try:
                pretrain_config(plan, "/unused", method, 0, point, "/unused")
            except ConfigError as error:
                raise UserError(
                    f"--grid {point}: {error.message}", error.hint or "check the key and its values"
                ) from None


def best_point(found: list[dict]) -> dict:
    """The grid point of the run with the highest validation score (`found`: one run result per
    point, in grid order, each {"point", "readouts": {"validation"}}); a tie goes to the earlier point."""
    return max(found, key=lambda result: result["readouts"]["validation"])["point"]


def steps_per_epoch(plan: Plan) -> int:
    return max(1, plan.spec.classes * plan.spec.train_per_class // 32)


def pretrain_config(plan: Plan, root: str, method: str, seed: int, point: dict, runs: str) -> PretrainConfig:
    """One run's config: the tiny backbone at 8x48x48 on the biased training set, `point`'s grid
    values over the shared recipe. The epochs are the run's length, so the cosine ends at the last
    step. A short run, so the key encoder follows faster than the official m = 0.999 (tuned for 200
    epochs of Kinetics) and the queue (256 keys) holds fewer than the training videos."""
    values = {
        "method": method,
        "data": {
            "dataset": "folder",
            "data_root": root,
            "frames_per_clip": 8,
            "temporal_stride": 2,
            "crop_size": 48,
            "crop_scale": [0.6, 1.0],
            "eval_clips": plan.eval_clips,
            "test_crop": "center",
        },
        "model": {"arch": "tiny", "mlp_head": True},
        "moco": {"queue_size": 256, "momentum": 0.99},
        # DCLR's own queue and momentum, the same short-run values; its warm-up fills the queue (8 steps of 32).
        "dclr": {"queue_size": 256, "momentum": 0.99, "warmup_steps": 8},
        "optim": {"lr": 0.1, "base_batch": 32, "warmup_epochs": 0, "schedule": "cosine"},
        "train": {
            "epochs": math.ceil(plan.steps / steps_per_epoch(plan)),
            "max_steps": plan.steps,
            "global_batch": 32,
            "num_workers": 1,
            "cpus_per_worker": 1.0,
            "seed": seed,
            "checkpoint_every": plan.steps,
            "log_every": 25,
            "readout_every": 0,  # the experiment reads every run out itself
            "keep_checkpoints": 1,
        },
        "storage": {"path": runs},
    }
    overrides = [f"{key}={json.dumps(value)}" for key, value in point.items()]
    return build(PretrainConfig, presets.demo_pretrain(), values, None, overrides)


def point_name(point: dict) -> str:
    """'lr0.1-momentum0.99' for {'optim.lr': 0.1, 'moco.momentum': 0.99}."""
    return "-".join(f"{key.rsplit('.', 1)[-1]}{value}" for key, value in point.items()) or "recipe"


def digest(*parts) -> str:
    """8 hex digits over JSON-able parts: runs of other settings never share a name."""
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:8]


def run_name(cfg: PretrainConfig, variant: str, spec: SceneBiasSpec, point: dict) -> str:
    """<variant>-<method>-<grid point>-seed<seed>-<digest of the config and the set>."""
    settings = {k: v for k, v in to_dict(cfg).items() if k != "storage"}
    return f"{variant}-{cfg.method}-{point_name(point)}-seed{cfg.train.seed}-{digest(settings, asdict(spec))}"


def with_overrides(plan: Plan, **values) -> Plan:
    """`plan` with the fields given (None: unchanged)."""
    return replace(plan, **{k: v for k, v in values.items() if v is not None})
