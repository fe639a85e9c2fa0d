"""Clip features through Ray Data, and the retrieval run built on them.

Batch inference the Ray Data way: the test-time clip pipeline (N uniformly spaced clips
per video, centre crop; `pipeline.supervised_dataset(train=False)`) streams into a pool
of `ClipEncoder` actors that each load the backbone once and map batches of uint8 clips
to features on their CPU or GPU. The driver only sums features per video as they stream
back, so memory holds one vector per video, not per clip.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import ray
import torch

from fame_ray import runtime
from fame_ray.config import FinetuneConfig
from fame_ray.data.pipeline import supervised_dataset
from fame_ray.downstream import preflight
from fame_ray.pretrain.augment import to_input
from fame_ray.eval import report as results
from fame_ray.eval.retrieval import centre_and_normalise, recall_at_k
from fame_ray.storage import Location

log = logging.getLogger(__name__)


class ClipEncoder:
    """Ray Data actor: backbone loaded once; batch {'clip' uint8 B C T H W, ...} -> features `B D`."""

    def __init__(self, weights: Location, arch: str, use_gpu: bool = False):
        self.device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        backbone, _ = preflight.load_backbone(weights, arch)
        self.backbone = backbone.to(self.device).eval()

    def __call__(self, batch: dict) -> dict:
        with torch.no_grad():
            clips = to_input(torch.as_tensor(np.asarray(batch["clip"])), self.device)
            features = self.backbone(clips).float().cpu().numpy()
        return {"feature": features, "label": np.asarray(batch["label"]), "video_index": np.asarray(batch["video_index"])}


def encode_dataset(dataset, weights: Location, arch: str, batch_size: int, actors: int, use_gpu: bool, actor_cpus: float = 1.0):
    """Ray Data: map the clip dataset through a pool of `actors` ClipEncoders."""
    return dataset.map_batches(
        ClipEncoder,
        fn_constructor_kwargs={"weights": weights, "arch": arch, "use_gpu": use_gpu},
        batch_size=batch_size,
        batch_format="numpy",
        concurrency=actors,
        num_cpus=actor_cpus,
        num_gpus=1 if use_gpu else 0,
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


def run_retrieval(cfg: FinetuneConfig, explicit_arch: str | None = None) -> dict:
    """Test videos query training videos: R@1/5/10/20/50; writes results.json/.md."""
    started = time.time()
    cfg.storage.root().check_writable_root()
    cfg, info = preflight.prepare(cfg, explicit_arch)
    owns_ray = runtime.connect_ray(worker_logs=False)
    try:
        # The encoder actors take the training workers' share; decode tasks keep the rest.
        plan = runtime.plan_resources(runtime.cluster_cpus(), cfg.train, cfg.data)
        batch, _ = cfg.train.split_batch(cfg.train.num_workers)
        encoded = {}
        for subset in ("train", "test"):
            clips = supervised_dataset(info["manifests"][subset], cfg.data, train=False, data_cpus=plan.data_cpus)
            dataset = encode_dataset(clips, cfg.pretrained_location(), cfg.model.arch, batch, cfg.train.num_workers, cfg.train.use_gpu, plan.cpus_per_worker)
            encoded[subset] = video_features(dataset.iter_batches(batch_size=256, batch_format="numpy"))
            log.info("%s: %d videos encoded", subset, len(encoded[subset][0]))
    finally:
        if owns_ray:
            ray.shutdown()
    gallery, queries = centre_and_normalise(encoded["train"][1], encoded["test"][1])
    metrics = recall_at_k(queries, encoded["test"][2], gallery, encoded["train"][2])
    metrics.update(queries=len(encoded["test"][0]), gallery=len(encoded["train"][0]))
    run = cfg.storage.run_name or f"retrieval-{cfg.data.dataset}-split{cfg.data.split}-{cfg.model.arch}"
    setting = {"dataset": cfg.data.dataset, "split": cfg.data.split, "mode": "retrieval", "backbone": cfg.model.arch, "pretrained": cfg.pretrained}
    protocol = {"clips_per_video": cfg.data.eval_clips, "crop_size": cfg.data.crop_size, "frames_per_clip": cfg.data.frames_per_clip,
                "temporal_stride": cfg.data.temporal_stride, "queries": "test videos", "gallery": "training videos",
                "features": "mean over clips, centred on the gallery mean, L2-normalised", "hit": "any of the top k shares the query's class",
                "query_videos": len(encoded["test"][0]), "gallery_videos": len(encoded["train"][0])}
    record = results.new_record("retrieval", run, setting, info["recipe"], results.percent(metrics), protocol=protocol,
                                checkpoint_dir=info["checkpoint_dir"], load_report=info["load_report"], wall_s=round(time.time() - started, 1))
    run_dir = cfg.storage.root() / run
    results.write(record, run_dir)
    record["run_dir"] = run_dir.uri
    return record
