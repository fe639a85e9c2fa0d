"""Activation maps (`fame-ray explain`): the backbones' last-stage feature maps, the maps drawn from
them, their share inside a mask, and the test crop applied to masks as to clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fame_ray.config import DataConfig
from fame_ray.downstream import explain
from fame_ray.models.backbones import build_backbone


@pytest.mark.parametrize("arch, size", [("tiny", 48), ("r3d_18", 32)])
def test_forward_is_the_pooled_feature_map(arch, size):
    torch.manual_seed(0)
    backbone = build_backbone(arch).eval()
    clips = torch.randn(2, 3, 8, size, size)
    with torch.no_grad():
        pooled = backbone.feature_map(clips).mean(dim=(2, 3, 4))
        assert torch.allclose(backbone(clips), pooled, atol=1e-5)


def test_activation_maps_and_their_share_inside_a_mask():
    torch.manual_seed(0)
    clips = np.random.default_rng(0).integers(0, 255, size=(2, 8, 48, 48, 3), dtype=np.uint8)
    maps = explain.activation_maps(build_backbone("tiny"), clips)
    assert maps.shape == (2, 8, 48, 48) and (maps >= 0).all() and maps.sum() > 0
    masks = np.zeros((2, 8, 48, 48), bool)
    masks[:, :, :24] = True
    uniform = np.ones_like(maps)
    assert explain.mask_share(uniform, masks) == pytest.approx([0.5, 0.5])
    assert explain.mask_share(uniform * masks, masks) == pytest.approx([1.0, 1.0])
    data = DataConfig(crop_size=32, test_crop="center")
    whole = np.zeros((1, 4, 64, 64), bool)
    whole[0, :, 16:24, 16:24] = True  # the crop starts at 16: the top-left corner of the crop
    assert explain.crop_masks(whole, data)[0, :, :8, :8].all() and explain.crop_masks(whole, data).sum() == 4 * 64
    figure = explain.figure(
        [explain.Clip(clips[0], np.arange(8), "a.mp4", 0, "a")], maps[:1], "title", frames=3, shares=[0.4]
    )
    assert figure.size[0] == 4 * (96 + explain.GAP) + explain.GAP
