"""FAME against a plain loop-based reference written from the method in fame_ray/data/fame.py, plus properties."""

from __future__ import annotations

import colorsys
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fame_ray.data.clips import fame

# ---------------------------------------------------------------------------------------
# Reference: the method (fame_ray/data/fame.py) step by step, one pixel at a time (float64, Python loops).


def _reflect(index: int, length: int) -> int:
    if index < 0:
        return -index
    if index >= length:
        return 2 * (length - 1) - index
    return index


def _blur(image: np.ndarray, crop_size: int) -> np.ndarray:
    size = (int(0.1 * crop_size) // 2) * 2 + 1
    sigma = size / 3
    taps = [math.exp(-((i - size // 2) ** 2) / (2 * sigma**2)) for i in range(size)]
    taps = [t / sum(taps) for t in taps]
    height, width = image.shape
    out = np.zeros_like(image)
    for y in range(height):
        for x in range(width):
            total = 0.0
            for i in range(size):
                for j in range(size):
                    total += (
                        taps[i]
                        * taps[j]
                        * image[_reflect(y + i - size // 2, height), _reflect(x + j - size // 2, width)]
                    )
            out[y, x] = total
    return out


def _min_max(image: np.ndarray) -> np.ndarray:
    shifted = image - image.min()
    return shifted / (shifted.max() + 1e-8)


def _top(values: list[float], count: int, largest: bool) -> list[int]:
    """Indices of the `count` largest/smallest values; ties to the lower index."""
    key = (lambda i: (-values[i], i)) if largest else (lambda i: (values[i], i))
    return sorted(range(len(values)), key=key)[:count]


def _bin(red: float, green: float, blue: float) -> int:
    hue, _, _ = colorsys.rgb_to_hsv(red, green, blue)
    value = max(red, green, blue)
    saturation = (value - min(red, green, blue)) / (value + 1e-8)
    radians = 2 * math.pi * hue  # kornia's hue
    angle = radians * 2 * math.pi  # the official quirk, reproduced
    levels = [
        round(x * 9 + 1)
        for x in ((saturation * math.cos(angle) + 1) / 2, (saturation * math.sin(angle) + 1) / 2, value)
    ]
    return (levels[0] - 1) + (levels[1] - 1) * 10 + (levels[2] - 1) * 100


def reference_probability(clip: np.ndarray) -> np.ndarray:
    """clip C T H W float64 -> p H W (steps 1-7)."""
    channels, frames, height, width = clip.shape
    motion = np.zeros((height, width))
    for t in range(frames - 1):
        for c in range(channels):
            motion += np.abs(clip[c, t + 1] - clip[c, t])
    motion = _min_max(_blur(motion / (frames - 1), height)).flatten().tolist()
    pixels = height * width
    foreground_seeds = _top(motion, int(0.5 * pixels), largest=True)
    background_seeds = _top(motion, int(0.1 * pixels), largest=False)
    mean = clip.mean(axis=1)
    bins = [_bin(*mean[:, y, x]) for y in range(height) for x in range(width)]
    foreground = np.zeros(1000)
    background = np.ones(1000)
    for index in foreground_seeds:
        foreground[bins[index]] += 1
    for index in background_seeds:
        background[bins[index]] += 1
    foreground /= foreground.sum() + 1e-8
    background /= background.sum() + 1e-8
    p = np.array([foreground[b] / (foreground[b] + background[b]) for b in bins]).reshape(height, width)
    return _min_max(_blur(p, height))


def reference_mask(p: np.ndarray, beta: float) -> np.ndarray:
    """Step 8: the top int(beta * H * W) pixels of p are 1."""
    mask = np.zeros(p.size)
    mask[_top(p.flatten().tolist(), int(beta * p.size), largest=True)] = 1
    return mask.reshape(p.shape)


# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_clips():
    generator = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 5, 40, 40, generator=generator, dtype=torch.float64)


@pytest.fixture(scope="module")
def expected_probability(random_clips):
    return [reference_probability(clip.numpy()) for clip in random_clips]


def test_probability_matches_reference(random_clips, expected_probability):
    p = fame.foreground_probability(fame.motion_map(random_clips), random_clips.mean(dim=2))
    for index, expected in enumerate(expected_probability):
        np.testing.assert_allclose(p[index].numpy(), expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("beta", [0.5, 0.3, 0.77])
def test_mask_matches_reference_exactly(random_clips, expected_probability, beta):
    mask = fame.foreground_mask(random_clips, beta)
    for index, expected in enumerate(expected_probability):
        np.testing.assert_array_equal(mask[index].numpy(), reference_mask(expected, beta))


def test_kernel_size_and_blur_border_follow_fame_md():
    assert [fame.kernel_size(s) for s in (8, 20, 64, 112, 224)] == [1, 3, 7, 11, 23]
    maps = torch.rand(3, 24, 24, dtype=torch.float64)
    kernel = fame.gaussian_kernel(5, torch.float64)
    assert kernel.sum().item() == pytest.approx(1.0)
    padded = F.pad(maps.unsqueeze(1), (2, 2, 2, 2), mode="reflect")
    expected = F.conv2d(padded, torch.outer(kernel, kernel).view(1, 1, 5, 5)).squeeze(1)
    torch.testing.assert_close(fame.gaussian_blur(maps, 5), expected)


def test_hsv_matches_colorsys_with_hue_in_radians():
    images = torch.rand(1, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    images[0, :, 0, 0] = torch.tensor([0.5, 0.5, 0.5])  # grey: hue 0
    hue, saturation, value = fame.rgb_to_hsv(images)
    for y in range(8):
        for x in range(8):
            h, s, v = colorsys.rgb_to_hsv(*images[0, :, y, x].tolist())
            assert hue[0, y, x].item() == pytest.approx(2 * math.pi * h, abs=1e-9)
            assert saturation[0, y, x].item() == pytest.approx(s, abs=1e-6)  # eps 1e-8 in the divisor
            assert value[0, y, x].item() == pytest.approx(v)


@pytest.mark.parametrize("beta", [0.5, 0.25, 1.0, 0.33])
def test_mask_covers_beta_of_pixels_even_with_ties(beta):
    textured = torch.rand(3, 3, 6, 32, 32)
    static = torch.rand(1, 3, 1, 32, 32).expand(1, 3, 6, 32, 32)  # no motion: every pixel tied
    flat = torch.full((1, 3, 6, 32, 32), 0.5)  # no motion, one colour
    for clips in (textured, static, flat):
        mask = fame.foreground_mask(clips, beta, torch.Generator().manual_seed(3))
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        assert mask.flatten(1).sum(1).tolist() == [int(beta * 32 * 32)] * clips.shape[0]
        assert torch.equal(mask, fame.foreground_mask(clips, beta, torch.Generator().manual_seed(3)))  # seeded


def test_ties_are_broken_at_random_not_by_pixel_index():
    """A fully static clip ties every pixel: its foreground must not pile up in the top rows
    (a lower-index rule puts all of it there), and the seed decides which pixels win."""
    static = torch.rand(1, 3, 1, 48, 48, generator=torch.Generator().manual_seed(0)).expand(1, 3, 8, 48, 48)
    first = fame.foreground_mask(static, 0.5, torch.Generator().manual_seed(1))[0]
    top_half = first[:24].sum() / first.sum()
    assert 0.4 < top_half < 0.6, f"{top_half:.2f} of the foreground lies in the top half"
    rows = first.sum(dim=1)
    assert rows.max() < 48, "a whole row was taken: ties went in index order"
    again = fame.foreground_mask(static, 0.5, torch.Generator().manual_seed(1))[0]
    other = fame.foreground_mask(static, 0.5, torch.Generator().manual_seed(2))[0]
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_select_top_keeps_every_untied_winner_and_breaks_only_ties():
    scores = torch.tensor([[5.0, 1.0, 3.0, 3.0, 3.0, 0.0]])
    picks = [fame.select_top(scores, 3, generator=torch.Generator().manual_seed(seed))[0] for seed in range(20)]
    for chosen in picks:
        assert chosen[0] and chosen.sum() == 3 and not chosen[1] and not chosen[5]
    assert len({tuple(c.tolist()) for c in picks}) == 3  # each pair of the tied three wins sometimes


def test_select_top_on_a_device_takes_what_the_cpu_path_takes_ties_included():
    """The torch-only selection (kthvalue, used on a GPU; run here on CPU tensors) against the
    numpy one: from the same generator state the same pixels, rows full of ties included."""
    generator = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 6, (4, 500), generator=generator).float()  # about 80 pixels per value
    scores[3] = 2.0  # a row where every pixel ties
    for count in (1, 50, 250, 499, 500):
        for largest in (True, False):
            by_numpy = fame.select_top(scores, count, largest, torch.Generator().manual_seed(count))
            keys = (-scores if largest else scores).contiguous()
            by_torch = fame._select_top_on_device(keys, count, torch.Generator().manual_seed(count))
            assert torch.equal(by_numpy, by_torch), (count, largest)
            assert by_torch.sum(dim=1).tolist() == [count] * 4


def test_batch_masks_follow_the_clip_masks_rule_over_a_whole_batch():
    """`batch_masks` (fame.mask_on 'trainer') over 6 uint8 clips: each mask keeps int(beta*H*W)
    pixels and holds its moving object, as the per-clip masks of the decode tasks do, and a
    clip's mask depends on no other clip of the batch (with the same generator, batch-mates
    swapped for noise leave it as it was)."""
    squares = [_moving_square(seed=seed) for seed in range(6)]
    clips = torch.cat([(clip * 255).round().to(torch.uint8) for clip, _ in squares])
    together = fame.batch_masks(clips, 0.5, torch.Generator().manual_seed(0))
    assert together.dtype == torch.uint8 and together.shape == (6, 64, 64)
    assert together.flatten(1).sum(1).tolist() == [int(0.5 * 64 * 64)] * 6
    for index, (_, covered) in enumerate(squares):
        alone = fame.clip_mask(clips[index], 0.5, torch.Generator().manual_seed(1)).bool()
        for mask in (together[index].bool(), alone):
            assert (mask & covered).sum() / covered.sum() > 0.8
    noise = torch.randint(0, 256, (5, 3, 8, 64, 64), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    other_mates = fame.batch_masks(torch.cat([clips[:1], noise]), 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(other_mates[0], together[0]) and not torch.equal(other_mates[1], together[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batch_masks_on_a_gpu_keep_the_rule():
    """On the GPU (torch-only selection, a CUDA generator): int(beta*H*W) pixels per mask, each
    holding its moving object."""
    squares = [_moving_square(seed=seed) for seed in range(6)]
    clips = torch.cat([(clip * 255).round().to(torch.uint8) for clip, _ in squares])
    on_gpu = fame.batch_masks(clips.cuda(), 0.5, torch.Generator(device="cuda").manual_seed(0)).cpu()
    assert on_gpu.flatten(1).sum(1).tolist() == [int(0.5 * 64 * 64)] * 6
    for mask, (_, covered) in zip(on_gpu.bool(), squares):
        assert (mask & covered).sum() / covered.sum() > 0.8


def _moving_square(frames=8, size=64, side=12, seed=0):
    """A bright square crossing a static textured background; returns (clip, object pixels)."""
    rng = np.random.default_rng(seed)
    background = rng.uniform(0.0, 0.6, size=(3, size, size)) * np.array([0.3, 0.8, 0.5])[:, None, None]
    clip = np.repeat(background[:, None], frames, axis=1)
    covered = np.zeros((size, size), bool)
    for t in range(frames):
        top, left = 20, 6 + 5 * t
        clip[:, t, top : top + side, left : left + side] = np.array([1.0, 0.95, 0.2])[:, None, None]
        covered[top : top + side, left : left + side] = True
    return torch.from_numpy(clip).float().unsqueeze(0), torch.from_numpy(covered)


def test_moving_object_lands_in_the_foreground():
    clip, covered = _moving_square()
    mask = fame.foreground_mask(clip, beta=0.5)[0].bool()
    assert (mask & covered).sum() / covered.sum() > 0.8


def test_uint8_path_agrees_with_float_path():
    clip, _ = _moving_square()
    clips = torch.cat([clip, torch.rand(3, 3, 8, 64, 64)])
    as_uint8 = (clips * 255).round().to(torch.uint8)
    as_float = as_uint8.double() / 255
    motion, mean = fame.uint8_statistics(as_uint8)
    torch.testing.assert_close(motion.double(), fame.motion_map(as_float), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(mean.double(), as_float.mean(dim=2), rtol=1e-5, atol=1e-6)
    mask = fame.mask_from_statistics(motion, mean, 0.5, torch.Generator().manual_seed(1))
    agreement = (mask.double() == fame.foreground_mask(as_float, 0.5, torch.Generator().manual_seed(1))).double().mean()
    assert agreement > 0.99
    permutation = torch.randperm(len(clips), generator=torch.Generator().manual_seed(2))
    assert torch.equal(fame.merge_uint8(as_uint8, mask, permutation), fame.merge(as_uint8, mask, permutation))


def test_merge_identity_permutation_returns_input():
    clips = torch.rand(4, 3, 5, 16, 16)
    mask = fame.foreground_mask(clips)
    assert torch.equal(fame.merge(clips, mask, torch.arange(4)), clips)


def test_merge_takes_background_from_the_permuted_clip():
    clips = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1, 1).expand(4, 3, 5, 16, 16).contiguous()
    mask = (torch.rand(4, 16, 16) > 0.5).float()
    permutation = torch.tensor([2, 0, 3, 1])
    fused = fame.merge(clips, mask, permutation)
    for index in range(4):
        expected = torch.where(mask[index].bool(), float(index), float(permutation[index]))
        assert torch.equal(fused[index], expected.expand(3, 5, 16, 16))
    as_uint8 = clips.to(torch.uint8)
    assert torch.equal(fame.merge_uint8(as_uint8, mask, permutation), fused.to(torch.uint8))


# ---------------------------------------------------------------------------------------
# The official algorithm's behaviour (moco/loader.py of Mark12Ding/FAME), rebuilt here with the
# library it uses (kornia: rgb_to_hsv, GaussianBlur2d; torch.topk), on inputs with no tied
# scores, where the official masks are fully defined.


def official_mask(clips: torch.Tensor, beta: float) -> torch.Tensor:
    kornia = pytest.importorskip("kornia")
    batch, channels, frames, height, width = clips.shape
    size = int(0.1 * height) // 2 * 2 + 1
    blur = kornia.filters.GaussianBlur2d((size, size), (size / 3, size / 3))

    def norm(maps):
        flat = maps.flatten(1)
        flat = flat - flat.min(dim=-1, keepdim=True)[0]
        return (flat / (flat.max(dim=-1, keepdim=True)[0] + 1e-8)).view(batch, height, width)

    motion = (clips[:, :, :-1] - clips[:, :, 1:]).abs().sum(dim=1).mean(dim=1)
    motion = norm(blur(motion.unsqueeze(1)).squeeze(1))
    hsv = kornia.color.rgb_to_hsv(clips.mean(dim=2))
    hue, saturation, value = hsv[:, 0], hsv[:, 1], hsv[:, 2]
    levels = [
        torch.round(x * 9 + 1)
        for x in (
            (saturation * torch.cos(hue * 2 * np.pi) + 1) / 2,
            (saturation * torch.sin(hue * 2 * np.pi) + 1) / 2,
            value,
        )
    ]
    bins = (levels[0] + (levels[1] - 1) * 10 + (levels[2] - 1) * 100).reshape(batch, -1).long()
    foreground_index = torch.topk(motion.reshape(batch, -1), k=int(0.5 * height * width), dim=-1)[1]
    background_index = torch.topk(motion.reshape(batch, -1), k=int(0.1 * height * width), dim=-1, largest=False)[1]

    def counts(index):
        target = torch.zeros(batch, 1000, dtype=torch.long)
        chosen = bins.gather(1, index)
        return target.scatter_add_(1, chosen, torch.ones_like(chosen)).float()

    foreground, background = counts(foreground_index), counts(background_index) + 1
    foreground /= foreground.sum(dim=-1, keepdim=True) + 1e-8
    background /= background.sum(dim=-1, keepdim=True) + 1e-8
    # The official index runs 1..1000 (fame-ray's is the same minus one: the same histogram);
    # these inputs stay below 0.9, so it never reaches the out-of-range 1000.
    p_fg, p_bg = foreground.gather(1, bins), background.gather(1, bins)
    refined = norm(blur((p_fg / (p_bg + p_fg)).reshape(batch, 1, height, width)).squeeze(1))
    count = int(beta * height * width)
    top = torch.topk(refined.reshape(batch, -1), k=count, dim=-1)[1]
    mask = torch.zeros(batch, height * width)
    mask.scatter_(1, top, 1.0)
    return mask.view(batch, height, width)


@pytest.mark.parametrize("beta", [0.5, 0.3])
def test_mask_equals_the_official_algorithm_where_no_scores_tie(beta):
    clips = torch.rand(4, 3, 8, 56, 56, generator=torch.Generator().manual_seed(11)) * 0.9
    expected = official_mask(clips, beta)
    mask = fame.foreground_mask(clips, beta, torch.Generator().manual_seed(0))
    assert (mask != expected).sum() == 0
