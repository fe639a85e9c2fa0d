"""I3D: Inception-v1 inflated to 3D (Carreira & Zisserman, arXiv 1705.07750), no classifier.

Module names follow the official FAME code's `backbone/i3d.py` (class `I3D`), so its query
encoder loads with strict key matching once `module.encoder_q.` and the projection head
(`id_head.*`) are stripped:

    conv3d_1a_7x7.conv3d.weight, conv3d_1a_7x7.batch3d.*      a Unit3D: conv (no bias) + BN
    conv3d_2b_1x1.*, conv3d_2c_3x3.*
    mixed_{3b,3c,4b,4c,4d,4e,4f,5b,5c}.branch_0.{conv3d,batch3d}.*
        .branch_1.{0,1}.*, .branch_2.{0,1}.*   (1x1x1 then 3x3x3 Unit3Ds)
        .branch_3.1.*                          (index 0 is the max pool, no parameters)

The official I3D has no `fc` in pretraining: its head `id_head` is AdaptiveAvgPool3d,
Flatten, Linear(1024, 1024), ReLU, Linear(1024, 128), L2-normalise, so its trained keys are
`id_head.2.*` and `id_head.4.*`: an MLP head, even though the official train.py sets
`mlp=False` for I3D (that flag only swaps a ResNet's `fc`).

Padding reproduces the official 'SAME' rule: pad k - s in total per dimension (less on the
leading side), regardless of the input size; zeros before the max pools (inputs are >= 0
after ReLU). Input B,3,T,H,W; output B,1024.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def same_padding(kernel, stride) -> tuple[int, ...]:
    """F.pad amounts (W left/right, H top/bottom, T front/back) of the official 'SAME' rule."""
    pads = []
    for k, s in zip(reversed(kernel), reversed(stride)):
        total = max(k - s, 0)
        pads += [total // 2, total - total // 2]
    return tuple(pads)


class Unit3D(nn.Module):
    """Conv3d (no bias, official 'SAME' padding) + BatchNorm3d + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel=(1, 1, 1), stride=(1, 1, 1)):
        super().__init__()
        pads = same_padding(kernel, stride)
        symmetric = all(p == pads[0] for p in pads)
        # Symmetric padding goes into the conv, as the official code does; else an explicit pad.
        self.pad = None if symmetric else pads
        self.conv3d = nn.Conv3d(
            in_channels, out_channels, kernel, stride=stride, padding=pads[0] if symmetric else 0, bias=False
        )
        self.batch3d = nn.BatchNorm3d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = F.pad(x, self.pad)
        return F.relu(self.batch3d(self.conv3d(x)))


class MaxPoolSame(nn.Module):
    """Zero pad ('SAME' rule) then MaxPool3d with ceil_mode, as the official MaxPool3dTFPadding."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.pads = same_padding(kernel, stride)
        self.pool = nn.MaxPool3d(kernel, stride, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.pad(x, self.pads))


class Mixed(nn.Module):
    """Inception block; widths = (b0, b1 reduce, b1, b2 reduce, b2, b3 pool proj)."""

    def __init__(self, in_channels: int, widths):
        super().__init__()
        self.branch_0 = Unit3D(in_channels, widths[0])
        self.branch_1 = nn.Sequential(Unit3D(in_channels, widths[1]), Unit3D(widths[1], widths[2], (3, 3, 3)))
        self.branch_2 = nn.Sequential(Unit3D(in_channels, widths[3]), Unit3D(widths[3], widths[4], (3, 3, 3)))
        self.branch_3 = nn.Sequential(MaxPoolSame((3, 3, 3), (1, 1, 1)), Unit3D(in_channels, widths[5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch_0(x), self.branch_1(x), self.branch_2(x), self.branch_3(x)], 1)


# Inception-v1 widths, as in the official I3D (and the DeepMind release).
_MIXED = {
    "mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


class I3D(nn.Module):
    """Inception-v1 I3D trunk up to mixed_5c, then a global average pool."""

    feature_dim = 1024

    def __init__(self):
        super().__init__()
        self.conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.maxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.conv3d_2b_1x1 = Unit3D(64, 64)
        self.conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.maxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.maxPool3d_4a_3x3 = MaxPoolSame((3, 3, 3), (2, 2, 2))
        self.maxPool3d_5a_2x2 = MaxPoolSame((2, 2, 2), (2, 2, 2))
        for name, (in_channels, widths) in _MIXED.items():
            setattr(self, name, Mixed(in_channels, widths))
        self.avgpool = nn.AdaptiveAvgPool3d(1)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """B,3,T,H,W -> B,1024,T',H',W' (mixed_5c's output; T' = T/8, H' = H/32 rounded up)."""
        x = self.maxPool3d_2a_3x3(self.conv3d_1a_7x7(x))
        x = self.maxPool3d_3a_3x3(self.conv3d_2c_3x3(self.conv3d_2b_1x1(x)))
        x = self.maxPool3d_4a_3x3(self.mixed_3c(self.mixed_3b(x)))
        for name in ("mixed_4b", "mixed_4c", "mixed_4d", "mixed_4e", "mixed_4f"):
            x = getattr(self, name)(x)
        return self.mixed_5c(self.mixed_5b(self.maxPool3d_5a_2x2(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B,3,T,H,W -> B,1024."""
        return self.avgpool(self.feature_map(x)).flatten(1)
