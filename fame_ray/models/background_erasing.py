"""Background Erasing as its code releases it (Wang et al., "Removing the Background by Adding the
Background: Towards Background Robust Self-supervised Video Representation Learning", CVPR 2021,
arXiv 2009.05769; public code FingerRec/BE, `src/Contrastive`).

One step of BE's MoCo (`pt.py::train_be`, `loss/NCE/NCEAverage.py::MemoryMoCo`):
- three clips per video: the anchor and the positive are two augmentations of the SAME segment
  (`data/dataset.py::get_be_items`, lines 365-366); the negative is another segment of the same
  video (lines 355-364);
- the anchor gets BE's static-frame mixing (`GenPositive`: `SpatialMixup` version 2, the caller's
  job, fame_ray.components.augment.background_erasing);
- q = query encoder(anchor), k = key encoder(positive) (no gradient), n = query encoder(negative),
  WITH gradient, in a forward of its own (pt.py:330-337);
- logits [q.k, q.queue, q.n] / T (NCEAverage.py:181-199): the positive first, the queue's
  negatives, then the intra-video negative; softmax cross-entropy with target 0 (NCESoftmaxLoss);
- one pass, no symmetric term; the positive keys enter the queue after the loss (NCEAverage.py:
  223-229); the key encoder follows the query encoder by momentum once per step.

The encoders, queue, momentum update and shuffle-BN are MoCo's (models.moco, this class is
one): the state dict has the same layout, so downstream tasks load a BE checkpoint as any other.
BE's code runs its key encoder without shuffle-BN (commented out in pt.py:333-336); here it
follows `moco.shuffle_bn` like the other methods (docs/recipe.md). The momentum update BE runs
after the optimizer step (`moment_update`) and MoCo's before the keys are computed land on the
same key weights at every step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fame_ray.config import MoCoConfig, ModelConfig
from fame_ray.models.backbones import build_backbone
from fame_ray.models.moco import MoCo, MoCoKeys, MoCoOutput, _top1


class BackgroundErasingMoCo(MoCo):
    """MoCo with BE's one-way loss and its intra-video negative; `forward(anchor, positive,
    negative=...)` is one step."""

    def __init__(self, backbone, dim: int = 128, queue_size: int = 65536, momentum: float = 0.999, **kwargs):
        kwargs.pop("symmetric", None)  # BE's loss is one-way
        super().__init__(backbone, dim, queue_size, momentum, symmetric=False, **kwargs)

    def prepare_keys(
        self,
        view_q: torch.Tensor,
        view_k: torch.Tensor,
        negative: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        micro_batch: int = 0,
    ) -> MoCoKeys:
        """MoCo's once-per-step key side over the anchor and positive (the negative has no key:
        it goes through the query encoder); the arguments in the order the step passes its views."""
        return super().prepare_keys(view_q, view_k, generator, micro_batch)

    def forward(
        self,
        view_q: torch.Tensor,
        view_k: torch.Tensor,
        negative: torch.Tensor | None = None,
        shuffle_generator: torch.Generator | None = None,
        keys: MoCoKeys | None = None,
    ) -> MoCoOutput:
        """view_q (the anchor, frame-mixed), view_k (the positive: the same segment, another
        augmentation), `negative` (another segment of the same video): B,C,T,H,W float,
        normalised. `keys`: this batch's rows of `prepare_keys` (a micro batch); None = prepare
        them here. The loss's logits are B x (1 + K + 1)."""
        if negative is None:
            raise ValueError("Background Erasing needs the intra-video negative clips (negative=...)")
        if keys is None:
            keys = self.prepare_keys(view_q, view_k, generator=shuffle_generator)
        query = self.encoder_q(view_q)
        intra = F.normalize(self.encoder_q(negative).float(), dim=1)
        logits = self._logits(query, keys.first, keys.negatives[0])
        with torch.autocast(device_type=logits.device.type, enabled=False):
            extra = (F.normalize(query.float(), dim=1) * intra).sum(dim=1, keepdim=True) / self.temperature
        logits = torch.cat([logits, extra], dim=1)
        targets = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        return MoCoOutput(F.cross_entropy(logits, targets), _top1(logits), (logits.detach(), logits.detach()))


def background_erasing_for(
    model: ModelConfig, moco: MoCoConfig, generator: torch.Generator | None = None
) -> BackgroundErasingMoCo:
    """BE's MoCo around a fresh `build_backbone(model.arch)`, with the config's model and moco
    sections (`moco.symmetric` and `moco.enqueue` do not apply: one pass, keys enqueued after it)."""
    return BackgroundErasingMoCo(
        build_backbone(model.arch),
        model.embed_dim,
        moco.queue_size,
        moco.momentum,
        temperature=moco.temperature,
        mlp=model.use_mlp_head,
        shuffle_bn=moco.shuffle_bn,
        generator=generator,
    )
