"""Clip features through Ray Data, and the retrieval run built on them.

Batch inference the Ray Data way: the test-time clip pipeline (N uniformly spaced clips
per video, centre crop; `pipeline.supervised_dataset(train=False)`) streams into encoding
tasks whose worker processes each load the backbone once and map batches of uint8 clips to
features on their CPU or GPU. The driver only sums features per video as they stream
back, so memory holds one vector per video, not per clip.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from dataclasses import dataclass

import numpy as np
import ray
import torch
import torch.nn.functional as F
from torch import nn

from fame_ray import runtime
from fame_ray.components.augment import IMAGENET_MEAN, IMAGENET_STD, KINETICS_MEAN, KINETICS_STD, to_input
from fame_ray.config import DataConfig, FinetuneConfig, PretrainConfig
from fame_ray.data import catalog
from fame_ray.data.clips.pipeline import supervised_dataset
from fame_ray.downstream import preflight
from fame_ray.eval import report as results
from fame_ray.eval.probe import linear_probe
from fame_ray.eval.retrieval import centre_and_normalise, recall_at_k
from fame_ray.models.backbones import build_backbone
from fame_ray.runtime import ResourcePlan
from fame_ray.storage import Location

log = logging.getLogger(__name__)
RETRIEVAL_FEATURES = {
    "official": (
        "each clip L2-normalised, averaged per video; queries and gallery each centred on their own mean, then "
        "L2-normalised; ImageNet input statistics"
    ),
    "gallery": (
        "raw clip features averaged per video; both sets centred on the gallery mean, then L2-normalised; Kinetics "
        "input statistics"
    ),
}


@dataclass(frozen=True)
class Encoder:
    """Which backbone turns clips into features, and how its input and output are treated."""

    arch: str
    weights: Location | None = None
    """Pretrained weights; None = a randomly initialised backbone (seeded: the probes' baseline)."""
    seed: int = 0
    use_gpu: bool = False
    amp: bool = True
    mean: tuple = KINETICS_MEAN
    std: tuple = KINETICS_STD
    normalise_clips: bool = False
    """L2-normalise each clip's feature before videos average them (official retrieval)."""

    def build(self) -> nn.Module:
        if self.weights is None:
            torch.manual_seed(self.seed)
            return build_backbone(self.arch)
        return preflight.load_backbone(self.weights, self.arch)[0]


@functools.lru_cache(maxsize=2)
def _backbone(encoder: Encoder) -> tuple[nn.Module, torch.device]:
    """The encoder's backbone on its device, built once per Ray worker process."""
    device = torch.device("cuda" if encoder.use_gpu and torch.cuda.is_available() else "cpu")
    return encoder.build().to(device).eval(), device


def encode_batch(batch: dict, encoder: Encoder) -> dict:
    """Ray Data task: {'clip' uint8 B C T H W, 'label', 'video_index'} -> {'feature' B D, ...}."""
    backbone, device = _backbone(encoder)
    use_bf16 = device.type == "cuda" and encoder.amp
    with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
        clips = to_input(torch.as_tensor(np.asarray(batch["clip"])), device, encoder.mean, encoder.std)
        features = backbone(clips).float()
    if encoder.normalise_clips:
        features = F.normalize(features, dim=1)
    return {
        "feature": features.cpu().numpy(),
        "label": np.asarray(batch["label"]),
        "video_index": np.asarray(batch["video_index"]),
    }


def encode_dataset(dataset, encoder: Encoder, batch_size: int, workers: int, worker_cpus: float = 1.0):
    """Ray Data: map the clip dataset through `workers` encoding tasks at once. Tasks, not an
    actor pool: each worker process keeps the backbone it built (`_backbone`), and Ray Data's
    actor pools hand their actors an object reference, which Ray's core reports as an error line
    on every pool (ray-project/ray#57733)."""
    return dataset.map_batches(
        encode_batch,
        fn_kwargs={"encoder": encoder},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.TaskPoolStrategy(size=workers),
        num_cpus=worker_cpus,
        num_gpus=1 if encoder.use_gpu else 0,
    )


def video_features(batches) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stream of feature batches -> (video_ids `V`, mean clip feature `V D`, labels `V`)."""
    sums, counts, labels = {}, {}, {}
    for batch in batches:
        for feature, label, video in zip(batch["feature"], batch["label"], batch["video_index"]):
            video = int(video)
            sums[video] = sums.get(video, 0.0) + np.asarray(feature, dtype=np.float64)
            counts[video] = counts.get(video, 0) + 1
            labels[video] = int(label)
    ids = np.array(sorted(sums), dtype=np.int64)
    if not len(ids):
        return ids, np.zeros((0, 0)), np.zeros(0, np.int64)
    features = np.stack([sums[v] / counts[v] for v in ids])
    return ids, features, np.array([labels[v] for v in ids], dtype=np.int64)


def encode_videos(
    manifest_location: Location,
    data: DataConfig,
    encoder: Encoder,
    resources: ResourcePlan,
    actors: int,
    batch_size: int,
):
    """(video_ids, features `V D`, labels) of every video of a manifest: data.eval_clips clips
    per video with the test crop, encoded by `actors` tasks at once, averaged per video."""
    clips = supervised_dataset(manifest_location, data, train=False, data_cpus=resources.data_cpus)
    dataset = encode_dataset(clips, encoder, batch_size, actors, resources.cpus_per_worker)
    return video_features(dataset.iter_batches(batch_size=256, batch_format="numpy"))


def run_retrieval(cfg: FinetuneConfig, explicit_arch: str | None = None, budget: dict | None = None) -> dict:
    """Test videos query training videos: R@1/5/10/20/50; writes results.json/.md. `budget`
    ({"CPU": n}): the share of the cluster it may plan for (a study running stages at once),
    else the whole cluster."""
    started = time.time()
    cfg.storage.root().check_writable_root()
    cfg, info = preflight.prepare(cfg, explicit_arch)
    owns_ray = runtime.connect_ray()
    official = cfg.retrieval == "official"
    encoder = Encoder(
        cfg.model.arch,
        cfg.pretrained_location(),
        use_gpu=cfg.train.use_gpu,
        amp=cfg.train.amp,
        normalise_clips=official,
        mean=IMAGENET_MEAN if official else KINETICS_MEAN,
        std=IMAGENET_STD if official else KINETICS_STD,
    )
    try:
        # The encoder actors take the training workers' share; decode tasks keep the rest.
        plan = runtime.plan_resources(budget["CPU"] if budget else runtime.cluster_cpus(), cfg.train, cfg.data)
        batch, _ = cfg.train.split_batch(cfg.train.num_workers)
        encoded = {}
        for subset in ("train", "test"):
            encoded[subset] = encode_videos(
                info["manifests"][subset], cfg.data, encoder, plan, cfg.train.num_workers, batch
            )
            log.info("%s: %d videos encoded", subset, len(encoded[subset][0]))
    finally:
        if owns_ray:
            ray.shutdown()
    gallery, queries = centre_and_normalise(encoded["train"][1], encoded["test"][1], cfg.retrieval)
    metrics = recall_at_k(queries, encoded["test"][2], gallery, encoded["train"][2])
    metrics.update(queries=len(encoded["test"][0]), gallery=len(encoded["train"][0]))
    run = cfg.storage.run_name or f"retrieval-{cfg.data.dataset}-split{cfg.data.split}-{cfg.model.arch}"
    setting = {
        "dataset": cfg.data.dataset,
        "split": cfg.data.split,
        "mode": "retrieval",
        "backbone": cfg.model.arch,
        "pretrained": cfg.pretrained,
    }
    protocol = {
        "clips_per_video": cfg.data.eval_clips,
        "crop_size": cfg.data.crop_size,
        "frames_per_clip": cfg.data.frames_per_clip,
        "temporal_stride": cfg.data.temporal_stride,
        "queries": "test videos",
        "gallery": "training videos",
        "features": RETRIEVAL_FEATURES[cfg.retrieval],
        "test_crop": cfg.data.test_crop,
        "hit": "any of the top k shares the query's class",
        "query_videos": len(encoded["test"][0]),
        "gallery_videos": len(encoded["train"][0]),
    }
    record = results.new_record(
        "retrieval",
        run,
        setting,
        info["recipe"],
        results.percent(metrics),
        protocol=protocol,
        checkpoint_dir=info["checkpoint_dir"],
        load_report=info["load_report"],
        wall_s=round(time.time() - started, 1),
    )
    run_dir = cfg.storage.root() / run
    results.write(record, run_dir)
    record["run_dir"] = run_dir.uri
    return record


def probe_readout(cfg: PretrainConfig, weights: Location) -> dict:
    """Linear-probe accuracy of the encoder in `weights` on the pretraining dataset's labels
    (probe fitted on the train split's features, tested on the test split's), next to the
    same probe on a randomly initialised encoder and chance."""
    source = cfg.data_location()
    manifests = catalog.locate(cfg.data, source)  # pretraining prepared them
    resources = runtime.plan_resources(runtime.cluster_cpus(), dataclasses.replace(cfg.train, num_workers=1), cfg.data)
    out = {"chance": 1 / len(catalog.class_names(cfg.data, source))}
    # One centre clip per video: the read-out is a quick look at the features, not the
    # protocol's multi-clip test, and it decodes every video twice (learned and random).
    data = dataclasses.replace(cfg.data, eval_clips=1)
    for name, encoder in (
        ("learned", Encoder(cfg.model.arch, weights)),
        ("random_init", Encoder(cfg.model.arch, None, seed=cfg.train.seed)),
    ):
        (_, train, train_labels), (_, test, test_labels) = (
            encode_videos(manifests[s], data, encoder, resources, 1, 32) for s in ("train", "test")
        )
        out[name] = linear_probe(train, train_labels, test, test_labels)
    return out
