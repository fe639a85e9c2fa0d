"""A read-out while pretraining runs: how well the encoder's features tell the dataset's classes
apart, every `train.readout_every` steps, on rank 0.

MoCo's own numbers (the loss and the contrastive acc@1 of the instance task) stop tracking what
the encoder learns once its features group videos by class: same-class keys in the queue then
look like positives, so acc@1 falls while the features improve. This read-out follows the
features themselves, with the linear probe of `fame_ray.eval.probe` (the one the end-of-run
read-out and the background-bias experiment use): fitted on the frozen backbone's pooled features
of training videos, tested on held-out ones. The centre clips are decoded once, when the worker
starts; each read-out is one forward pass over them in eval mode (no gradients, BatchNorm
statistics untouched) and one L-BFGS fit. At step 0 it reads out the randomly initialised
encoder: the baseline the later read-outs are compared with.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from fame_ray.components.augment import to_input
from fame_ray.config import PretrainConfig
from fame_ray.data import manifest
from fame_ray.data.clips import decode, transforms
from fame_ray.eval.probe import linear_probe
from fame_ray.storage import Location

log = logging.getLogger(__name__)
# Videos of each subset the read-out decodes (fewer when the subset has fewer): the demo's whole
# dataset (448 + 192 videos), decoded in a few seconds at its clip size.
VIDEOS_PER_SUBSET = 512
BATCH = 64


def _clips(location: Location, cfg: PretrainConfig, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 N C T H W centre clips (test crop) of up to VIDEOS_PER_SUBSET videos of a manifest, and labels."""
    table = manifest.read(location)
    order = np.random.default_rng(seed).permutation(table.num_rows)
    picked = decode.centre_clips(table, order, VIDEOS_PER_SUBSET, cfg.data, location)
    if not picked:
        return torch.zeros(0, dtype=torch.uint8), torch.zeros(0, dtype=torch.long)
    clips = [
        np.ascontiguousarray(transforms.eval_crop(clip, cfg.data.crop_size, cfg.data.test_crop)) for _, clip in picked
    ]
    labels = torch.tensor([row["label"] for row, _ in picked], dtype=torch.long)
    return torch.from_numpy(np.stack(clips)).permute(0, 4, 1, 2, 3).contiguous(), labels


class FeatureReadout:
    """The clips of the read-out, decoded once; `__call__(backbone)` -> linear-probe accuracy in [0, 1]."""

    def __init__(self, cfg: PretrainConfig, train_manifest: Location, test_manifest: Location, device: torch.device):
        self.device = device
        self.train, self.train_labels = _clips(train_manifest, cfg, cfg.train.seed)
        self.test, self.test_labels = _clips(test_manifest, cfg, cfg.train.seed + 1)
        log.info("read-out every %d steps: a linear probe of %d training and %d held-out videos' features",
                 cfg.train.readout_every, len(self.train_labels), len(self.test_labels))  # fmt: skip

    @torch.no_grad()
    def features(self, backbone: nn.Module, clips: torch.Tensor) -> torch.Tensor:
        return torch.cat([backbone(to_input(chunk, self.device)).float().cpu() for chunk in clips.split(BATCH)])

    def __call__(self, backbone: nn.Module) -> float:
        """Linear-probe accuracy of `backbone`'s features (NaN when a subset has no decodable video)."""
        if not len(self.train_labels) or not len(self.test_labels):
            return float("nan")
        was_training = backbone.training
        backbone.eval()
        try:
            train, test = self.features(backbone, self.train), self.features(backbone, self.test)
        finally:
            backbone.train(was_training)
        return linear_probe(train.numpy(), self.train_labels.numpy(), test.numpy(), self.test_labels.numpy())
