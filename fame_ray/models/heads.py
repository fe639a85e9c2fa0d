"""Classifiers for downstream finetuning and linear probing.

As the official FAME `eval.py`: backbone features -> dropout (official finetune: 0.7) ->
a new Linear classifier initialised N(0, 0.01) with zero bias. For the linear probe the
backbone is frozen and kept in eval mode (BatchNorm statistics do not move), so only the
classifier learns, whatever mode the training loop sets.
"""

from __future__ import annotations

import torch
from torch import nn


class VideoClassifier(nn.Module):
    """backbone (B,C,T,H,W -> B,feature_dim) + dropout + fc: B,C,T,H,W -> B,num_classes logits."""

    def __init__(self, backbone: nn.Module, num_classes: int, dropout: float = 0.0, frozen: bool = False):
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(backbone.feature_dim, num_classes)
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


def build_classifier(
    backbone: nn.Module, num_classes: int, mode: str = "finetune", dropout: float = 0.0
) -> VideoClassifier:
    """'finetune': all layers train, with dropout; 'linear': frozen backbone in eval mode, no dropout."""
    if mode == "linear":
        return VideoClassifier(backbone, num_classes, dropout=0.0, frozen=True)
    if mode == "finetune":
        return VideoClassifier(backbone, num_classes, dropout=dropout)
    raise ValueError(f"mode must be 'finetune' or 'linear', got '{mode}'")


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters an optimizer should update (only fc.* in linear mode)."""
    return [param for param in model.parameters() if param.requires_grad]
