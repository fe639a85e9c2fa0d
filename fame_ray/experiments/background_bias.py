"""The background-bias experiment: does a pretraining method learn the motion, or the scene?

    fame-ray experiment background-bias --out bias-experiment          # the full form, <= 45 min on 2 CPUs
    fame-ray experiment background-bias --out /tmp/bias --quick        # the test suite's form, minutes

Everything runs through the product: synthetic sets written as `folder` datasets
(`data.scene_bias`), pretraining with `fame-ray pretrain`'s own driver (Ray Data + Ray Train), one
run per method and seed, then frozen features of every video (Ray Data batch inference,
`downstream.features`) and linear probes (`eval.probe`):

- motion: trained and tested on the decorrelated set (background random): what the features
  know about the motion;
- scene: the background family, on the same videos: what they know about the background;
- biased_to_decorrelated: trained on the biased set (class mostly tied to a background family),
  tested on the decorrelated one: whether a classifier built on them takes the shortcut.
The same read-outs of a randomly initialised encoder, and a supervised finetune of the same
backbone on the decorrelated set (`fame-ray finetune`'s own sweep), frame the numbers: chance
below, the supervised ceiling above. Methods get the identical budget (steps, batch, lr, seed).
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
import logging
import os
import platform
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import ray
import torch

from fame_ray import runtime
from fame_ray.config import DataConfig, FinetuneConfig, PretrainConfig, build, presets, to_dict
from fame_ray.data import catalog, manifest
from fame_ray.downstream.features import Encoder, encode_videos
from fame_ray.downstream.finetune import run_finetune
from fame_ray.eval.chart import grouped_bars
from fame_ray.eval.probe import linear_probe
from fame_ray.eval.report import markdown_table
from fame_ray.experiments import scene_bias
from fame_ray.models.backbones import build_backbone
from fame_ray.pretrain.driver import run_pretrain
from fame_ray.storage import Location

log = logging.getLogger(__name__)
READOUTS = ("motion", "scene", "biased_to_decorrelated")
# (probe training set, probe test set, label) of each read-out.
PROBES = {
    "motion": ("decorrelated/train", "decorrelated/test", "motion"),
    "scene": ("decorrelated/train", "decorrelated/test", "family"),
    "biased_to_decorrelated": ("biased/train", "decorrelated/test", "motion"),
}
PARTS = ("biased/train", "decorrelated/train", "decorrelated/test")


@dataclass(frozen=True)
class Plan:
    """What the experiment runs: the sets, the methods and seeds, and each run's recipe."""

    spec: scene_bias.SceneBiasSpec = field(default_factory=scene_bias.SceneBiasSpec)
    methods: tuple[str, ...] = ("fame", "moco", "be")
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 200
    ceiling_epochs: int = 12
    eval_clips: int = 4


def quick_plan() -> Plan:
    """Minutes on 2 CPUs: half the videos, fewer steps, one seed, FAME against MoCo."""
    spec = scene_bias.SceneBiasSpec(train_per_class=40, probe_per_class=20, biased_test_per_class=2)
    return Plan(spec=spec, methods=("fame", "moco"), seeds=(0,), steps=100, ceiling_epochs=0, eval_clips=2)


def pretrain_config(plan: Plan, root: str, method: str, seed: int, runs: str) -> PretrainConfig:
    """The recipe every method gets, on the biased set. The tiny backbone at 8x48x48; a short run,
    so the key encoder follows faster than the official m = 0.999 (tuned for 200 epochs of
    Kinetics: over 200 steps 0.999 leaves the keys almost at their random initialisation) and
    the queue holds 256 keys (the official 2048 is a fifth of UCF101; this set has 640 videos)."""
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
        "optim": {"lr": 0.1, "base_batch": 32, "warmup_epochs": 0},
        "train": {
            "epochs": 1000,
            "max_steps": plan.steps,
            "global_batch": 32,
            "num_workers": 1,
            "cpus_per_worker": 1.0,
            "seed": seed,
            "checkpoint_every": plan.steps,
            "log_every": 25,
            "keep_checkpoints": 1,
        },
        "storage": {"path": runs, "run_name": f"{method}-seed{seed}"},
    }
    return build(PretrainConfig, presets.demo_pretrain(), values)


def _all_videos(
    roots: dict[str, str], data: DataConfig, out: Location
) -> tuple[Location, dict[str, slice], dict[str, np.ndarray]]:
    """One manifest of every video the probes read (so each encoder runs one pass), the rows of
    each part, and each part's family labels."""
    tables, parts, families, start = [], {}, {}, 0
    for part in PARTS:
        name, subset = part.split("/")
        part_data = dataclasses.replace(data, data_root=roots[name])
        table = manifest.read(catalog.ensure(part_data, part_data.location())[subset])
        tables.append(table)
        parts[part] = slice(start, start + table.num_rows)
        families[part] = scene_bias.families_of(roots[name], table["path"].to_pylist())
        start += table.num_rows
    location = out / "manifests" / "probe_videos.parquet"
    manifest.write(pa.concat_tables(tables), location)
    return location, parts, families


def readouts(encoder: Encoder, videos: tuple, cfg: PretrainConfig) -> dict[str, float]:
    """The three read-outs of one encoder (linear probes on its frozen, clip-averaged features)."""
    location, parts, families = videos
    resources = runtime.plan_resources(runtime.cluster_cpus(), cfg.train, cfg.data)
    _, features, labels = encode_videos(location, cfg.data, encoder, resources, actors=1, batch_size=64)
    label_sets = {"motion": {part: labels[rows] for part, rows in parts.items()}, "family": families}
    out = {}
    for readout, (train, test, kind) in PROBES.items():
        out[readout] = linear_probe(
            features[parts[train]], label_sets[kind][train], features[parts[test]], label_sets[kind][test]
        )
    return out


