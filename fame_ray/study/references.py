"""The published figures a study's table puts beside its own numbers, each with its source.

Only figures whose source can be named are here: the FAME paper's (Ding, Wang, Xiong, Qian, Wang,
"Motion-aware Contrastive Video Representation Learning via Foreground-background Merging",
CVPR 2022) and the official repository's README (github.com/Mark12Ding/FAME, its released I3D
checkpoint finetuned on UCF101). Every figure is a top-1 accuracy or R@1, in percent, of FAME
(MoCo + FAME pretraining): the table shows them beside the 'fame' method, or beside existing
weights evaluated with `pretrained`.
"""

from __future__ import annotations

from dataclasses import dataclass

FAME_PAPER = "FAME paper (Ding et al., CVPR 2022)"
OFFICIAL_README = "official FAME README (released I3D finetuned on UCF101)"
# The methods the figures are figures of.
REFERENCE_METHODS = ("fame", "pretrained")


@dataclass(frozen=True)
class Figure:
    """One published number."""

    task: str
    """'finetune', 'linear' or 'retrieval'."""
    dataset: str
    metric: str
    """The results key it compares with: video_top1 or R@1."""
    value: float
    source: str


@dataclass(frozen=True)
class PaperSetting:
    """A set of figures and the pretraining they come from."""

    arch: str
    pretrain_dataset: str
    figures: tuple[Figure, ...]

    def describe(self) -> str:
        return f"{self.arch} pretrained on {self.pretrain_dataset}"


PAPER = {
    "k400-i3d": PaperSetting(
        "i3d",
        "kinetics400",
        (
            Figure("finetune", "ucf101", "video_top1", 88.6, FAME_PAPER),
            Figure("finetune", "ucf101", "video_top1", 88.9, OFFICIAL_README),
            Figure("finetune", "hmdb51", "video_top1", 61.1, FAME_PAPER),
            Figure("finetune", "diving48", "video_top1", 72.9, FAME_PAPER),
            Figure("retrieval", "ucf101", "R@1", 64.6, FAME_PAPER),
        ),
    ),
    "ucf101-r21d": PaperSetting(
        "r2plus1d_18", "ucf101", (Figure("finetune", "ucf101", "video_top1", 81.2, FAME_PAPER),)
    ),
}


def figures_for(paper: str, method: str, task: str, dataset: str, metric: str) -> list[Figure]:
    """The published figures of this evaluation (none for another method, metric or 'none')."""
    setting = PAPER.get(paper)
    if setting is None or method not in REFERENCE_METHODS:
        return []
    return [f for f in setting.figures if (f.task, f.dataset, f.metric) == (task, dataset, metric)]
