"""FAME: foreground-background merging (Ding et al., "Motion-aware Contrastive Video
Representation Learning via Foreground-background Merging", CVPR 2022, arXiv 2109.15130;
official code github.com/Mark12Ding/FAME, `moco/loader.py`).

Why: contrastive video pretraining pulls two clips of the same video together; both share the
background, so a network can match them by the scene instead of the motion. FAME pastes the
moving foreground of each clip onto the background of another clip of the batch and asks the
network to match the fused clip with an untouched clip of the original video: the background
no longer identifies the video, the motion does.

The mask, per clip (C x T x H x W, float in [0, 1], cropped to the training crop S = H = W):
1. Motion map: |x[t+1] - x[t]| summed over channels, averaged over the T-1 differences -> H x W.
2. Blur it with a Gaussian of odd size k = (int(0.1 * S) // 2) * 2 + 1 and sigma = k / 3, then
   min-max normalise to [0, 1] (eps 1e-8 in the divisor).
3. Seeds: the 50% of pixels with the most motion are foreground seeds; the 10% with the least
   are background seeds.
4. Colour model: the clip's mean frame over time in HSV; each pixel gets one of 10 x 10 x 10
   bins from hx = (s*cos(2*pi*h) + 1)/2, hy = (s*sin(2*pi*h) + 1)/2 and v, each mapped onto
   levels 1..10 by round(x*9 + 1).
5. Histograms of the foreground seeds' bins and of the background seeds' bins; 1 is added to
   every background bin (smoothing); each is normalised to sum 1.
6. Per pixel p = P_fg(bin) / (P_fg(bin) + P_bg(bin)).
7. Blur p with the same Gaussian, min-max normalise again.
8. Binary mask: the top int(beta * H * W) pixels of p are foreground (official beta = 0.5).

The merge, per batch: with a random permutation `perm` of the batch (it may map a clip to
itself), fused[i] = mask[i] * x[i] + (1 - mask[i]) * x[perm[i]], the mask broadcast over
channels and time. Only the query view is fused; the key view stays untouched; colour jitter,
grayscale, blur and normalisation come after the merge.

Official quirks reproduced on purpose (the paper's numbers come from them):
- kornia's rgb_to_hsv gives hue in radians, [0, 2*pi), and the official code still multiplies
  it by 2*pi in step 4;
- the blur pads by reflection (kornia's default border); `int()` floors the pixel counts;
- eps 1e-8 in the min-max divisor and in both histogram divisors.
Ties between equal scores (static letterbox bars, a still background: whole regions of exactly
equal motion) are broken at random, from a seeded generator: the official `torch.topk` leaves
the order of ties unspecified, and any fixed rule (say, the lower pixel index) would put the
"foreground" of a static clip in the top rows of every frame. Where no two scores are equal the
masks are exactly the official code's. The blur is separable and applied as two small matrix
products, which equals kornia's padded 2-D convolution up to float rounding.

Where it runs: the mask of each query clip is computed on the CPU workers of the Ray Data
pipeline (`clip_mask`, from uint8 clips with the frame statistics summed exactly in integers
first); the merge runs on the training worker over its full per-worker batch (`merge`), so every
clip of every step takes its background from a full batch, as one GPU's batch in the official
code.

Pure functions over tensors (no Ray, no files): clips are B C T H W, float in [0, 1] or uint8; masks are B H W.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

EPS = 1e-8
# Seeds of the colour model: the top half of the motion map is foreground, the bottom
# tenth background (official code: 0.5 and 0.1 of H*W).
FOREGROUND_SEEDS = 0.5
BACKGROUND_SEEDS = 0.1
# 10 x 10 x 10 colour bins over (hue x, hue y, value), as the official code.
LEVELS = 10
NUM_BINS = LEVELS**3


def kernel_size(crop_size: int) -> int:
    """Odd Gaussian kernel side for crop size S: (int(0.1 * S) // 2) * 2 + 1 (step 2)."""
    return (int(0.1 * crop_size) // 2) * 2 + 1


def gaussian_kernel(size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """1-D Gaussian of `size` taps with sigma = size / 3, summing to 1."""
    sigma = size / 3
    x = torch.arange(size, dtype=torch.float64) - size // 2
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    return (kernel / kernel.sum()).to(dtype)


@functools.lru_cache(maxsize=32)
def blur_matrix(length: int, size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """length x length matrix A with A @ v = v blurred by the 1-D Gaussian, reflect padding.

    Reflect padding mirrors without repeating the edge pixel (kornia's 'reflect' border).
    """
    kernel = gaussian_kernel(size, torch.float64)
    pad = size // 2
    matrix = torch.zeros(length, length, dtype=torch.float64)
    for tap in range(size):
        source = torch.arange(length) + tap - pad
        source = torch.where(source < 0, -source, source)
        source = torch.where(source >= length, 2 * (length - 1) - source, source)
        matrix[torch.arange(length), source] += kernel[tap]
    return matrix.to(dtype)


def gaussian_blur(maps: torch.Tensor, size: int) -> torch.Tensor:
    """Blur B H W maps with the separable Gaussian of `size` taps (sigma = size / 3), reflect border.

    Two small matrix products (rows, then columns) instead of a padded convolution: the
    same sums, several times faster at these sizes.
    """
    if size == 1:
        return maps
    _, height, width = maps.shape
    rows = blur_matrix(height, size, maps.dtype).to(maps.device)
    columns = blur_matrix(width, size, maps.dtype).to(maps.device)
    return rows @ maps @ columns.T


def min_max(maps: torch.Tensor) -> torch.Tensor:
    """Per-map (x - min) / (max - min + eps) over B H W."""
    flat = maps.flatten(1)
    flat = flat - flat.amin(dim=1, keepdim=True)
    flat = flat / (flat.amax(dim=1, keepdim=True) + EPS)
    return flat.view_as(maps)


def select_top(
    scores: torch.Tensor, count: int, largest: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    """B x N bool: the `count` largest (or smallest) scores of each row; ties broken at random.

    O(N) selection instead of a full sort: the count-th key is found with numpy's
    introselect on the CPU (several times faster than torch.kthvalue there), with
    torch.kthvalue on other devices; everything beyond it is taken, then as many of the pixels
    tied with it as there is room for, chosen by random priorities drawn from `generator` (a
    fresh generator seeded 0 when none is given; on another device, one on that device).
    """
    if count <= 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    keys = (-scores if largest else scores).contiguous()
    if keys.device.type != "cpu":
        return _select_top_on_device(keys, count, generator)
    threshold = torch.from_numpy(np.partition(keys.numpy(), count - 1, axis=1)[:, count - 1 : count])
    beyond = keys < threshold
    tied = keys == threshold
    room = count - beyond.sum(dim=1)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    priority = torch.rand(keys.shape, generator=generator, dtype=torch.float64).numpy()
    priority[~tied.numpy()] = np.inf
    chosen = beyond.clone()
    for row, wanted in enumerate(room.tolist()):
        if wanted >= int(tied[row].sum()):
            chosen[row] |= tied[row]
        else:
            cut = np.partition(priority[row], wanted - 1)[wanted - 1]
            chosen[row] |= torch.from_numpy(priority[row] <= cut)
    return chosen


def _select_top_on_device(keys: torch.Tensor, count: int, generator: torch.Generator | None) -> torch.Tensor:
    """`select_top` of the `count` smallest keys per row, in torch ops on the keys' device (a GPU):
    the same rule, ties at the cut chosen by priorities from `generator`."""
    threshold = keys.kthvalue(count, dim=1, keepdim=True).values
    beyond = keys < threshold
    tied = keys == threshold
    room = count - beyond.sum(dim=1, keepdim=True)
    if generator is None:
        generator = torch.Generator(device=keys.device).manual_seed(0)
    priority = torch.rand(keys.shape, generator=generator, device=keys.device, dtype=torch.float64)
    priority = priority.masked_fill(~tied, float("inf"))
    # The room-th smallest priority among the tied pixels of each row (every row has room >= 1
    # and at least that many tied pixels: the count-th key is one of them).
    cut = priority.sort(dim=1).values.gather(1, (room - 1).clamp(min=0))
    return beyond | (tied & (priority <= cut))


def motion_map(clips: torch.Tensor) -> torch.Tensor:
    """B C T H W -> B H W: |x[t+1] - x[t]| summed over channels, averaged over the T-1 differences."""
    if clips.shape[2] < 2:
        return torch.zeros(clips.shape[0], *clips.shape[3:], dtype=clips.dtype, device=clips.device)
    return (clips[:, :, 1:] - clips[:, :, :-1]).abs().sum(dim=1).mean(dim=1)


def rgb_to_hsv(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """B 3 H W RGB in [0, 1] -> (hue, saturation, value), each B H W, kornia's convention:
    hue in radians, [0, 2*pi); saturation = delta / (value + eps); hue 0 where delta = 0.
    """
    red, green, blue = images.unbind(1)
    value = torch.maximum(torch.maximum(red, green), blue)
    delta = value - torch.minimum(torch.minimum(red, green), blue)
    saturation = delta / (value + EPS)
    safe_delta = torch.where(delta == 0, torch.ones_like(delta), delta)
    # The first maximal channel decides the sector (torch.max's argmax convention).
    hue = torch.where(
        red == value,
        green - blue,
        torch.where(green == value, (blue - red) + 2 * safe_delta, (red - green) + 4 * safe_delta),
    )
    hue = 2 * math.pi * ((hue / safe_delta / 6.0) % 1.0)
    return hue, saturation, value


def colour_bins(mean_frames: torch.Tensor) -> torch.Tensor:
    """B 3 H W mean frames -> B x (H*W) int64 colour bin of each pixel, in [0, 1000).

    Levels 1..10 per axis (step 4); the official index h + (s-1)*10 + (v-1)*100 minus one,
    so the same 1000 bins (two of which no pixel can reach) get the background smoothing.
    """
    hue, saturation, value = rgb_to_hsv(mean_frames)
    # The official code multiplies kornia's hue, already in radians, by 2*pi once more.
    # The paper's masks come from that formula, so it is reproduced here on purpose.
    angle = hue * (2 * math.pi)
    hue_x = (saturation * torch.cos(angle) + 1) / 2
    hue_y = (saturation * torch.sin(angle) + 1) / 2
    levels = [torch.round(channel * (LEVELS - 1) + 1).long() - 1 for channel in (hue_x, hue_y, value)]
    bins = levels[0] + levels[1] * LEVELS + levels[2] * LEVELS * LEVELS
    return bins.flatten(1)


def histograms(bins: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
    """Per-row counts (B x NUM_BINS, float) of the bins (B x N int64) at the seed pixels (B x N bool)."""
    counts = torch.zeros(bins.shape[0], NUM_BINS, dtype=torch.float32, device=bins.device)
    return counts.scatter_add_(1, bins, seeds.to(torch.float32))


def foreground_probability(
    motion: torch.Tensor, mean_frames: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Motion B H W and mean frames B 3 H W -> soft foreground map p B H W (steps 2-7)."""
    batch, height, width = motion.shape
    size = kernel_size(height)
    motion = min_max(gaussian_blur(motion, size)).flatten(1)
    pixels = height * width
    foreground_seeds = select_top(motion, int(FOREGROUND_SEEDS * pixels), largest=True, generator=generator)
    background_seeds = select_top(motion, int(BACKGROUND_SEEDS * pixels), largest=False, generator=generator)
    bins = colour_bins(mean_frames)
    foreground = histograms(bins, foreground_seeds).to(motion.dtype)
    background = histograms(bins, background_seeds).to(motion.dtype) + 1  # smoothing
    foreground = foreground / (foreground.sum(dim=1, keepdim=True) + EPS)
    background = background / (background.sum(dim=1, keepdim=True) + EPS)
    p_foreground = foreground.gather(1, bins)
    p_background = background.gather(1, bins)
    probability = (p_foreground / (p_foreground + p_background)).view(batch, height, width)
    return min_max(gaussian_blur(probability, size))


def mask_from_statistics(
    motion: torch.Tensor, mean_frames: torch.Tensor, beta: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Motion B H W + mean frames B 3 H W -> B H W 0/1 mask of the int(beta*H*W) top pixels of p.
    Ties are broken at random by `generator` (seeded 0 when None)."""
    batch, height, width = motion.shape
    probability = foreground_probability(motion, mean_frames, generator).flatten(1)
    chosen = select_top(probability, int(beta * height * width), largest=True, generator=generator)
    return chosen.to(motion.dtype).view(batch, height, width)


def foreground_mask(clips: torch.Tensor, beta: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """B C T H W float [0, 1] -> B H W mask (same dtype), 1 on the int(beta * H * W) most foreground pixels.

    The crop size S of the method is the clip's height (clips are square crops).
    """
    if clips.dim() != 5 or clips.shape[1] != 3:
        raise ValueError(f"expected clips of shape B x 3 x T x H x W, got {tuple(clips.shape)}")
    return mask_from_statistics(motion_map(clips), clips.mean(dim=2), beta, generator)


def merge(clips: torch.Tensor, mask: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """fused[i] = mask[i] * clips[i] + (1 - mask[i]) * clips[permutation[i]].

    clips: B C T H W (any dtype); mask: B H W of 0/1, broadcast over channels and time;
    permutation: B indices. Written as a select, so uint8 clips stay exact.
    """
    keep = mask.bool()[:, None, None]
    return torch.where(keep, clips, clips[permutation])


def uint8_statistics(clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 B C T H W -> (motion B H W, mean frames B C H W), float32 on the [0, 1] scale.

    The same quantities as `motion_map` and the time mean of clips / 255, summed exactly
    in integers first (|a - b| = max(a, b) - min(a, b) needs no wider type); this is what
    keeps FAME cheap next to decoding.
    """
    batch, channels, frames, height, width = clips.shape
    # int16 holds a sum over time of up to 128 uint8 values without overflow.
    time_sum = torch.int16 if frames <= 128 else torch.int32
    after, before = clips[:, :, 1:], clips[:, :, :-1]
    difference = torch.maximum(after, before).sub_(torch.minimum(after, before))
    motion = difference.sum(dim=2, dtype=time_sum).sum(dim=1, dtype=torch.int32)
    motion = motion.float() / (255.0 * max(frames - 1, 1))
    mean = clips.sum(dim=2, dtype=time_sum).float() / (255.0 * frames)
    return motion, mean


def merge_uint8(clips: torch.Tensor, mask: torch.Tensor, permutation: torch.Tensor) -> torch.Tensor:
    """`merge` for uint8 B C T H W, as bitwise select over contiguous pixels (several times faster)."""
    batch = clips.shape[0]
    pixels = clips[0, 0, 0].numel()
    keep = (mask.to(torch.uint8) * 255).view(batch, 1, pixels)
    foreground = clips.reshape(batch, -1, pixels)
    background = foreground.index_select(0, permutation)
    return ((foreground & keep) | (background & ~keep)).view_as(clips)


def clip_mask(clip: torch.Tensor, beta: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """The mask of one uint8 clip C T H W: uint8 H W of 0/1 (what the data pipeline computes)."""
    return batch_masks(clip.unsqueeze(0), beta, generator)[0]


def batch_masks(clips: torch.Tensor, beta: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """The masks of uint8 clips B C T H W on any device: uint8 B H W of 0/1 (`fame.mask_on
    'trainer'`: over the worker's whole batch on its device, where the official code computes them)."""
    motion, mean = uint8_statistics(clips)
    return mask_from_statistics(motion, mean, beta, generator).to(torch.uint8)
