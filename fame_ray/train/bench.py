"""`fame-ray bench train`: the training step's throughput through Ray Train vs plain PyTorch.

Three measurements in one run, written as JSON:
- `plain`: the MoCo + FAME step (augment on device, symmetric loss, SGD) in a plain PyTorch
  loop over pre-made uint8 batches, one process;
- `ray_train`: the same step, model and batches through Ray Train (one worker, a
  materialised Ray Dataset of the same clips, the worker loop of fame-ray pretrain with
  metrics, reports and checkpoints as configured): overhead % = 1 - ray/plain clips/s;
- `pipeline` (optional): the worker loop fed by the real Ray Data pipeline (decode + crops +
  FAME on CPUs): data-wait share of the step time.
"""

from __future__ import annotations

import logging
import os
import platform
import tempfile
import time

import numpy as np
import torch

from fame_ray import config as config_lib
from fame_ray.config import PretrainConfig

logger = logging.getLogger(__name__)


def random_clips(cfg: PretrainConfig, count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """uint8 clips shaped like the pipeline's rows: view_q, view_k (N,C,T,H,W), label (N,)."""
    rng = np.random.default_rng(seed)
    shape = (count, 3, cfg.data.frames_per_clip, cfg.data.crop_size, cfg.data.crop_size)
    return {"view_q": rng.integers(0, 256, shape, dtype=np.uint8), "view_k": rng.integers(0, 256, shape, dtype=np.uint8), "label": np.arange(count) % 4}


def random_clip_dataset(cfg: PretrainConfig, count: int, seed: int = 0):
    """A materialised Ray Dataset of random clips (the step's cost without video decoding)."""
    import ray

    clips = random_clips(cfg, count, seed)
    rows = [{key: value[index] for key, value in clips.items()} for index in range(count)]
    return ray.data.from_items(rows).materialize()


def plain_loop(cfg: PretrainConfig, clips: dict, steps: int, warmup: int) -> dict:
    """clips/s of `steps` training steps in a plain PyTorch loop (after `warmup` steps)."""
    from fame_ray.train.step import build_moco, new_generators, train_step

    torch.manual_seed(cfg.train.seed)
    device = torch.device("cuda" if cfg.train.use_gpu and torch.cuda.is_available() else "cpu")
    generators = new_generators(cfg.train.seed, 0, device)
    moco, optimizer = build_moco(cfg, device, generators)
    batch_size = cfg.train.global_batch
    count = len(clips["label"]) // batch_size
    start = 0.0
    for index in range(warmup + steps):
        if index == warmup:
            _sync(device)
            start = time.perf_counter()
        rows = slice((index % count) * batch_size, (index % count + 1) * batch_size)
        batch = {key: torch.from_numpy(value[rows]) for key, value in clips.items()}
        train_step(moco, optimizer, batch, cfg.optim.lr, generators, cfg, device)
    _sync(device)
    elapsed = time.perf_counter() - start
    return {"steps": steps, "seconds": elapsed, "clips_per_s": steps * batch_size / elapsed}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine() -> dict:
    info = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__}
    import ray

    info["ray"] = ray.__version__
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
