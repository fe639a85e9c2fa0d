"""Video backbones (R(2+1)D-18, R3D-18, I3D, tiny), MoCo, classifier heads, weight loading.

`fame_ray.models.backbones.build_backbone(arch)` builds a backbone by name; `moco` wraps one
into the query/key encoders and queue; `heads` adds downstream classifiers; `loading` reads
pretrained weights (fame-ray checkpoints and the official FAME `.pth`).
"""

from fame_ray.config import ARCHS
from fame_ray.models.backbones import build_backbone

__all__ = ["ARCHS", "build_backbone"]
