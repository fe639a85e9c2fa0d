"""What the background-bias experiment reads out of one encoder: linear probes on its frozen
features (Ray Data batch inference), the validation score that picks recipes, and where its
activation maps fall (`downstream.explain`, scored against the generator's object masks).

Read-outs (probe training part -> probe test part, label):
- motion: decorrelated/train -> decorrelated/test, class: what the features know of the motion;
- scene: the same videos, background family: what they know of the background;
- biased_to_decorrelated: biased/train -> decorrelated/test, class: whether a classifier built on
  them takes the scene shortcut;
- each again on static clips (`*_static`: every clip's frames replaced by one of them, repeated;
  the probe trained and tested on static clips): the part of a read-out that needs no motion; a
  motion read-out that stays up there is not reading motion;
- validation (recipe choice only): biased/train -> biased/test, class.
The clips of every part are decoded once per set and kept in Ray's object store
(`probe_clips`); each encoder is one pass of encoding tasks (features.encode_dataset) over them, as decoded and frozen
by `freeze` (the same frames without their motion).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from fame_ray.config import DataConfig, FinetuneConfig, build, presets
from fame_ray.data import catalog, manifest
from fame_ray.data.clips.pipeline import supervised_dataset
from fame_ray.downstream import explain
from fame_ray.downstream.features import Encoder, encode_dataset, video_features
from fame_ray.downstream.finetune import run_finetune
from fame_ray.eval.probe import linear_probe
from fame_ray.experiments import scene_bias
from fame_ray.models.backbones import build_backbone
from fame_ray.runtime import ResourcePlan
from fame_ray.storage import Location

PARTS = ("biased/train", "biased/test", "decorrelated/train", "decorrelated/test")
PROBES = {
    "motion": ("decorrelated/train", "decorrelated/test", "class"),
    "scene": ("decorrelated/train", "decorrelated/test", "family"),
    "biased_to_decorrelated": ("biased/train", "decorrelated/test", "class"),
}
READOUTS = tuple(PROBES)
STATIC = {f"{name}_static": probe for name, probe in PROBES.items()}
VALIDATION = ("biased/train", "biased/test", "class")


@dataclass
class ProbeClips:
    """The decoded clips of every part of one variant's sets, and their labels."""

    clips: object
    """A materialised Ray Dataset of test-time clips (pipeline.supervised_dataset rows)."""
    parts: dict[str, slice]
    """Rows (video_index range) of each part."""
    labels: dict[str, dict[str, np.ndarray]]
    """'class' and 'family' -> part -> labels."""
    videos: int


def probe_clips(roots: dict[str, str], data: DataConfig, out: Location, resources: ResourcePlan) -> ProbeClips:
    """One manifest of every part (so each encoder runs one pass), decoded once into the object store."""
    tables, parts, families, start = [], {}, {}, 0
    for part in PARTS:
        name, subset = part.split("/")
        part_data = dataclasses.replace(data, data_root=roots[name])
        table = manifest.read(catalog.ensure(part_data, part_data.location())[subset])
        tables.append(table)
        parts[part] = slice(start, start + table.num_rows)
        families[part] = scene_bias.families_of(roots[name], table["path"].to_pylist())
        start += table.num_rows
    location = out / "probe_videos.parquet"
    table = pa.concat_tables(tables)
    manifest.write(table, location)
    classes = table["label"].to_numpy()
    labels = {"class": {part: classes[rows] for part, rows in parts.items()}, "family": families}
    clips = supervised_dataset(location, data, train=False, data_cpus=resources.data_cpus).materialize()
    return ProbeClips(clips, parts, labels, table.num_rows)


def freeze(batch: dict, shift: int = 0) -> dict:
    """Ray Data batch -> the same clips with no motion: every frame replaced by one frame of the
    clip (drawn per video and clip, seeded: the same for every encoder), video_index + `shift`.
    'clip': uint8 B C T H W."""
    clips = np.asarray(batch["clip"])
    frames = [
        np.random.default_rng([int(video), int(clip)]).integers(clips.shape[2])
        for video, clip in zip(batch["video_index"], batch["clip_index"])
    ]
    still = np.stack([clip[:, t : t + 1] for clip, t in zip(clips, frames)])
    frozen = np.ascontiguousarray(np.broadcast_to(still, clips.shape))
    return {**batch, "clip": frozen, "video_index": np.asarray(batch["video_index"]) + shift}


def features(encoder: Encoder, probes: ProbeClips, resources: ResourcePlan) -> tuple[np.ndarray, np.ndarray]:
    """Clip-averaged features of every video, `V D` in manifest order: of its clips, and of its
    frozen clips (one pass over both: the frozen ones numbered from V)."""
    frozen = probes.clips.map_batches(freeze, fn_kwargs={"shift": probes.videos}, batch_format="numpy", batch_size=64)
    both = probes.clips.union(frozen)
    encoded = encode_dataset(both, encoder, batch_size=64, workers=1, worker_cpus=resources.cpus_per_worker)
    ids, found, _ = video_features(encoded.iter_batches(batch_size=256, batch_format="numpy"))
    if len(ids) != 2 * probes.videos:
        raise RuntimeError(f"{2 * probes.videos - len(ids)} probe clips are missing: see the log")
    return found[: probes.videos], found[probes.videos :]


