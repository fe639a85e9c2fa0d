"""The background-bias experiment: does a pretraining method learn the motion, or the scene?

    fame-ray experiment background-bias --out bias-experiment          # the default form (25 pretraining runs)
    fame-ray experiment background-bias --out /tmp/bias --quick        # the test suite's form (minutes)

Everything runs through the product: synthetic sets written as `folder` datasets (`scene_bias`),
one per generator variant (one factor of the base set changed each: the object's colours from
the background palette, smaller objects, a panning and shaking camera, a distractor); every
method of config.METHODS pretrained with `fame-ray pretrain`'s own driver (Ray Data + Ray Train)
on each variant's biased set with every seed; frozen features read out by linear probes, each
also on static twins of the sets (`bias_readout`); activation maps scored against the objects'
true masks (`downstream.explain`). Every method gets the same recipe search (`bias_plan`): a
grid of config values, the best point by the validation split of the pretraining set. A
randomly initialised encoder (every seed) and a supervised ceiling (trained to convergence,
its curve kept) frame each variant's numbers.

Resumable: every finished run leaves `readouts/<run>.json` under --out (named by a digest of its
config and its set); a rerun with the same --out reads those instead of running them again.
The experiment knows methods only by name: it sets `method` and the grid's keys, nothing else.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass

import numpy as np
import ray
import torch

from fame_ray import checkpoints, runtime
from fame_ray.config import DataConfig, to_dict
from fame_ray.downstream.explain import figure
from fame_ray.downstream.features import Encoder
from fame_ray.experiments import bias_plan, bias_readout, bias_report, scene_bias
from fame_ray.experiments.bias_plan import Plan
from fame_ray.pretrain.driver import run_pretrain
from fame_ray.storage import Location

log = logging.getLogger(__name__)


@dataclass
class Variant:
    """One variant's sets and what every encoder is read out on."""

    name: str
    spec: scene_bias.SceneBiasSpec
    roots: dict
    data: DataConfig
    maps: bias_readout.MapClips
    resources: runtime.ResourcePlan
    manifests: Location
    decoded: bias_readout.ProbeClips | None = None

    def probes(self) -> bias_readout.ProbeClips:
        """The probe clips, decoded on first use (a rerun whose runs are all finished decodes none)."""
        if self.decoded is None:
            self.decoded = bias_readout.probe_clips(self.roots, self.data, self.manifests, self.resources)
        return self.decoded


