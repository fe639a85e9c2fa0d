"""A tiny 3D CNN for CPU demos and tests (~0.3M parameters).

Four conv3d-BN-ReLU stages, then a global average pool. Not from the paper: it exists so
that `fame-ray pretrain` finishes in minutes on 2 CPUs. Input B,3,T,H,W; output B,128.
"""

from __future__ import annotations

import torch
from torch import nn


def _stage(in_planes: int, out_planes: int, kernel, stride) -> nn.Sequential:
    padding = tuple(k // 2 for k in kernel)
    return nn.Sequential(
        nn.Conv3d(in_planes, out_planes, kernel, stride=stride, padding=padding, bias=False),
        nn.BatchNorm3d(out_planes),
        nn.ReLU(inplace=True),
    )


class TinyVideoNet(nn.Module):
    """3x3x3 stem at stride (1,2,2), then three 3x3x3 stages that halve the resolution."""

    feature_dim = 128

    def __init__(self):
        super().__init__()
        self.stem = _stage(3, 16, (3, 3, 3), (1, 2, 2))
        self.layer1 = _stage(16, 32, (3, 3, 3), (2, 2, 2))
        self.layer2 = _stage(32, 64, (3, 3, 3), (1, 2, 2))
        self.layer3 = _stage(64, self.feature_dim, (3, 3, 3), (2, 2, 2))
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """B,3,T,H,W -> B,128,T',H',W' (the last stage, after its ReLU; T' = T/4, H' = H/16)."""
        return self.layer3(self.layer2(self.layer1(self.stem(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B,3,T,H,W -> B,128."""
        return self.avgpool(self.feature_map(x)).flatten(1)
