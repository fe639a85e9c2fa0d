"""Learning-rate schedules, precomputed as arrays indexed by global step (pure functions).

The peak lr is `optim.lr * global_batch / optim.base_batch` (linear scaling; official:
0.01 at batch 64). Schedules, as the official `utils/train_utils.py::adjust_learning_rate`:
- cosine: lr * 0.5 * (1 + cos(pi * epoch / epochs)), set once per epoch (as the official
  code does, it does not change inside an epoch);
- step: lr * 0.1 ** (number of milestones <= epoch).
An optional linear warmup (`optim.warmup_epochs`, not in the official recipe) ramps the
first steps from peak / warmup_steps up to the scheduled value.
"""

from __future__ import annotations

import math

import numpy as np

from fame_ray.config import OptimConfig


def peak_lr(optim: OptimConfig, global_batch: int) -> float:
    """The lr the schedule starts from, scaled linearly by the global batch (unless base_batch is 0)."""
    return optim.lr * global_batch / optim.base_batch if optim.base_batch else optim.lr


def epoch_factors(optim: OptimConfig, epochs: int) -> np.ndarray:
    """Multiplier of the peak lr for each epoch (length `epochs`)."""
    epoch = np.arange(epochs, dtype=np.float64)
    if optim.schedule == "cosine":
        return 0.5 * (1.0 + np.cos(math.pi * epoch / epochs))
    drops = np.array([np.sum(np.asarray(optim.milestones) <= e) for e in epoch], dtype=np.float64)
    return 0.1**drops


def lr_schedule(optim: OptimConfig, peak: float, steps_per_epoch: int, epochs: int) -> np.ndarray:
    """lr for every global step 0 .. epochs * steps_per_epoch - 1 (float64 array), from `peak`
    (`peak_lr` of the effective global batch)."""
    if steps_per_epoch <= 0 or epochs <= 0:
        raise ValueError(f"steps_per_epoch and epochs must be positive, got {steps_per_epoch}, {epochs}")
    lrs = peak * np.repeat(epoch_factors(optim, epochs), steps_per_epoch)
    warmup = min(int(round(optim.warmup_epochs * steps_per_epoch)), lrs.size)
    if warmup > 0:
        lrs[:warmup] *= np.arange(1, warmup + 1, dtype=np.float64) / warmup
    return lrs


def lr_at(schedule: np.ndarray, step: int) -> float:
    """schedule[step], holding the last value past the end (e.g. max_steps beyond the epochs)."""
    return float(schedule[min(max(step, 0), schedule.size - 1)])
