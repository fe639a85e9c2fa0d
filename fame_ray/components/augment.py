"""On-device augmentation of uint8 clip batches, drawn per clip, the same on every frame, and
Background Erasing's frame mixing (FAME's merge is in fame_ray.data.clips.fame).

The official FAME code (`moco/loader.py`, `Augment_GPU_pre`) runs kornia's VideoSequential with
`same_on_frame=True`: RandomGrayscale(p=0.2), ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8),
RandomGaussianBlur(kernel, sigma, p=0.5), Normalize(Kinetics mean/std); finetuning
(`Augment_GPU_ft`) runs the same without the blur. Here the same chain, vectorised over the batch:

- grayscale first, then colour jitter, as the official order.
- Colour jitter with the definitions of kornia's ColorJitter of the official code's time (kept in
  today's kornia as `ColorJiggle`, which tests/unit/test_augment.py compares against): brightness
  is additive (x + b - 1), contrast multiplies the raw values (x * c), saturation scales the HSV
  saturation (clamped to [0, 1]), hue shifts the HSV hue by h turns; factors uniform in
  [1-0.4, 1+0.4] and hue in [-0.1, 0.1] per clip; ONE random order of the four operations per
  batch; input and output clamped to [0, 1]. Measured faster than kornia's own module on the
  same batches (`benchmarks/colour_jitter.py`).
- Gaussian blur: odd kernel k = int(0.1 * S) // 2 * 2 + 1 for crop side S (official), sigma
  uniform in [0.1, 2.0] drawn PER CLIP. The official code draws sigma once per run
  (`random.uniform(0.1, 2)` when the augmentation is built), so every blurred clip of a run
  shares one sigma: a bug, fixed here. Reflect padding (kornia's default).
- normalisation with the Kinetics-400 mean and std (KINETICS_MEAN / KINETICS_STD below).

All random numbers come from an explicit torch.Generator (on the CPU or on the clips' device);
the heavy work runs on the clips' device in float32, autocast disabled, so the result is the
same under bf16 autocast. On CUDA, every per-clip choice is a `torch.where` over the whole batch
(no host-device synchronisation); on the CPU only the chosen clips are computed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fame_ray.data.clips.fame import kernel_size

# Kinetics-400 statistics: the input normalisation of the official pretraining and finetuning.
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
# ImageNet statistics: the input normalisation of the official retrieval (main_retrieve.py).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ITU-R 601 luma weights, as kornia's and torchvision's rgb_to_grayscale.
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class AugmentParams:
    """Probabilities and ranges of the augmentation (defaults: the official pretraining)."""

    grayscale_p: float = 0.2
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel: int = 0
    """Odd kernel side; 0 = int(0.1 * crop side) // 2 * 2 + 1 (official)."""


PRETRAIN = AugmentParams()
# Official finetuning (`Augment_GPU_ft`): grayscale and jitter, no blur.
FINETUNE = AugmentParams(blur_p=0.0)
# Evaluation: normalisation only.
NONE = AugmentParams(grayscale_p=0.0, jitter_p=0.0, blur_p=0.0)


