"""Video ResNets: R(2+1)D-18 (arXiv 1711.11248) and R3D-18, without their classifier.

Parameter names follow the official FAME code's `backbone/r2plus1d.py` (itself torchvision's
`models/video/resnet.py`), so the query encoder of an official checkpoint loads with strict
key matching once `module.encoder_q.` and the projection head (`fc.*`) are stripped:

    stem.0.weight                      R(2+1)D: Conv3d 3->45 (1,7,7); R3D: Conv3d 3->64 (3,7,7)
    stem.1.{weight,bias,running_*}     BatchNorm3d
    stem.3.weight, stem.4.*            R(2+1)D only: Conv3d 45->64 (3,1,1) and its BatchNorm3d
    layerL.B.conv1.0.{0,1,3}.*         R(2+1)D: spatial conv, BN, temporal conv of block B
    layerL.B.conv1.0.weight            R3D: the 3x3x3 conv
    layerL.B.conv1.1.*, conv2.1.*      BatchNorm3d after each (2+1)D / 3D conv
    layerL.0.downsample.{0,1}.*        1x1x1 strided projection and its BatchNorm3d (L >= 2)

The official repository has no R3D-18 constructor (its file lists 'r3d_18' but only defines
`r2plus1d_18`); R3D-18 here uses the same classes with a plain 3x3x3 conv and the
conv-BN-ReLU stem, i.e. torchvision's `r3d_18` names.

Input B,C,T,H,W float (normalised); output B,512 (global average pool over T,H,W);
`feature_map` gives layer4's output B,512,T',H',W' before the pool.
"""

from __future__ import annotations

import torch
from torch import nn


def _middle_planes(in_planes: int, out_planes: int) -> int:
    """(2+1)D mid width that matches a full 3x3x3 conv's parameter count (the paper's rule)."""
    return (in_planes * out_planes * 3 * 3 * 3) // (in_planes * 3 * 3 + 3 * out_planes)


def _conv_2plus1d(in_planes: int, out_planes: int, mid_planes: int, stride: int = 1) -> nn.Module:
    """Spatial (1,3,3) conv, BN, ReLU, temporal (3,1,1) conv; indices 0,1,3 are the names."""
    return nn.Sequential(
        nn.Conv3d(in_planes, mid_planes, (1, 3, 3), stride=(1, stride, stride), padding=(0, 1, 1), bias=False),
        nn.BatchNorm3d(mid_planes),
        nn.ReLU(inplace=True),
        nn.Conv3d(mid_planes, out_planes, (3, 1, 1), stride=(stride, 1, 1), padding=(1, 0, 0), bias=False),
    )


def _conv_3d(in_planes: int, out_planes: int, mid_planes: int, stride: int = 1) -> nn.Module:
    """Plain 3x3x3 conv (mid_planes unused; the signature matches `_conv_2plus1d`)."""
    return nn.Conv3d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two convs with BN and a residual; conv1 = (conv, BN, ReLU), conv2 = (conv, BN)."""

    def __init__(self, in_planes: int, planes: int, conv_builder, stride: int = 1):
        super().__init__()
        # As the official code: one mid width, computed from (in_planes, planes), for both convs.
        mid = _middle_planes(in_planes, planes)
        self.conv1 = nn.Sequential(
            conv_builder(in_planes, planes, mid, stride), nn.BatchNorm3d(planes), nn.ReLU(inplace=True)
        )
        self.conv2 = nn.Sequential(conv_builder(planes, planes, mid), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm3d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv2(self.conv1(x)) + residual)


def _stem_2plus1d() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(3, 45, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
        nn.BatchNorm3d(45),
        nn.ReLU(inplace=True),
        nn.Conv3d(45, 64, (3, 1, 1), stride=1, padding=(1, 0, 0), bias=False),
        nn.BatchNorm3d(64),
        nn.ReLU(inplace=True),
    )


def _stem_3d() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(3, 64, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
        nn.BatchNorm3d(64),
        nn.ReLU(inplace=True),
    )


class VideoResNet(nn.Module):
    """ResNet-18 layout (2,2,2,2 basic blocks by default, widths 64..512) over video, no classifier."""

    feature_dim = 512

    def __init__(self, stem: nn.Module, conv_builder, layers=(2, 2, 2, 2)):
        super().__init__()
        self.stem = stem
        in_planes = 64
        for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if index == 0 else 2
            stage = [BasicBlock(in_planes, planes, conv_builder, stride)]
            stage += [BasicBlock(planes, planes, conv_builder) for _ in range(1, blocks)]
            setattr(self, f"layer{index + 1}", nn.Sequential(*stage))
            in_planes = planes
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        _init_weights(self)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """B,3,T,H,W -> B,512,T',H',W' (layer4's output; T' = T/8, H' = H/16 rounded up)."""
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B,3,T,H,W -> B,512."""
        return self.avgpool(self.feature_map(x)).flatten(1)


def _init_weights(model: nn.Module) -> None:
    """The official (torchvision) init: Kaiming fan-out convs, unit BN, N(0, 0.01) linears."""
    for module in model.modules():
        if isinstance(module, nn.Conv3d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm3d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)


def r2plus1d_18() -> VideoResNet:
    """R(2+1)D-18 as in the official FAME code (`backbone/r2plus1d.py`, `r2plus1d_18`)."""
    return VideoResNet(_stem_2plus1d(), _conv_2plus1d)


def r2plus1d_10() -> VideoResNet:
    """R(2+1)D with one basic block per stage: the net the released DCLR code builds under the
    name `r2plus1d_18` (its `view_resnet.py` passes layers [1, 1, 1, 1]). Same parameter names as
    r2plus1d_18 minus every `layerL.1.*`; here only to load checkpoints of that code (docs/dclr.md)."""
    return VideoResNet(_stem_2plus1d(), _conv_2plus1d, layers=(1, 1, 1, 1))


def r3d_18() -> VideoResNet:
    """R3D-18 (torchvision's `r3d_18` names; the official FAME repo has no R3D)."""
    return VideoResNet(_stem_3d(), _conv_3d)
