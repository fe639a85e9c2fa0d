"""On-device augmentation: shapes, per-clip sameness across frames, grayscale, p=0, determinism."""

import pytest
import torch

from fame_ray.components import augment as aug
from fame_ray.components.augment import KINETICS_MEAN, KINETICS_STD
from fame_ray.data.clips.fame import kernel_size


def _clips(batch=6, frames=4, size=32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    # A static random picture repeated over time: every frame of a clip is the same image.
    frame = torch.randint(0, 256, (batch, 3, 1, size, size), generator=generator, dtype=torch.uint8)
    return frame.expand(-1, -1, frames, -1, -1).contiguous()


def _denormalise(clips):
    mean = torch.tensor(KINETICS_MEAN).view(1, 3, 1, 1, 1)
    std = torch.tensor(KINETICS_STD).view(1, 3, 1, 1, 1)
    return clips * std + mean


def test_shape_dtype_and_range():
    out = aug.augment(_clips(), aug.make_generator(0))
    assert out.shape == (6, 3, 4, 32, 32) and out.dtype == torch.float32
    raw = _denormalise(out)
    assert raw.min() >= -1e-5 and raw.max() <= 1 + 1e-5


def test_same_parameters_on_every_frame_of_a_clip():
    out = aug.augment(_clips(batch=16), aug.make_generator(1))
    # Identical input frames must stay identical after augmentation.
    assert torch.allclose(out[:, :, :1].expand_as(out), out, atol=1e-5)


def test_parameters_differ_across_clips():
    same = _clips(batch=1).expand(16, -1, -1, -1, -1).contiguous()
    out = aug.augment(same, aug.make_generator(2))
    distinct = {round(float(clip.mean()), 4) for clip in out}
    assert len(distinct) > 8


def test_grayscale_clips_have_equal_channels():
    params = aug.AugmentParams(grayscale_p=1.0)
    raw = _denormalise(aug.augment(_clips(batch=8), aug.make_generator(3), params))
    assert torch.allclose(raw[:, 0], raw[:, 1], atol=1e-5) and torch.allclose(raw[:, 1], raw[:, 2], atol=1e-5)


def test_zero_probabilities_only_normalise():
    clips = _clips()
    out = aug.augment(clips, aug.make_generator(4), aug.NONE)
    expected = (clips.float() / 255 - torch.tensor(KINETICS_MEAN).view(1, 3, 1, 1, 1)) / torch.tensor(
        KINETICS_STD
    ).view(1, 3, 1, 1, 1)
    assert torch.allclose(out, expected, atol=1e-6)


def test_seeded_generator_is_deterministic():
    clips = _clips(batch=8)
    first = aug.augment(clips, aug.make_generator(5))
    second = aug.augment(clips, aug.make_generator(5))
    third = aug.augment(clips, aug.make_generator(6))
    assert torch.equal(first, second) and not torch.equal(first, third)


def test_blur_sigma_is_drawn_per_clip():
    clips = torch.zeros(2, 3, 1, 21, 21)
    clips[:, :, :, 10, 10] = 1.0  # an impulse: the output is the kernel itself
    out = aug.gaussian_blur(clips, torch.tensor([0.5, 2.0]), kernel=11)
    assert out[0, 0, 0, 10, 10] > out[1, 0, 0, 10, 10] * 2
    assert torch.allclose(out.sum(dim=(-1, -2)), torch.ones(2, 3, 1), atol=1e-5)
    assert kernel_size(112) == 11 and kernel_size(224) == 23


def test_hue_shift_keeps_grey_and_round_trips():
    clips = torch.rand(3, 3, 2, 8, 8)
    assert torch.allclose(aug.adjust_hue(clips, torch.zeros(3)), clips, atol=1e-5)
    grey = clips[:, :1].expand(-1, 3, -1, -1, -1)
    assert torch.allclose(aug.adjust_hue(grey, torch.full((3,), 0.3)), grey, atol=1e-6)


def test_bf16_autocast_and_rejects_bad_layout():
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = aug.augment(_clips(), aug.make_generator(7))
    assert out.dtype == torch.float32
    with pytest.raises(ValueError, match="B,3,T,H,W"):
        aug.augment(_clips().permute(0, 2, 3, 4, 1), aug.make_generator(0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_shapes():
    out = aug.augment(_clips().cuda(), aug.make_generator(0, "cuda"))
    assert out.is_cuda and out.shape == (6, 3, 4, 32, 32)


def test_jitter_matches_kornia_colorjiggle_definitions():
    """The official code's kornia ColorJitter is today's kornia ColorJiggle: additive brightness,
    multiplicative contrast, HSV saturation and hue, clamped in and out, one order per batch."""
    kornia = pytest.importorskip("kornia")
    import math

    generator = torch.Generator().manual_seed(8)
    clips = torch.rand(5, 3, 3, 12, 12, generator=generator)
    factors = torch.stack(
        [torch.rand(5, generator=generator) * 0.8 + 0.6 for _ in range(3)]
        + [torch.rand(5, generator=generator) * 0.2 - 0.1],
        dim=1,
    )
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]):
        ours = aug.jitter(clips, factors, order)
        frames = clips.permute(0, 2, 1, 3, 4).reshape(-1, 3, 12, 12)
        per_frame = factors.repeat_interleave(3, dim=0)
        steps = (
            lambda x, f: kornia.enhance.adjust_brightness(x, f - 1),
            kornia.enhance.adjust_contrast,
            kornia.enhance.adjust_saturation,
            lambda x, f: kornia.enhance.adjust_hue(x, f * 2 * math.pi),
        )
        for index in order:
            frames = steps[index](frames, per_frame[:, index])
        theirs = frames.clamp(0, 1).view(5, 3, 3, 12, 12).permute(0, 2, 1, 3, 4)
        torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=0)


