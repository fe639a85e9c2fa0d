"""Random resized crop + flip (same for every frame) and centre crop on uint8 clips."""

from __future__ import annotations

import numpy as np
import pytest

from fame_ray.data.clips import transforms
from fame_ray.errors import UserError


def test_crop_boxes_respect_frame_scale_and_aspect_ratio():
    rng = np.random.default_rng(0)
    for _ in range(300):
        top, left, height, width = transforms.random_resized_crop_box(120, 160, (0.2, 1.0), rng)
        assert top >= 0 and top + height <= 120 and left >= 0 and left + width <= 160
        assert 0.2 * 0.9 <= height * width / (120 * 160) <= 1.0
        assert 3 / 4 * 0.9 <= width / height <= 4 / 3 * 1.1


def test_crop_boxes_are_reproducible_from_the_generator():
    boxes = [transforms.random_resized_crop_box(120, 160, (0.2, 1.0), np.random.default_rng(7)) for _ in range(2)]
    assert boxes[0] == boxes[1]


def test_same_crop_for_every_frame():
    frame = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    clip = np.repeat(frame[None], 6, axis=0)
    out = transforms.random_resized_crop(clip, 64, (0.2, 1.0), np.random.default_rng(2))
    assert out.shape == (6, 64, 64, 3) and out.dtype == np.uint8
    assert all(np.array_equal(out[0], out[t]) for t in range(6))


def test_flip_mirrors_the_frame():
    frame = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    clip = frame[None]
    kept = transforms.random_resized_crop(clip, 64, (1.0, 1.0), np.random.default_rng(0), flip_probability=0.0)
    flipped = transforms.random_resized_crop(clip, 64, (1.0, 1.0), np.random.default_rng(0), flip_probability=1.0)
    assert np.array_equal(kept[0], frame) and np.array_equal(flipped[0], frame[:, ::-1])


def test_flip_probability_is_about_half():
    clip = np.zeros((1, 32, 32, 3), np.uint8)
    clip[:, :, :16] = 255  # left half white
    rng = np.random.default_rng(4)
    flips = sum(transforms.random_resized_crop(clip, 32, (1.0, 1.0), rng)[0, 16, 0, 0] == 0 for _ in range(400))
    assert 150 < flips < 250


def test_resize_center_crop_resizes_short_side_then_crops_the_centre():
    clip = np.zeros((2, 120, 160, 3), np.uint8)
    clip[:, 50:70, 70:90] = 255  # a centred square
    out = transforms.eval_crop(clip, 60, "resize")
    assert out.shape == (2, 60, 60, 3)
    assert out[:, 30, 30].min() == 255 and out[:, 2, 2].max() == 0


def test_official_center_crop_takes_the_middle_of_the_frame_as_stored():
    """torchvision's CenterCropVideo, which the official test uses: no resize."""
    clip = np.arange(2 * 128 * 170 * 3, dtype=np.int64).reshape(2, 128, 170, 3).astype(np.uint8)
    out = transforms.eval_crop(clip, 112, "center")
    assert np.array_equal(out, clip[:, 8:120, 29:141])


def test_crop_larger_than_frame_is_a_user_error():
    with pytest.raises(UserError, match="data.crop_size"):
        transforms.check_crop_fits(128, 120, 160)
    transforms.check_crop_fits(120, 120, 160)


def test_the_resize_is_bilinear_without_antialiasing_as_the_official():
    """The official RandomResizedCropVideo resizes float clips with torchvision's
    `_functional_video.resize`: F.interpolate(bilinear, align_corners=False), no antialiasing.
    fame-ray's uint8 resize lands within one grey level of it; antialiasing is the option."""
    import torch
    import torch.nn.functional as F

    from fame_ray.config import DataConfig

    clip = np.random.default_rng(0).integers(0, 256, (4, 240, 320, 3), dtype=np.uint8)
    region = clip[:, 10:190, 20:260]
    official = F.interpolate(
        torch.from_numpy(np.ascontiguousarray(region)).permute(0, 3, 1, 2).float() / 255,
        size=(112, 112),
        mode="bilinear",
        align_corners=False,
    )
    ours = torch.from_numpy(transforms.resize(region, 112, 112)).permute(0, 3, 1, 2).float() / 255
    assert (ours - official).abs().max() <= 1.01 / 255
    smoothed = torch.from_numpy(transforms.resize(region, 112, 112, antialias=True)).permute(0, 3, 1, 2).float() / 255
    assert (smoothed - official).abs().max() > 10 / 255  # a different kernel, not a rounding
    assert DataConfig().resize_antialias is False
