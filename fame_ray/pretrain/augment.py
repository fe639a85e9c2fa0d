"""On-device augmentation of uint8 clip batches, drawn per clip, the same on every frame.

The official FAME code (`moco/loader.py`, `Augment_GPU_pre`) runs kornia's VideoSequential
with `same_on_frame=True`: RandomGrayscale(p=0.2), ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8),
RandomGaussianBlur(kernel, sigma, p=0.5), Normalize(Kinetics mean/std). Here the same
chain, vectorised over the batch:

- grayscale first, then colour jitter, as the official order (MoCo v2's image recipe puts
  jitter first); the four jitter operations run in a random order per clip, with
  torchvision's definitions (brightness: x*b; contrast: blend with the clip's mean grey;
  saturation: blend with the grey image; hue: shift in HSV), factors uniform in
  [1-0.4, 1+0.4] and hue in [-0.1, 0.1]. The contrast mean is taken over the whole clip
  (not per frame) so that a clip's frames get exactly the same transform.
- Gaussian blur: odd kernel k = int(0.1 * S) // 2 * 2 + 1 for crop side S (official), sigma
  uniform in [0.1, 2.0] drawn PER CLIP. The official code draws sigma once per run
  (`random.uniform(0.1, 2)` when the augmentation is built), so every blurred clip of a run
  shares one sigma: a bug, fixed here. Reflect padding (kornia's default).
- normalisation with config.KINETICS_MEAN / KINETICS_STD.

All random numbers come from an explicit torch.Generator (on the CPU or on the clips'
device); the heavy work runs on the clips' device in float32, autocast disabled, so the
result is the same under bf16 autocast.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fame_ray.config import KINETICS_MEAN, KINETICS_STD

# ITU-R 601 luma weights, as torchvision's rgb_to_grayscale.
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


def _uniform(generator: torch.Generator, size: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(size, generator=generator, device=generator.device)


def _grey(clips: torch.Tensor) -> torch.Tensor:
    """B,3,T,H,W -> B,1,T,H,W luma."""
    weights = clips.new_tensor(_LUMA).view(1, 3, 1, 1, 1)
    return (clips * weights).sum(dim=1, keepdim=True)


def _blend(clips: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """factor * clips + (1 - factor) * other, clamped to [0,1]; factor per clip (B,)."""
    factor = factor.view(-1, 1, 1, 1, 1)
    return (factor * clips + (1 - factor) * other).clamp_(0, 1)


def adjust_brightness(clips: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(clips, torch.zeros_like(clips), factor)


def adjust_contrast(clips: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    mean = _grey(clips).mean(dim=(1, 2, 3, 4), keepdim=True)
    return _blend(clips, mean, factor)


def adjust_saturation(clips: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(clips, _grey(clips), factor)


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


_JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def _jitter(clips: torch.Tensor, params: AugmentParams, generator: torch.Generator) -> torch.Tensor:
    """Colour jitter with probability jitter_p, the four operations in a random order per clip."""
    batch = clips.shape[0]
    apply = torch.rand(batch, generator=generator, device=generator.device) < params.jitter_p
    factors = torch.stack([
        _uniform(generator, batch, max(0.0, 1 - params.brightness), 1 + params.brightness),
        _uniform(generator, batch, max(0.0, 1 - params.contrast), 1 + params.contrast),
        _uniform(generator, batch, max(0.0, 1 - params.saturation), 1 + params.saturation),
        _uniform(generator, batch, -params.hue, params.hue),
    ], dim=1)
    order = torch.argsort(torch.rand(batch, 4, generator=generator, device=generator.device), dim=1)
    apply, factors, order = apply.to(clips.device), factors.to(clips.device), order.to(clips.device)
    for position in range(4):
        for op_index, op in enumerate(_JITTER_OPS):
            chosen = torch.nonzero(apply & (order[:, position] == op_index)).flatten()
            if chosen.numel():
                clips[chosen] = op(clips[chosen], factors[chosen, op_index])
    return clips


def blur_kernel_size(crop_size: int) -> int:
    """Official kernel side: about 10% of the crop, odd."""
    return int(0.1 * crop_size) // 2 * 2 + 1


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
    apply = torch.rand(batch, generator=generator, device=generator.device) < params.blur_p
    sigma = _uniform(generator, batch, *params.blur_sigma)
    chosen = torch.nonzero(apply.to(clips.device)).flatten()
    kernel = params.blur_kernel or blur_kernel_size(min(clips.shape[-2:]))
    if chosen.numel():
        clips[chosen] = gaussian_blur(clips[chosen], sigma.to(clips.device)[chosen], kernel)
    return clips


def normalize(clips: torch.Tensor, mean=KINETICS_MEAN, std=KINETICS_STD) -> torch.Tensor:
    """(x - mean) / std per channel of B,3,T,H,W float clips in [0,1]."""
    mean = clips.new_tensor(mean).view(1, -1, 1, 1, 1)
    std = clips.new_tensor(std).view(1, -1, 1, 1, 1)
    return (clips - mean) / std


def to_float(clips: torch.Tensor) -> torch.Tensor:
    """uint8 B,C,T,H,W -> float32 in [0,1] (float input is taken as already in [0,1])."""
    if clips.dtype == torch.uint8:
        return clips.float().div_(255.0)
    return clips.float()


def to_input(clips: torch.Tensor, device: torch.device, mean=KINETICS_MEAN, std=KINETICS_STD) -> torch.Tensor:
    """uint8 B C T H W (any device) -> normalised float on `device`, no augmentation."""
    return normalize(to_float(clips.to(device, non_blocking=True)), mean, std)


def augment(clips: torch.Tensor, generator: torch.Generator, params: AugmentParams = PRETRAIN,
            mean=KINETICS_MEAN, std=KINETICS_STD) -> torch.Tensor:
    """uint8 B,3,T,H,W (any device) -> float32 B,3,T,H,W: grayscale, jitter, blur, normalise.

    Parameters are drawn per clip from `generator` and shared by all frames of a clip.
    """
    if clips.dim() != 5 or clips.shape[1] != 3:
        raise ValueError(f"expected clips B,3,T,H,W, got shape {tuple(clips.shape)}")
    with torch.autocast(device_type=clips.device.type, enabled=False):
        clips = to_float(clips)
        batch = clips.shape[0]
        grey = torch.rand(batch, generator=generator, device=generator.device) < params.grayscale_p
        chosen = torch.nonzero(grey.to(clips.device)).flatten()
        if chosen.numel():
            clips[chosen] = _grey(clips[chosen]).expand(-1, 3, -1, -1, -1)
        clips = _jitter(clips, params, generator)
        clips = _blur(clips, params, generator)
        return normalize(clips, mean, std)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A seeded generator on `device` (the clips' device avoids host-device copies on GPU)."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed) % (2**63 - 1))
    return generator


__all__ = ["AugmentParams", "PRETRAIN", "FINETUNE", "NONE", "augment", "normalize", "to_float", "to_input",
           "gaussian_blur", "blur_kernel_size", "make_generator"]