class Experiment:
    """The runs of one --out folder: each read from its cache or run and cached."""

    def __init__(self, plan: Plan, target: Location, verbose: bool):
        self.plan, self.target, self.verbose = plan, target, verbose
        self.runs = target / "runs"

    def _cached(self, name: str) -> dict | None:
        cache = self.target / "readouts" / f"{name}.json"
        if not cache.exists():
            return None
        found = json.loads(cache.read_text())
        expected = {*bias_readout.PROBES, *bias_readout.STATIC, "validation"}
        current = expected <= set(found.get("readouts", {})) and found.get("share_clips") == self.plan.share_clips
        return found if current else None  # read out again (the pretraining stays)

    def _store(self, name: str, result: dict) -> dict:
        folder = self.target / "readouts"
        folder.make_dirs()
        temporary = folder / f".{name}.json.tmp"
        temporary.write_text(json.dumps(result, indent=1))
        os.replace(temporary.path, (folder / f"{name}.json").path)  # whole or absent: a rerun trusts it
        return result

    def prepare(self, name: str) -> Variant:
        """Write (or reuse) a variant's sets and decode its probe clips."""
        spec = scene_bias.variant_spec(self.plan.spec, name)
        roots = scene_bias.write_sets((self.target / "data" / name).uri, spec)
        cfg = bias_plan.pretrain_config(self.plan, roots["biased"], self.plan.methods[0], 0, {}, self.runs.uri)
        resources = runtime.plan_resources(runtime.cluster_cpus(), cfg.train, cfg.data)
        chosen = bias_readout.map_clips(roots["decorrelated"], cfg.data, spec, self.plan.share_clips)
        return Variant(name, spec, roots, cfg.data, chosen, resources, self.target / "manifests" / name)

    def pretrained(self, variant: Variant, method: str, seed: int, point: dict) -> dict:
        """One pretraining run and its read-outs."""
        cfg = bias_plan.pretrain_config(self.plan, variant.roots["biased"], method, seed, point, self.runs.uri)
        name = bias_plan.run_name(cfg, variant.name, variant.spec, point)
        cached = self._cached(name)
        if cached is not None:
            return cached
        cfg = dataclasses.replace(cfg, storage=dataclasses.replace(cfg.storage, run_name=name))
        run_dir = self.runs / name
        started = time.time()
        done = checkpoints.latest_complete(run_dir)
        if done is None or done.step < self.plan.steps:
            run_pretrain(cfg, self.verbose)
            done = checkpoints.latest_complete(run_dir)
        trained = time.time()
        result = self._read(Encoder("tiny", run_dir), variant)
        result.update(
            run=name,
            method=method,
            seed=seed,
            point=point,
            contrastive_acc1=(done.meta.get("metrics") or {}).get("acc1"),
            pretrain_s=round(trained - started, 1),
        )
        log.info("%s: %s", name, bias_report.one_line(result))
        return self._store(name, result)

    def _read(self, encoder: Encoder, variant: Variant) -> dict:
        started = time.time()
        found = bias_readout.readouts(encoder, variant.probes(), variant.resources)
        share, _ = bias_readout.in_mask(encoder, variant.maps)
        return {
            "readouts": found,
            "in_mask": share,
            "share_clips": self.plan.share_clips,
            "readout_s": round(time.time() - started, 1),
        }

    def random_init(self, variant: Variant, seed: int) -> dict:
        data = asdict(variant.data)
        name = f"{variant.name}-random-seed{seed}-{bias_plan.digest(data, asdict(variant.spec))}"
        cached = self._cached(name)
        if cached is not None:
            return cached
        result = self._read(Encoder("tiny", None, seed=seed), variant)
        result.update(run=name, method="random_init", seed=seed)
        log.info("%s: %s", name, bias_report.one_line(result))
        return self._store(name, result)

    def ceiling(self, variant: Variant) -> dict | None:
        if self.plan.ceiling_epochs <= 0 or variant.name not in self.plan.ceiling_variants:
            return None
        data = variant.data
        name = (
            f"{variant.name}-ceiling-{bias_plan.digest(asdict(data), asdict(variant.spec), self.plan.ceiling_epochs)}"
        )
        cache = self.target / "readouts" / f"{name}.json"
        if cache.exists():
            return json.loads(cache.read_text())
        folder = self.target / "ceiling" / name
        folder.make_dirs()
        found = bias_readout.ceiling(variant.roots["decorrelated"], data, self.plan.ceiling_epochs, folder)
        return self._store(name, {**found, "run": name})

    def search(self, variant: Variant) -> dict:
        """Every grid point of every method (seed 0) and the best by validation, per method."""
        scores, chosen = {}, {}
        for method in self.plan.methods:
            found = [self.pretrained(variant, method, 0, point) for point in self.plan.points()]
            scores[method] = [{"point": r["point"], "validation": r["readouts"]["validation"]} for r in found]
            chosen[method] = bias_plan.best_point(found)
        return {"scores": scores, "chosen": chosen}

    def draw_maps(self, variant: Variant, runs: dict[str, dict]) -> dict[str, str]:
        """One activation-map figure per method (its seed-0 run) and random init, on the same clips."""
        folder = self.target / "maps" / variant.name
        folder.make_dirs()
        count = self.plan.map_clips
        chosen = bias_readout.MapClips(variant.maps.clips[:count], variant.maps.masks[:count])
        written = {}
        for method, result in runs.items():
            encoder = Encoder("tiny", self.runs / result["run"] if method != "random_init" else None, seed=0)
            _, maps = bias_readout.in_mask(encoder, chosen)
            shares = bias_readout.explain.mask_share(maps, chosen.masks)
            title = f"{bias_report.label(method)} on {variant.name} (seed 0): activation share inside the object"
            figure(chosen.clips, maps, title, shares=shares).save((folder / f"{method}.png").path)
            written[method] = f"maps/{variant.name}/{method}.png"
        return written


