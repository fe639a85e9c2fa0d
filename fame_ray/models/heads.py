"""Classifiers for downstream finetuning and linear probing.

As the official FAME `eval.py`: backbone features -> dropout -> a new Linear classifier. Its
initialisation follows the official model of each backbone: R(2+1)D gets `fc` drawn N(0, 0.01)
with zero bias (eval.py:197-199), I3D keeps PyTorch's default Linear initialisation (its
classifier is a plain `nn.Linear` in backbone/i3d.py:273, never re-initialised); the backbones
the official code does not have (R3D-18, tiny) follow the R(2+1)D rule.

Dropout: 0.7 when finetuning (eval.py:166,189,201). The official linear probe builds R(2+1)D
without it (eval.py:191, drop=False) and I3D with it (eval.py:201), and so does fame-ray. For
the linear probe the backbone is frozen and kept in eval mode (BatchNorm statistics do not
move), so only the classifier learns, whatever mode the training loop sets.
"""

from __future__ import annotations

import torch
from torch import nn

# Backbones whose official classifier keeps PyTorch's default Linear initialisation.
DEFAULT_INIT_ARCHS = ("i3d",)
# Backbones whose official linear probe keeps the dropout before the classifier.
PROBE_DROPOUT_ARCHS = ("i3d",)


class VideoClassifier(nn.Module):
    """backbone (B,C,T,H,W -> B,feature_dim) + dropout + fc: B,C,T,H,W -> B,num_classes logits.

    `init`: 'normal' = fc weights N(0, 0.01), bias 0 (official R(2+1)D); 'default' = PyTorch's
    Linear initialisation (official I3D)."""

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        dropout: float = 0.0,
        frozen: bool = False,
        init: str = "normal",
    ):
        super().__init__()
        if init not in ("normal", "default"):
            raise ValueError(f"init must be 'normal' or 'default', got '{init}'")
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(backbone.feature_dim, num_classes)
        if init == "normal":
            nn.init.normal_(self.fc.weight, 0.0, 0.01)
            nn.init.zeros_(self.fc.bias)
        self.frozen = frozen
        if frozen:
            for param in self.backbone.parameters():
                param.requires_grad = False
            self.backbone.eval()

    def train(self, mode: bool = True) -> VideoClassifier:
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def features(self, clips: torch.Tensor) -> torch.Tensor:
        """B,C,T,H,W -> B,feature_dim (the pooled backbone features, for retrieval)."""
        return self.backbone(clips)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.backbone(clips)))


def classifier_init(arch: str) -> str:
    """How the official code initialises the classifier of `arch` ('default' for I3D, else 'normal')."""
    return "default" if arch in DEFAULT_INIT_ARCHS else "normal"


def build_classifier(
    backbone: nn.Module, num_classes: int, mode: str = "finetune", dropout: float = 0.0, arch: str = ""
) -> VideoClassifier:
    """'finetune': all layers train, with dropout; 'linear': frozen backbone in eval mode, dropout
    for I3D only (as the official probe). `arch` picks the official classifier initialisation."""
    init = classifier_init(arch)
    if mode == "linear":
        probe_dropout = dropout if arch in PROBE_DROPOUT_ARCHS else 0.0
        return VideoClassifier(backbone, num_classes, dropout=probe_dropout, frozen=True, init=init)
    if mode == "finetune":
        return VideoClassifier(backbone, num_classes, dropout=dropout, init=init)
    raise ValueError(f"mode must be 'finetune' or 'linear', got '{mode}'")


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters an optimizer should update (only fc.* in linear mode)."""
    return [param for param in model.parameters() if param.requires_grad]
