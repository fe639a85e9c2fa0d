"""`fame-ray bench train`: the training step's throughput through Ray Train vs plain PyTorch.

Three measurements in one run, written as JSON:
- `plain`: the MoCo + FAME step (augment on device, symmetric loss, SGD) in a plain PyTorch
  loop over pre-made uint8 batches, one process;
- `ray_train`: the same step, model and batches through Ray Train (one worker, a
  materialised Ray Dataset of the same clips, the worker loop of fame-ray pretrain with
  metrics, reports and checkpoints as configured): overhead % = 1 - ray/plain clips/s;
- `pipeline` (optional): the worker loop fed by the real data pipeline (decode + crops +
  FAME on CPUs): data-wait share of the step time.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
import tempfile
import time

import numpy as np
import ray
import torch

from fame_ray import checkpoints, runtime
from fame_ray.config import PretrainConfig, build, presets
from fame_ray.data import manifest, ready
from fame_ray.pretrain.driver import fit
from fame_ray.pretrain.plan import make_plan
from fame_ray.pretrain.step import accumulate, build_model, build_training, step_generators, train_step, views
from fame_ray.runtime import ResourcePlan
from fame_ray.storage import Location

logger = logging.getLogger(__name__)


def random_clips(cfg: PretrainConfig, count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """uint8 clips shaped like the pipeline's rows: view_q, view_k (N,C,T,H,W), mask (N,H,W, half
    ones), label (N,), and for DCLR static_q, static_k (N,C,H,W)."""
    rng = np.random.default_rng(seed)
    crop = cfg.data.crop_size
    shape = (count, 3, cfg.data.frames_per_clip, crop, crop)
    rows = {
        "view_q": rng.integers(0, 256, shape, dtype=np.uint8),
        "view_k": rng.integers(0, 256, shape, dtype=np.uint8),
        "mask": (rng.random((count, crop, crop)) < 0.5).astype(np.uint8),
        "label": np.arange(count) % 4,
    }
    if cfg.method == "dclr":
        rows.update(
            {name: rng.integers(0, 256, (count, 3, crop, crop), dtype=np.uint8) for name in ("static_q", "static_k")}
        )
    return rows


def random_clip_dataset(cfg: PretrainConfig, count: int, seed: int = 0):
    """A materialised Ray Dataset of random clips (the step's cost without video decoding)."""
    clips = random_clips(cfg, count, seed)
    rows = [{key: value[index] for key, value in clips.items()} for index in range(count)]
    return ray.data.from_items(rows).materialize()


def plain_loop(cfg: PretrainConfig, clips: dict, steps: int, warmup: int) -> dict:
    """clips/s of `steps` training steps in a plain PyTorch loop (after `warmup` steps)."""
    torch.manual_seed(cfg.train.seed)
    device = torch.device("cuda" if cfg.train.use_gpu and torch.cuda.is_available() else "cpu")
    moco, optimizer = build_training(cfg, device)
    batch_size = cfg.train.global_batch
    count = len(clips["label"]) // batch_size
    start = 0.0
    for index in range(warmup + steps):
        if index == warmup:
            _sync(device)
            start = time.perf_counter()
        rows = slice((index % count) * batch_size, (index % count + 1) * batch_size)
        batch = {key: torch.from_numpy(value[rows]) for key, value in clips.items()}
        train_step(moco, optimizer, batch, cfg.optim.lr, step_generators(cfg.train.seed, index, 0, device), cfg, device)
    _sync(device)
    elapsed = time.perf_counter() - start
    return {"steps": steps, "seconds": elapsed, "clips_per_s": steps * batch_size / elapsed}


# Dense bf16 tensor-core peaks (TFLOP/s, without sparsity) from the vendors' data sheets; MFU is
# reported only for a GPU listed here.
PEAK_BF16_TFLOPS = {"H100 SXM": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H200": 989.4, "A100": 312.0}


def step_flops_per_clip(cfg: PretrainConfig) -> float:
    """Model FLOPs of one training step per clip, counted by torch's FlopCounterMode on a real
    step of the configured method (not guessed): the key side (momentum encoder passes) and the
    query side's forwards and backward, over two clips' augmented inputs; the augmentation
    itself is not counted. MoCo's symmetric step takes two passes, DCLR three views per clip."""
    from torch.utils.flop_counter import FlopCounterMode

    small = dataclasses.replace(
        cfg,
        train=dataclasses.replace(cfg.train, global_batch=2, num_workers=1, min_workers=0),
        moco=dataclasses.replace(cfg.moco, queue_size=16),
        dclr=dataclasses.replace(cfg.dclr, queue_size=16, topk=min(cfg.dclr.topk, 16)),
    )
    cpu = torch.device("cpu")
    model = build_model(small)
    batch = {key: torch.from_numpy(value) for key, value in random_clips(small, 2).items()}
    inputs = views(batch, small, step_generators(0, 0, 0, cpu), cpu)
    with FlopCounterMode(display=False) as counter:
        accumulate(model, inputs, torch.Generator().manual_seed(0), 0)
    return counter.get_total_flops() / 2


def gpu_name() -> str | None:
    """The name of the GPU the bench runs on (None on CPU)."""
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def utilisation(flops_per_clip: float, clips_per_s: float, gpu: str | None) -> dict:
    """Achieved TFLOP/s, and MFU against the bf16 dense peak of `gpu` (when it is a known one;
    no MFU on CPU, `gpu` None)."""
    achieved = flops_per_clip * clips_per_s / 1e12
    out = {"flops_per_clip": flops_per_clip, "achieved_tflops": achieved}
    if gpu is not None:
        name = gpu
        peak = next(
            (value for key, value in PEAK_BF16_TFLOPS.items() if all(part in name for part in key.split())), None
        )
        out.update(gpu=name, peak_bf16_tflops=peak, mfu=achieved / peak if peak else None)
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine() -> dict:
    info = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    info["ray"] = ray.__version__
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def bench_config(gpu: bool, overrides: list[str]) -> PretrainConfig:
    """CPU: the demo's tiny model, one worker. GPU: R(2+1)D-18 at 16x112x112, bf16, one GPU."""
    cfg = presets.demo_pretrain()
    train = dataclasses.replace(
        cfg.train, num_workers=1, epochs=1000, log_every=5, checkpoint_every=10_000, max_failures=0, micro_batch=0
    )
    updates = {}
    if gpu:
        updates = {
            "data": {"frames_per_clip": 16, "crop_size": 112},
            "model": {"arch": "r2plus1d_18"},
            "moco": {"queue_size": 2048},
            "train": {"use_gpu": True, "global_batch": 32, "amp": True, "channels_last": True},
        }
    return build(PretrainConfig, dataclasses.replace(cfg, train=train), updates, overrides=overrides)


def _worker_figures(run: Location, warmup: int, batch: int) -> dict:
    """clips/s and data-wait share of the steps after `warmup`, from the run's metrics.jsonl."""
    records = [r for r in checkpoints.read_records(run) if r["step"] > warmup]
    seconds = sum(r["step_time_s"] for r in records)
    return {
        "steps": len(records),
        "seconds": seconds,
        "clips_per_s": len(records) * batch / max(seconds, 1e-9),
        "data_wait_share": float(np.mean([r["data_wait"] for r in records])),
        # Where a step's time goes in the worker: waiting for data, the step itself, and the
        # rest (metrics records, progress line, Ray Train reports and checkpoints).
        "bookkeeping_share": float(np.mean([r.get("bookkeeping", 0.0) for r in records])),
        "compute_s_per_step": float(np.mean([r.get("compute_s", 0.0) for r in records])),
    }


def ray_train_run(
    cfg: PretrainConfig,
    premade,
    num_videos: int,
    steps: int,
    warmup: int,
    name: str,
    resources: ResourcePlan,
    manifest_location: Location | None = None,
) -> dict:
    """The pretraining worker loop through Ray Train for warmup + steps steps; figures after warmup."""
    cfg.train.max_steps = warmup + steps
    cfg.storage.path = tempfile.mkdtemp(prefix="fame-ray-bench-")
    cfg.storage.run_name = name
    where = manifest_location or Location.parse(cfg.storage.path)  # a premade dataset reads no manifest
    plan = make_plan(cfg, {"train": where, "test": where}, num_videos, resources, checkpoints.git_sha())
    fit(cfg, plan, premade)
    return _worker_figures(plan.run, warmup, cfg.train.global_batch)


# The motion-aware methods whose step costs the bench puts side by side.
COMPARED_METHODS = ("fame", "dclr")


def method_costs(cfg: PretrainConfig, steps: int, warmup: int) -> dict:
    """Per method of COMPARED_METHODS, on the bench's backbone and clips: counted model FLOPs per
    clip and step, and the plain loop's clips/s (the same steps, one after the other)."""
    out = {}
    for method in COMPARED_METHODS:
        variant = dataclasses.replace(cfg, method=method)
        if method == "dclr":  # a queue of the bench's size and no warm-up: every step learns
            variant.dclr = dataclasses.replace(cfg.dclr, queue_size=cfg.moco.queue_size, warmup_steps=0)
        clips = random_clips(variant, cfg.train.global_batch * 4)
        out[method] = {"flops_per_clip": step_flops_per_clip(variant), **plain_loop(variant, clips, steps, warmup)}
    return out


def run(overrides: list[str] = (), gpu: bool = False, steps: int = 30, warmup: int = 5, pipeline: bool = True) -> dict:
    """Plain PyTorch vs Ray Train on the same batches, then the real pipeline's data-wait share."""
    cfg = bench_config(gpu, list(overrides))
    runtime.connect_ray()
    threads = max(1, int(runtime.cluster_cpus()) - 1)
    cfg.train.cpus_per_worker = float(threads)
    torch.set_num_threads(threads)  # the same CPU budget as the Ray Train worker
    count = cfg.train.global_batch * 16  # long passes: a new pass of the split costs a dataset restart
    clips = random_clips(cfg, count)
    resources = runtime.plan_resources(runtime.cluster_cpus(), cfg.train, cfg.data)
    dataset = random_clip_dataset(cfg, count)
    # Plain, Ray Train, plain again: the plain figure is the mean of both, so a load that
    # changes during the run weighs on both sides alike.
    before = plain_loop(cfg, clips, steps, warmup)
    through_ray = ray_train_run(cfg, dataset, count, steps, warmup, "bench-ray-train", resources)
    after = plain_loop(cfg, clips, steps, warmup)
    rate = (before["clips_per_s"] + after["clips_per_s"]) / 2
    plain = {
        "steps": steps,
        "clips_per_s": rate,
        "before": before,
        "after": after,
        "seconds_per_step": cfg.train.global_batch / rate,
    }
    # Where Ray Train's extra time per step goes, in seconds: the step itself computing slower,
    # waiting for the next batch, and the bookkeeping around it (records, reports, checkpoints).
    ray_step = cfg.train.global_batch / through_ray["clips_per_s"]
    through_ray["extra_s_per_step"] = {
        "total": ray_step - plain["seconds_per_step"],
        "compute": through_ray["compute_s_per_step"] - plain["seconds_per_step"],
        "data_wait": through_ray["data_wait_share"] * ray_step,
        "bookkeeping": through_ray["bookkeeping_share"] * ray_step,
    }
    result = {
        "config": {
            "arch": cfg.model.arch,
            "frames": cfg.data.frames_per_clip,
            "crop": cfg.data.crop_size,
            "global_batch": cfg.train.global_batch,
            "device": "cuda" if gpu else "cpu",
            "threads": threads,
        },
        "plain": plain,
        "ray_train": through_ray,
        "ray_train_overhead": 1.0 - through_ray["clips_per_s"] / plain["clips_per_s"],
        "utilisation": utilisation(step_flops_per_clip(cfg), plain["clips_per_s"], gpu_name()),
        "machine": machine(),
    }
    result["methods"] = method_costs(cfg, steps, warmup)
    if pipeline:
        result["pipeline"] = pipeline_run(cfg, steps, warmup)
    logger.info(
        "bench train: plain %.1f clips/s, Ray Train %.1f clips/s (overhead %.1f%%)",
        plain["clips_per_s"],
        through_ray["clips_per_s"],
        100 * result["ray_train_overhead"],
    )
    return result


def pipeline_run(cfg: PretrainConfig, steps: int, warmup: int) -> dict:
    """The worker loop fed by the real data pipeline (decode, crops, FAME) over the dataset in cfg."""
    train_manifest = ready.manifests(cfg.data, cfg.data_location())["train"]
    num_videos = manifest.read(train_manifest).num_rows
    cfg.train.cpus_per_worker = 0.0
    resources = runtime.plan_resources(runtime.cluster_cpus(), cfg.train, cfg.data)
    cfg.train.cpus_per_worker = resources.cpus_per_worker
    figures = ray_train_run(cfg, None, num_videos, steps, warmup, "bench-pipeline", resources, train_manifest)
    return {
        **figures,
        "videos": num_videos,
        "cpus_per_worker": resources.cpus_per_worker,
        "data_cpus": resources.data_cpus,
    }