def ceiling(plan: Plan, roots: dict[str, str], out: Location) -> float | None:
    """Supervised finetune of a randomly initialised tiny backbone on the decorrelated set
    (train -> test video top-1): how well this backbone can tell the motions apart at all."""
    if plan.ceiling_epochs <= 0:
        return None
    weights = out / "random_init_tiny.pth"
    torch.manual_seed(0)
    state = {f"module.encoder_q.{key}": value for key, value in build_backbone("tiny").state_dict().items()}
    torch.save({"state_dict": state}, weights.uri)
    cfg = build(
        FinetuneConfig,
        presets.demo_finetune(),
        {
            "data": {
                "dataset": "folder",
                "data_root": roots["decorrelated"],
                "frames_per_clip": 8,
                "crop_size": 48,
                "crop_scale": [0.6, 1.0],
                "eval_clips": plan.eval_clips,
            },
            "model": {"arch": "tiny"},
            "train": {"epochs": plan.ceiling_epochs, "global_batch": 32, "num_workers": 1},
            "optim": {"lr": 0.05, "milestones": [plan.ceiling_epochs * 2 // 3]},
            "dropout": 0.3,
            "pretrained": weights.uri,
            "storage": {"path": (out / "runs").uri, "run_name": "ceiling-supervised"},
        },
    )
    record = run_finetune(cfg, "tiny")
    top1 = record["metrics"].get("video_top1")
    return None if top1 is None else top1 / 100.0


def _summary(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": [float(v) for v in values]}


def run(out: str, plan: Plan, verbose: bool = False) -> dict:
    """Write the sets, pretrain every method with every seed, read out, write results.*."""
    started = time.time()
    target = Location.parse(out)
    runtime.connect_ray(dashboard=True, verbose=verbose)
    roots = scene_bias.write_sets((target / "data").uri, plan.spec)
    base = pretrain_config(plan, roots["biased"], plan.methods[0], plan.seeds[0], (target / "runs").uri)
    videos = _all_videos(roots, base.data, target)
    scores: dict[str, dict[str, list[float]]] = {}
    for seed in plan.seeds:
        for method in plan.methods:
            cfg = pretrain_config(plan, roots["biased"], method, seed, (target / "runs").uri)
            result = run_pretrain(cfg, verbose)
            found = readouts(Encoder("tiny", cfg.storage.root() / cfg.run_name()), videos, cfg)
            log.info(
                "%s, seed %d: %s (contrastive acc@1 %.3f)",
                method,
                seed,
                " | ".join(f"{k} {v:.3f}" for k, v in found.items()),
                result.metrics.get("acc1", float("nan")),
            )
            for readout, value in found.items():
                scores.setdefault(method, {}).setdefault(readout, []).append(value)
    random_init = readouts(Encoder("tiny", None, seed=0), videos, base)
    record = {
        "methods": {
            method: {readout: _summary(values) for readout, values in found.items()} for method, found in scores.items()
        },
        "random_init": random_init,
        "ceiling": ceiling(plan, roots, target),
        "chance": {
            "motion": 1 / plan.spec.classes,
            "scene": 1 / plan.spec.families,
            "biased_to_decorrelated": 1 / plan.spec.classes,
        },
        "plan": {**dataclasses.asdict(plan), "pretrain_recipe": to_dict(base)},
        "machine": _machine(),
        "wall_s": round(time.time() - started, 1),
    }
    _write(record, target)
    return record


def _machine() -> dict:
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "ray": ray.__version__,
        "torch": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def markdown(record: dict) -> str:
    """results.md: mean +- std over the seeds, per method and read-out."""

    def cell(summary):
        return f"{100 * summary['mean']:.1f} ± {100 * summary['std']:.1f}"

    rows = [[method, *[cell(found[r]) for r in READOUTS]] for method, found in record["methods"].items()]
    rows.append(["random init (no pretraining)", *[f"{100 * record['random_init'][r]:.1f}" for r in READOUTS]])
    rows.append(["chance", *[f"{100 * record['chance'][r]:.1f}" for r in READOUTS]])
    seeds = len(record["plan"]["seeds"])
    lines = [
        "# Background bias: motion or scene?",
        "",
        f"Linear-probe accuracy (%), mean ± std over {seeds} seed(s).",
        "",
        markdown_table(["pretraining", *READOUTS], rows),
        "",
    ]
    if record.get("ceiling") is not None:
        lines += [
            (
                "Supervised ceiling (the same backbone finetuned on the decorrelated set, video top-1): "
                f"{100 * record['ceiling']:.1f}%"
            ),
            "",
        ]
    lines += [f"Wall time {record['wall_s'] / 60:.1f} min on {record['machine']['cpu_count']} CPUs.", ""]
    return "\n".join(lines)


def _write(record: dict, target: Location) -> None:
    (target / "results.json").write_text(json.dumps(record, indent=2))
    (target / "results.md").write_text(markdown(record))
    groups = {
        readout: {
            method: (found[readout]["mean"], found[readout]["std"]) for method, found in record["methods"].items()
        }
        for readout in READOUTS
    }
    for readout in READOUTS:
        groups[readout]["random init"] = (record["random_init"][readout], 0.0)
    references = {"ceiling": record["ceiling"]} if record.get("ceiling") is not None else {}
    chart = grouped_bars(groups, "Linear probes on frozen features (mean ± std over seeds)", references)
    png = io.BytesIO()
    chart.save(png, format="PNG")
    (target / "results.png").write_bytes(png.getvalue())