@functools.lru_cache(maxsize=16)
def _constant(values: tuple, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A small constant tensor, made once per device (no host-to-device copy per call)."""
    return torch.tensor(values, device=device, dtype=dtype)


def _uniform(generator: torch.Generator, size: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(size, generator=generator, device=generator.device)


def _per_clip(values: torch.Tensor) -> torch.Tensor:
    """A per-clip vector (B,) shaped to broadcast over B,C,T,H,W."""
    return values.view(-1, 1, 1, 1, 1)


def _apply(clips: torch.Tensor, chosen: torch.Tensor, transform, select_all: bool | None = None) -> torch.Tensor:
    """clips with `transform(subset, index)` applied to the clips where `chosen` (B,) is true.

    On CUDA (`select_all`) the transform runs on every clip and `torch.where` keeps the chosen
    ones: no host sync. On the CPU only the chosen clips are computed (no sync to avoid there).
    """
    chosen = chosen.to(clips.device)
    if clips.is_cuda if select_all is None else select_all:
        return torch.where(_per_clip(chosen), transform(clips, slice(None)), clips)
    index = torch.nonzero(chosen).flatten()
    if index.numel():
        clips = clips.clone()
        clips[index] = transform(clips[index], index)
    return clips


def grey(clips: torch.Tensor) -> torch.Tensor:
    """B,3,T,H,W -> B,1,T,H,W luma."""
    return (clips * _constant(_LUMA, clips.device, clips.dtype).view(1, 3, 1, 1, 1)).sum(dim=1, keepdim=True)


def adjust_brightness(clips: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """kornia's additive brightness: x + (factor - 1), clamped; factor per clip (B,)."""
    return (clips + _per_clip(factor - 1)).clamp_(0, 1)


def adjust_contrast(clips: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """kornia's multiplicative contrast: x * factor, clamped."""
    return (clips * _per_clip(factor)).clamp_(0, 1)


def adjust_saturation(clips: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale the HSV saturation by `factor` (result clamped to [0, 1]), hue and value kept.

    With value v = max(r, g, b) and saturation s = (v - min) / v fixed hue, every channel is
    v - (v - c) * s'/s, the distance from the maximum scaled like the saturation.
    """
    top = clips.max(dim=1, keepdim=True).values
    bottom = clips.min(dim=1, keepdim=True).values
    saturation = (top - bottom) / top.clamp_min(1e-12)
    scaled = (saturation * _per_clip(factor)).clamp(0, 1)
    ratio = torch.where(saturation > 0, scaled / saturation.clamp_min(1e-12), torch.ones_like(saturation))
    return (top - (top - clips) * ratio).clamp_(0, 1)


def adjust_hue(clips: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate hue by `shift` (B,, in turns); grey pixels (no saturation) stay exactly grey."""
    red, green, blue = clips.unbind(dim=1)
    top, _ = clips.max(dim=1)
    bottom, _ = clips.min(dim=1)
    chroma = top - bottom
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    hue_r = ((green - blue) / safe) % 6
    hue_g = (blue - red) / safe + 2
    hue_b = (red - green) / safe + 4
    hue = torch.where(top == red, hue_r, torch.where(top == green, hue_g, hue_b)) / 6
    hue = (hue + shift.view(-1, 1, 1, 1)) % 1.0
    # HSV -> RGB with the continuous formula f(n) = v - c * clamp(min(k, 4 - k), 0, 1).
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = (n + hue * 6) % 6
        channels.append(top - chroma * torch.clamp(torch.minimum(k, 4 - k), 0, 1))
    return torch.stack(channels, dim=1)


# The four operations in kornia's index order: brightness, contrast, saturation, hue.
JITTER_OPERATIONS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def jitter(clips: torch.Tensor, factors: torch.Tensor, order: list[int]) -> torch.Tensor:
    """Colour jitter with given per-clip factors (B x 4: brightness, contrast, saturation, hue)
    in the given order of operations; input and output clamped to [0, 1], as kornia's."""
    clips = clips.clamp(0, 1)
    for index in order:
        clips = JITTER_OPERATIONS[index](clips, factors[:, index])
    return clips.clamp_(0, 1)


def _jitter(
    clips: torch.Tensor, params: AugmentParams, generator: torch.Generator, order_generator: torch.Generator
) -> torch.Tensor:
    """Colour jitter with probability jitter_p per clip, one order of operations for the batch."""
    batch = clips.shape[0]
    chosen = torch.rand(batch, generator=generator, device=generator.device) < params.jitter_p
    factors = torch.stack(
        [
            _uniform(generator, batch, max(0.0, 1 - params.brightness), 1 + params.brightness),
            _uniform(generator, batch, max(0.0, 1 - params.contrast), 1 + params.contrast),
            _uniform(generator, batch, max(0.0, 1 - params.saturation), 1 + params.saturation),
            _uniform(generator, batch, -params.hue, params.hue),
        ],
        dim=1,
    ).to(clips.device)
    # The order steers Python control flow (which step runs first), so it is drawn on the CPU:
    # a CPU draw costs no device sync.
    order = torch.randperm(4, generator=order_generator).tolist()
    return _apply(clips, chosen, lambda subset, index: jitter(subset, factors[index], order))


def gaussian_blur(clips: torch.Tensor, sigma: torch.Tensor, kernel: int) -> torch.Tensor:
    """Separable Gaussian blur of each clip B,C,T,H,W with its own sigma (B,), reflect padding."""
    batch, channels, frames, height, width = clips.shape
    radius = kernel // 2
    if radius == 0 or radius >= min(height, width):
        return clips
    offsets = torch.arange(kernel, device=clips.device, dtype=clips.dtype) - radius
    weights = torch.exp(-(offsets[None] ** 2) / (2 * sigma[:, None].to(clips.dtype) ** 2))
    weights = weights / weights.sum(dim=1, keepdim=True)
    planes = channels * frames
    weights = weights.repeat_interleave(planes, dim=0)
    images = clips.reshape(1, batch * planes, height, width)
    images = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    images = F.conv2d(images, weights.view(-1, 1, kernel, 1), groups=batch * planes)
    images = F.conv2d(images, weights.view(-1, 1, 1, kernel), groups=batch * planes)
    return images.reshape(batch, channels, frames, height, width)


def _blur(clips: torch.Tensor, params: AugmentParams, generator: torch.Generator) -> torch.Tensor:
    batch = clips.shape[0]
    chosen = torch.rand(batch, generator=generator, device=generator.device) < params.blur_p
    sigma = _uniform(generator, batch, *params.blur_sigma).to(clips.device)
    # The official augmentation blurs with the kernel side of FAME's mask: about 10% of the crop, odd.
    kernel = params.blur_kernel or kernel_size(min(clips.shape[-2:]))
    return _apply(clips, chosen, lambda subset, index: gaussian_blur(subset, sigma[index], kernel))


def normalize(clips: torch.Tensor, mean=KINETICS_MEAN, std=KINETICS_STD) -> torch.Tensor:
    """(x - mean) / std per channel of B,3,T,H,W float clips in [0,1]."""
    mean = _constant(tuple(mean), clips.device, clips.dtype).view(1, -1, 1, 1, 1)
    std = _constant(tuple(std), clips.device, clips.dtype).view(1, -1, 1, 1, 1)
    return (clips - mean) / std


def to_float(clips: torch.Tensor) -> torch.Tensor:
    """uint8 B,C,T,H,W -> float32 in [0,1] (float input is taken as already in [0,1])."""
    if clips.dtype == torch.uint8:
        return clips.float().div_(255.0)
    return clips.float()


def to_input(clips: torch.Tensor, device: torch.device, mean=KINETICS_MEAN, std=KINETICS_STD) -> torch.Tensor:
    """uint8 B C T H W (any device) -> normalised float on `device`, no augmentation."""
    return normalize(to_float(clips.to(device, non_blocking=True)), mean, std)


def colour(
    clips: torch.Tensor,
    generator: torch.Generator,
    params: AugmentParams = PRETRAIN,
    order_generator: torch.Generator | None = None,
) -> torch.Tensor:
    """float B,3,T,H,W in [0,1] -> grayscale, jitter and blur drawn per clip (not normalised).

    `order_generator` (CPU) draws the jitter's order of operations; default: `generator`,
    which must then be a CPU generator.
    """
    batch = clips.shape[0]
    chosen = torch.rand(batch, generator=generator, device=generator.device) < params.grayscale_p
    clips = _apply(clips, chosen, lambda subset, index: grey(subset).expand(-1, 3, -1, -1, -1))
    clips = _jitter(clips, params, generator, order_generator or generator)
    return _blur(clips, params, generator)


def augment(
    clips: torch.Tensor,
    generator: torch.Generator,
    params: AugmentParams = PRETRAIN,
    mean=KINETICS_MEAN,
    std=KINETICS_STD,
    order_generator: torch.Generator | None = None,
) -> torch.Tensor:
    """uint8 (or [0,1] float) B,3,T,H,W on any device -> float32 B,3,T,H,W: grayscale,
    jitter, blur, normalise. Parameters are drawn per clip from `generator` and shared by
    all frames of a clip."""
    if clips.dim() != 5 or clips.shape[1] != 3:
        raise ValueError(f"expected clips B,3,T,H,W, got shape {tuple(clips.shape)}")
    with torch.autocast(device_type=clips.device.type, enabled=False):
        return normalize(colour(to_float(clips), generator, params, order_generator), mean, std)


def background_erasing(clips: torch.Tensor, alpha: float, generator: torch.Generator) -> torch.Tensor:
    """Background Erasing (Wang et al., CVPR 2021, arXiv 2009.05769; public code FingerRec/BE,
    `SpatialMixup` version 2, the one its `GenPositive` uses): a frame drawn at random from each
    clip is mixed into every frame of that clip, x'_t = (1 - lam) * x_t + lam * x_static, with
    lam uniform in [0, alpha) drawn once per batch (the BE code's alpha = 0.3).

    A static frame added everywhere moves the background of the clip but not its motion, so a
    network that must match the result to another clip of the video cannot lean on the scene.
    float B,C,T,H,W in [0,1] -> same shape.
    """
    batch, _, frames = clips.shape[:3]
    lam = torch.rand(1, generator=generator, device=generator.device).to(clips.device) * alpha
    index = torch.randint(0, frames, (batch,), generator=generator, device=generator.device).to(clips.device)
    static = clips[torch.arange(batch, device=clips.device), :, index].unsqueeze(2)
    return (1 - lam) * clips + lam * static


def make_generator(seed: int | list[int], device: torch.device | str = "cpu") -> torch.Generator:
    """A seeded generator on `device` (the clips' device avoids host-device copies on GPU).
    A list seeds from all its numbers (e.g. [seed, step, rank]) through numpy's SeedSequence."""
    if isinstance(seed, (list, tuple)):
        seed = int(np.random.SeedSequence([int(v) for v in seed]).generate_state(1, dtype=np.uint64)[0])
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed) % (2**63 - 1))
    return generator


__all__ = [
    "AugmentParams",
    "PRETRAIN",
    "FINETUNE",
    "NONE",
    "augment",
    "colour",
    "jitter",
    "normalize",
    "to_float",
    "to_input",
    "gaussian_blur",
    "background_erasing",
    "make_generator",
]