def test_contrast_is_multiplicative_per_clip_not_a_blend_with_a_mean():
    frames = torch.rand(1, 3, 1, 8, 8).repeat(1, 1, 2, 1, 1)
    frames[:, :, 1] *= 0.5  # the second frame is darker: a per-frame mean would differ
    out = aug.adjust_contrast(frames.clone(), torch.tensor([0.8]))
    torch.testing.assert_close(out, frames * 0.8)


def test_jitter_order_is_drawn_once_per_batch(monkeypatch):
    calls = []
    real = aug.jitter
    monkeypatch.setattr(
        aug,
        "jitter",
        lambda clips, factors, order: calls.append((len(clips), tuple(order))) or real(clips, factors, order),
    )
    orders = set()
    for seed in range(12):
        calls.clear()
        generator = aug.make_generator(seed)
        aug._jitter(torch.rand(8, 3, 2, 8, 8), aug.AugmentParams(jitter_p=1.0), generator, generator)
        assert len(calls) == 1 and calls[0][0] == 8 and sorted(calls[0][1]) == [0, 1, 2, 3]
        orders.add(calls[0][1])
    assert len(orders) > 3  # a new order for each batch, shared by its clips


def test_select_all_path_equals_the_subset_path():
    clips = torch.rand(6, 3, 2, 10, 10)
    first = aug.augment(clips, aug.make_generator(9))
    chosen = torch.tensor([True, False, True, True, False, False])
    subset = aug._apply(clips, chosen, lambda x, i: aug.grey(x).expand(-1, 3, -1, -1, -1), select_all=False)
    everywhere = aug._apply(clips, chosen, lambda x, i: aug.grey(x).expand(-1, 3, -1, -1, -1), select_all=True)
    torch.testing.assert_close(subset, everywhere)
    assert first.shape == clips.shape


def test_background_erasing_adds_one_static_frame_of_the_same_clip():
    clips = torch.rand(3, 3, 6, 8, 8)
    out = aug.background_erasing(clips, 0.3, aug.make_generator(4))
    for index in range(3):
        difference = out[index] - clips[index]
        # x' - x = lam * (static - x): solve for lam and the static frame must be one of the clip's.
        candidates = []
        for frame in range(6):
            static = clips[index, :, frame : frame + 1]
            direction = static - clips[index]
            lam = (difference * direction).sum() / (direction * direction).sum().clamp_min(1e-12)
            if torch.allclose(difference, lam * direction, atol=1e-6):
                candidates.append(float(lam))
        assert candidates and 0 <= candidates[0] < 0.3
