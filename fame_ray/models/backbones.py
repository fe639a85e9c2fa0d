"""`build_backbone(arch)`: a freshly initialised video backbone, by name.

Every backbone maps B,C,T,H,W float (normalised) to B,feature_dim (global average pooled), has
the attribute `feature_dim` and a method `feature_map(x)` -> B,feature_dim,T',H',W' (its last
stage before the pool; `forward(x)` is that map average pooled). Parameter names follow the
official FAME backbones (see each module's docstring), so released FAME checkpoints load with
strict key matching; `r2plus1d_10` exists for the released DCLR weights (docs/dclr.md).
"""

from __future__ import annotations

from torch import nn

from fame_ray.config import ARCHS
from fame_ray.errors import UserError
from fame_ray.models.i3d import I3D
from fame_ray.models.resnet3d import r2plus1d_10, r2plus1d_18, r3d_18
from fame_ray.models.tiny import TinyVideoNet

_BUILDERS = {"tiny": TinyVideoNet, "r3d_18": r3d_18, "r2plus1d_18": r2plus1d_18, "i3d": I3D}
# Loading only, not a config.ARCHS choice: the 1-block-per-stage R(2+1)D of the released DCLR code.
_BUILDERS["r2plus1d_10"] = r2plus1d_10


def build_backbone(arch: str) -> nn.Module:
    """A freshly initialised backbone of `arch` (one of config.ARCHS, or r2plus1d_10)."""
    if arch not in _BUILDERS:
        raise UserError(
            f"unknown arch '{arch}'", f"use one of {', '.join(ARCHS)} (or r2plus1d_10 for released DCLR weights)"
        )
    return _BUILDERS[arch]()
