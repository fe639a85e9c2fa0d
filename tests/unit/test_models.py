"""Backbones: shapes, feature_dim, parameter names/shapes of the official FAME backbones."""

import time

import pytest
import torch

from fame_ray.errors import UserError
from fame_ray.models import ARCHS, build_backbone
from fame_ray.models.heads import build_classifier, trainable_parameters
from fame_ray.models.i3d import same_padding


@pytest.mark.parametrize("arch", ARCHS)
def test_output_shape_and_feature_dim(arch):
    torch.manual_seed(0)
    model = build_backbone(arch).eval()
    clips = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        features = model(clips)
    assert features.shape == (1, model.feature_dim)
    assert torch.isfinite(features).all()


@pytest.mark.parametrize("arch", [*ARCHS, "r2plus1d_10"])
def test_feature_map_is_what_forward_pools(arch):
    """forward(x) == global average pool of feature_map(x), bit for bit; the map keeps B and C."""
    torch.manual_seed(0)
    model = build_backbone(arch).eval()
    clips = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        maps = model.feature_map(clips)
        features = model(clips)
    assert maps.shape[:2] == (2, model.feature_dim) and maps.dim() == 5
    assert torch.equal(features, torch.nn.functional.adaptive_avg_pool3d(maps, 1).flatten(1))


def test_feature_dims():
    assert [build_backbone(a).feature_dim for a in ARCHS] == [128, 512, 512, 1024]


def _conv_macs(model, clips):
    """Multiply-accumulates of the model's 3D convolutions on `clips`."""
    total = []

    def hook(module, inputs, output):
        kernel = module.weight[0].numel()  # in_channels/groups * kT * kH * kW
        total.append(output.numel() * kernel)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    with torch.no_grad():
        model(clips)
    for handle in handles:
        handle.remove()
    return sum(total)


def test_tiny_is_small_and_fast():
    torch.manual_seed(0)
    model = build_backbone("tiny")
    params = sum(p.numel() for p in model.parameters())
    assert 100_000 <= params <= 500_000
    clips = torch.randn(8, 3, 8, 64, 64)
    # The compute budget, independent of machine load: about 46M MACs per 8x64x64 clip
    # (forward + backward of batch 8 measured at ~0.05 s on 2 lightly loaded cores).
    assert _conv_macs(model, clips) / 8 < 60e6
    model(clips).sum().backward()  # warm up
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        model(clips).sum().backward()
        best = min(best, time.perf_counter() - start)
    assert best < 5.0  # a loose wall-clock bound: the machine may be shared


def test_r2plus1d_official_names_and_shapes():
    state = build_backbone("r2plus1d_18").state_dict()
    # Names and shapes as the official backbone/r2plus1d.py (torchvision's VideoResNet).
    assert state["stem.0.weight"].shape == (45, 3, 1, 7, 7)
    assert state["stem.3.weight"].shape == (64, 45, 3, 1, 1)
    assert state["layer1.0.conv1.0.0.weight"].shape == (144, 64, 1, 3, 3)
    assert state["layer1.0.conv1.0.3.weight"].shape == (64, 144, 3, 1, 1)
    assert state["layer2.0.conv2.0.0.weight"].shape == (230, 128, 1, 3, 3)
    assert state["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1, 1)
    assert state["layer4.1.conv2.1.running_var"].shape == (512,)
    assert not any(k.startswith("fc") for k in state)
    params = sum(v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k)
    # torchvision's r2plus1d_18 has 31,505,325 parameters with its 400-way fc (205,200).
    assert params == 31_505_325 - 205_200


def test_r2plus1d_10_is_r2plus1d_18_without_the_second_blocks():
    """The released DCLR code's `r2plus1d_18` (layers [1, 1, 1, 1]): r2plus1d_18's names and
    shapes, minus every block 1 of every stage."""
    deep = {k: tuple(v.shape) for k, v in build_backbone("r2plus1d_18").state_dict().items()}
    shallow = {k: tuple(v.shape) for k, v in build_backbone("r2plus1d_10").state_dict().items()}
    assert shallow == {k: s for k, s in deep.items() if not any(k.startswith(f"layer{i}.1.") for i in range(1, 5))}
    assert len(shallow) < len(deep)


def test_r3d_torchvision_names():
    state = build_backbone("r3d_18").state_dict()
    assert state["stem.0.weight"].shape == (64, 3, 3, 7, 7)
    assert state["layer1.0.conv1.0.weight"].shape == (64, 64, 3, 3, 3)
    assert state["layer3.0.downsample.0.weight"].shape == (256, 128, 1, 1, 1)
    params = sum(v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k)
    assert params == 33_371_472 - 205_200  # torchvision r3d_18 minus its fc


def test_i3d_official_names_and_shapes():
    state = build_backbone("i3d").state_dict()
    assert state["conv3d_1a_7x7.conv3d.weight"].shape == (64, 3, 7, 7, 7)
    assert state["conv3d_1a_7x7.batch3d.running_mean"].shape == (64,)
    assert state["conv3d_2c_3x3.conv3d.weight"].shape == (192, 64, 3, 3, 3)
    assert state["mixed_3b.branch_1.1.conv3d.weight"].shape == (128, 96, 3, 3, 3)
    assert state["mixed_3b.branch_3.1.conv3d.weight"].shape == (32, 192, 1, 1, 1)
    assert state["mixed_5c.branch_0.batch3d.weight"].shape == (384,)
    assert "mixed_3b.branch_3.0.conv3d.weight" not in state  # index 0 is the pool
    assert not any(k.startswith(("fc", "id_head")) for k in state)


def test_same_padding_matches_official_rule():
    # kernel 7 stride 2 pads 5: 2 before, 3 after; kernel 3 stride 1 pads 1 on both sides.
    assert same_padding((7, 7, 7), (2, 2, 2)) == (2, 3, 2, 3, 2, 3)
    assert same_padding((1, 3, 3), (1, 2, 2)) == (0, 1, 0, 1, 0, 0)
    assert same_padding((1, 1, 1), (1, 1, 1)) == (0,) * 6


def test_unknown_arch_is_user_error():
    with pytest.raises(UserError, match="unknown arch"):
        build_backbone("resnet50")


def test_linear_probe_freezes_backbone_in_eval_mode():
    model = build_classifier(build_backbone("tiny"), num_classes=5, mode="linear")
    model.train()
    assert not model.backbone.training and model.fc.training
    names = {id(p) for p in trainable_parameters(model)}
    assert names == {id(model.fc.weight), id(model.fc.bias)}
    before = model.backbone.stem[1].running_mean.clone()
    model(torch.randn(2, 3, 8, 32, 32))
    assert torch.equal(before, model.backbone.stem[1].running_mean)


def test_finetune_classifier_trains_everything():
    model = build_classifier(build_backbone("tiny"), num_classes=5, mode="finetune", dropout=0.7)
    assert len(trainable_parameters(model)) == len(list(model.parameters()))
    logits = model(torch.randn(2, 3, 8, 32, 32))
    assert logits.shape == (2, 5)
    assert model.dropout.p == 0.7
