"""Video backbones (R(2+1)D-18, R3D-18, I3D, tiny), MoCo, classifier heads, weight loading.

`build_backbone(arch)` returns an nn.Module that maps B,C,T,H,W float (normalised) to
B,feature_dim (global average pooled) and has the attribute `feature_dim`. Parameter names
follow the official FAME backbones (see each module's docstring).
"""

from __future__ import annotations

from torch import nn

from fame_ray.errors import UserError

ARCHS = ("tiny", "r3d_18", "r2plus1d_18", "i3d")


def build_backbone(arch: str) -> nn.Module:
    """A freshly initialised backbone of `arch` (one of ARCHS)."""
    if arch == "tiny":
        from fame_ray.models.tiny import TinyVideoNet

        return TinyVideoNet()
    if arch == "r2plus1d_18":
        from fame_ray.models.resnet3d import r2plus1d_18

        return r2plus1d_18()
    if arch == "r3d_18":
        from fame_ray.models.resnet3d import r3d_18

        return r3d_18()
    if arch == "i3d":
        from fame_ray.models.i3d import I3D

        return I3D()
    raise UserError(f"unknown arch '{arch}'", f"use one of {', '.join(ARCHS)}")