def _variant(experiment: Experiment, name: str, search: dict) -> dict:
    """Everything one variant measures: the search (when tuned here), seeds, random init, ceiling, maps."""
    plan = experiment.plan
    variant = experiment.prepare(name)
    if name in plan.tuning_variants():
        search[name] = experiment.search(variant)
    recipes = (search.get(name) or search["base"])["chosen"]
    runs = {m: [experiment.pretrained(variant, m, s, recipes[m]) for s in plan.seeds] for m in plan.methods}
    runs["random_init"] = [experiment.random_init(variant, s) for s in plan.seeds]
    found = {
        "factor": scene_bias.VARIANT_FACTORS[name],
        "recipes": recipes,
        "results": {method: bias_report.summarise(results) for method, results in runs.items()},
        "ceiling": experiment.ceiling(variant),
        "mask_area": variant.maps.area,
        "maps": experiment.draw_maps(variant, {m: results[0] for m, results in runs.items()}),
        "runs": {method: [r["run"] for r in results] for method, results in runs.items()},
        "run_s": {
            method: round(sum(r.get("pretrain_s", 0) + r.get("readout_s", 0) for r in results), 1)
            for method, results in runs.items()
        },
    }
    del variant  # the probe clips leave the object store
    return found


def run(out: str, plan: Plan, verbose: bool = False) -> dict:
    """Write the sets, search, pretrain and read out every method on every variant, write results.*."""
    started = time.time()
    bias_plan.check(plan)
    target = Location.parse(os.path.abspath(out))  # checked and marked by the command (claim_folder)
    target.make_dirs()
    log.info(
        "background-bias, %s form: %d pretraining runs (%s on %s; %d seeds; %d grid points), %s",
        plan_form(plan),
        plan.pretraining_runs(),
        ", ".join(plan.methods),
        ", ".join(plan.variants),
        len(plan.seeds),
        len(plan.points()),
        f"a {plan.ceiling_epochs}-epoch ceiling on {', '.join(plan.ceiling_variants)}"
        if plan.ceiling_epochs
        else "no ceiling",
    )
    runtime.connect_ray(dashboard=True, verbose=verbose)
    experiment = Experiment(plan, target, verbose)
    search: dict = {}
    order = sorted(plan.variants, key=lambda name: name not in plan.tuning_variants())  # tuned sets first
    variants = {name: _variant(experiment, name, search) for name in order}
    example = bias_plan.pretrain_config(plan, "<set>/biased", plan.methods[0], 0, plan.points()[0], "<out>/runs")
    record = {
        "form": plan_form(plan),
        "variants": {name: variants[name] for name in plan.variants},
        "search": {
            "grid": [[key, list(values)] for key, values in plan.grid],
            "criterion": (
                "linear probe (class) fitted on the biased training set's features, accuracy on its held-out "
                "validation split (biased/test); seed 0; best point per method (a tie goes to the earlier grid point)"
            ),
            **search,
        },
        "chance": {
            **{name: 1 / plan.spec.classes for name in ("motion", "biased_to_decorrelated")},
            "scene": 1 / plan.spec.families,
        },
        "plan": {**asdict(plan), "steps_per_epoch": bias_plan.steps_per_epoch(plan)},
        "recipe": to_dict(example),
        "machine": _machine(),
        "wall_s": round(time.time() - started, 1),
    }
    bias_report.write(record, target)
    return record


def plan_form(plan: Plan) -> str:
    for name, make in bias_plan.FORMS.items():
        if plan == make():
            return name
    return "custom"


def _machine() -> dict:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "load_average_at_end": [round(v, 2) for v in load],
        "python": platform.python_version(),
        "ray": ray.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            return next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
    except OSError:
        return platform.processor()
