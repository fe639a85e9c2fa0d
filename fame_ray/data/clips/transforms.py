"""Spatial crops on uint8 clips T H W C, the same parameters for every frame of a clip.

Training: random resized crop (area share from `data.crop_scale`, aspect ratio 3/4 to 4/3,
as torchvision's RandomResizedCrop) of the frame as stored, resized to crop_size, then a
horizontal flip with probability 0.5. Evaluation: a centre crop_size square of the frame as
stored (official), or the short side resized to crop_size first ('resize').

Resizing is bilinear without antialiasing by default, as the official code's
RandomResizedCropVideo (torchvision's `_functional_video.resize`: `F.interpolate(...,
mode="bilinear", align_corners=False)` on float clips); `antialias=True` is fame-ray's option
(`data.resize_antialias`). It runs on the crop only, directly on uint8 (torch's uint8 path):
the pixels land within one grey level (1/255) of the official float resize, a rounding the
uint8 rows that Ray Data ships make anyway, at a fraction of its time (README "Resize").
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from fame_ray.errors import UserError

# torchvision RandomResizedCrop defaults.
ASPECT_RATIO = (3 / 4, 4 / 3)
ATTEMPTS = 10


def check_crop_fits(crop_size: int, height: int, width: int, where: str = "") -> None:
    """Raise UserError when the crop is larger than the frame's short side."""
    if crop_size > min(height, width):
        place = f" ({where})" if where else ""
        raise UserError(
            (
                f"data.crop_size {crop_size} is larger than the videos' short side {min(height, width)} "
                f"({width}x{height}){place}"
            ),
            f"use --set data.crop_size={min(height, width)} or smaller",
        )


def random_resized_crop_box(
    height: int,
    width: int,
    scale: tuple[float, float],
    rng: np.random.Generator,
    ratio: tuple[float, float] = ASPECT_RATIO,
) -> tuple[int, int, int, int]:
    """(top, left, crop height, crop width) as torchvision's RandomResizedCrop.get_params."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(ATTEMPTS):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        crop_width = int(round(math.sqrt(target * aspect)))
        crop_height = int(round(math.sqrt(target / aspect)))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            top = int(rng.integers(0, height - crop_height + 1))
            left = int(rng.integers(0, width - crop_width + 1))
            return top, left, crop_height, crop_width
    # Fallback: the central crop of the clamped aspect ratio (torchvision's rule).
    aspect = width / height
    if aspect < ratio[0]:
        crop_width, crop_height = width, int(round(width / ratio[0]))
    elif aspect > ratio[1]:
        crop_height, crop_width = height, int(round(height * ratio[1]))
    else:
        crop_width, crop_height = width, height
    return (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width


def resize(clip: np.ndarray, height: int, width: int, antialias: bool = False) -> np.ndarray:
    """uint8 T H W C -> uint8 T height width C, bilinear (official: no antialiasing).

    torch resizes uint8 channels-last frames directly (a T H W C array seen as T C H W
    is exactly that layout), several times faster than through float.
    """
    if clip.shape[1:3] == (height, width):
        return np.ascontiguousarray(clip)
    if any(stride < 0 for stride in clip.strides):
        clip = np.ascontiguousarray(clip)
    # A crop of a larger frame is a strided view; torch reads it without a copy.
    frames = torch.from_numpy(clip).permute(0, 3, 1, 2)
    resized = F.interpolate(frames, size=(height, width), mode="bilinear", antialias=antialias, align_corners=False)
    return resized.permute(0, 2, 3, 1).contiguous().numpy()


def random_resized_crop(
    clip: np.ndarray,
    crop_size: int,
    scale: tuple[float, float],
    rng: np.random.Generator,
    flip_probability: float = 0.5,
    antialias: bool = False,
) -> np.ndarray:
    """uint8 T H W C -> T crop_size crop_size C: one random box and one flip decision for all frames."""
    top, left, crop_height, crop_width = random_resized_crop_box(clip.shape[1], clip.shape[2], scale, rng)
    region = clip[:, top : top + crop_height, left : left + crop_width]
    resized = resize(region, crop_size, crop_size, antialias)
    if rng.random() < flip_probability:
        # Flipping after the resize gives the same pixels (the filter is symmetric) and
        # copies the small crop instead of the large region.
        resized = np.ascontiguousarray(resized[:, :, ::-1])
    return resized


def center_crop(clip: np.ndarray, crop_size: int) -> np.ndarray:
    """uint8 T H W C -> T crop_size crop_size C: the middle of the frame as stored, no resize
    (the official test crop, torchvision's CenterCropVideo)."""
    height, width = clip.shape[1:3]
    top, left = (height - crop_size) // 2, (width - crop_size) // 2
    return np.ascontiguousarray(clip[:, top : top + crop_size, left : left + crop_size])


def resize_center_crop(clip: np.ndarray, crop_size: int, antialias: bool = False) -> np.ndarray:
    """uint8 T H W C -> T crop_size crop_size C: short side resized to crop_size, centre crop."""
    height, width = clip.shape[1:3]
    short = min(height, width)
    new_height = crop_size if height == short else int(round(height * crop_size / short))
    new_width = crop_size if width == short else int(round(width * crop_size / short))
    return center_crop(resize(clip, new_height, new_width, antialias), crop_size)


def eval_crop(clip: np.ndarray, crop_size: int, mode: str = "center", antialias: bool = False) -> np.ndarray:
    """The test-time crop: 'center' (official, no resize) or 'resize' (short side to crop first)."""
    return center_crop(clip, crop_size) if mode == "center" else resize_center_crop(clip, crop_size, antialias)
