"""lr schedules: scaling, cosine, steps, warmup, clamping."""

import math

import numpy as np
import pytest

from fame_ray.components.schedule import lr_at, lr_schedule, peak_lr
from fame_ray.config import OptimConfig


def test_linear_scaling_by_global_batch():
    assert peak_lr(OptimConfig(lr=0.01, base_batch=64), 256) == pytest.approx(0.04)


def test_cosine_is_the_official_per_epoch_formula():
    optim = OptimConfig(lr=0.01, base_batch=64)
    lrs = lr_schedule(optim, peak_lr(optim, 64), steps_per_epoch=3, epochs=10)
    assert lrs.shape == (30,)
    for epoch in range(10):
        expected = 0.01 * 0.5 * (1 + math.cos(math.pi * epoch / 10))
        assert np.allclose(lrs[epoch * 3 : (epoch + 1) * 3], expected)
    assert np.all(np.diff(lrs) <= 1e-12)


def test_step_schedule_divides_by_ten_at_milestones():
    optim = OptimConfig(lr=0.1, base_batch=32, schedule="step", milestones=(2, 4))
    lrs = lr_schedule(optim, peak_lr(optim, 32), steps_per_epoch=2, epochs=6)
    assert np.allclose(lrs, [0.1] * 4 + [0.01] * 4 + [0.001] * 4)


def test_warmup_ramps_linearly_to_the_schedule():
    optim = OptimConfig(lr=0.1, base_batch=64, schedule="step", milestones=(100,), warmup_epochs=1)
    lrs = lr_schedule(optim, peak_lr(optim, 64), steps_per_epoch=4, epochs=3)
    assert np.allclose(lrs[:4], [0.025, 0.05, 0.075, 0.1])
    assert np.allclose(lrs[4:], 0.1)


def test_lr_at_holds_the_last_value_and_rejects_empty():
    lrs = lr_schedule(OptimConfig(), 0.01, steps_per_epoch=2, epochs=2)
    assert lr_at(lrs, 0) == lrs[0] and lr_at(lrs, 10_000) == lrs[-1]
    with pytest.raises(ValueError):
        lr_schedule(OptimConfig(), 0.01, steps_per_epoch=0, epochs=2)