def _probe(found: np.ndarray, probes: ProbeClips, train: str, test: str, kind: str) -> float:
    """A linear probe fitted on part `train`'s features and labels `kind`, accuracy on part `test`."""
    labels = probes.labels[kind]
    rows = probes.parts
    return linear_probe(found[rows[train]], labels[train], found[rows[test]], labels[test])


def readouts(encoder: Encoder, probes: ProbeClips, resources: ResourcePlan) -> dict[str, float]:
    """Every read-out of one encoder (and the validation score), in [0, 1]."""
    found, still = features(encoder, probes, resources)
    out = {name: _probe(found, probes, *probe) for name, probe in PROBES.items()}
    out.update({name: _probe(still, probes, *probe) for name, probe in STATIC.items()})
    out["validation"] = _probe(found, probes, *VALIDATION)
    return out


@dataclass
class MapClips:
    """The test clips every encoder's activation map is scored on, and their object masks."""

    clips: list
    """explain.Clip, the first `map_clips` of them drawn."""
    masks: np.ndarray
    """bool B T S S: the class object in each clip frame, with the clips' crop."""

    @property
    def area(self) -> float:
        """The masks' share of the frame: what a map blind to the object scores on average."""
        return float(self.masks.mean())


def map_clips(root: str, data: DataConfig, spec: scene_bias.SceneBiasSpec, count: int) -> MapClips:
    """`count` centre clips of the decorrelated test videos (one per class first, seed 0)."""
    table = manifest.read(catalog.ensure(dataclasses.replace(data, data_root=root), Location.parse(root))["test"])
    clips = explain.pick_clips(table, data, count, 0, Location.parse(root))
    whole = scene_bias.masks_of(root, [clip.path for clip in clips], spec)
    frames = np.stack([mask[clip.frames] for mask, clip in zip(whole, clips)])
    return MapClips(clips, explain.crop_masks(frames, data))


def in_mask(encoder: Encoder, chosen: MapClips) -> tuple[float, np.ndarray]:
    """(mean share of activation inside the object's mask over the clips, the maps B T S S)."""
    maps = explain.activation_maps(encoder.build(), np.stack([clip.clip for clip in chosen.clips]))
    return float(np.nanmean(explain.mask_share(maps, chosen.masks))), maps


def ceiling(root: str, data: DataConfig, epochs: int, out: Location) -> dict:
    """Supervised training of a randomly initialised tiny backbone on the decorrelated set through
    `fame-ray finetune`'s sweep (one trial, cosine lr, the official finetuning augmentation):
    {"top1": last epoch's test video top-1 in [0, 1], "curve": per epoch train loss, train clip
    top-1 and test video top-1}. What this backbone can learn of the motions when taught them."""
    weights = out / "random_init_tiny.pth"
    torch.manual_seed(0)
    state = {f"module.encoder_q.{key}": value for key, value in build_backbone("tiny").state_dict().items()}
    torch.save({"state_dict": state}, weights.uri)
    geometry = {key: getattr(data, key) for key in ("frames_per_clip", "temporal_stride", "crop_size", "eval_clips")}
    cfg = build(
        FinetuneConfig,
        presets.demo_finetune(),
        {
            "data": {"dataset": "folder", "data_root": root, "crop_scale": list(data.crop_scale), **geometry},
            "model": {"arch": "tiny"},
            "train": {"epochs": epochs, "global_batch": 32, "num_workers": 1},
            "optim": {"lr": 0.05, "base_batch": 0, "schedule": "cosine"},
            "dropout": 0.3,
            # One trial: nothing is chosen, so no validation split is held out of the training videos;
            # every epoch tests the test split (the curve).
            "val_fraction": 0.0,
            "pretrained": weights.uri,
            "storage": {"path": out.uri, "run_name": "ceiling"},
        },
    )
    record = run_finetune(cfg, "tiny")
    top1 = record["metrics"].get("video_top1")
    return {"top1": None if top1 is None else top1 / 100.0, "epochs": epochs, "curve": _curve(out / "ceiling")}


def _curve(run_dir: Location) -> list[dict]:
    """Per-epoch metrics of the sweep's one trial (Ray Tune's result.json lines)."""
    rows = []
    for path in sorted(Path(run_dir.path).glob("*/result.json")):
        for line in path.read_text().splitlines():
            found = json.loads(line)
            if "val_video_top1" in found:
                rows.append(
                    {
                        "epoch": int(found["epoch"]) + 1,
                        "train_loss": round(float(found["train_loss"]), 4),
                        "train_clip_top1": round(float(found["train_clip_top1"]), 4),
                        "test_video_top1": round(float(found["val_video_top1"]), 4),
                    }
                )
    return sorted(rows, key=lambda row: row["epoch"])
