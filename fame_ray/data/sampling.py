"""Which video every training clip comes from, and where in it: pure, seeded, resumable.

Every epoch is a fresh permutation of ALL the videos, seeded by (seed, epoch), as the official
sampler reshuffles every video every epoch. Step s of a run is step s % steps_per_epoch of epoch
s // steps_per_epoch and takes the next `effective batch` videos of that epoch's permutation; on
`world` workers, rank r takes the r-th block of `per_worker` of them. So the video behind any
(step, rank, slot) is a pure function of the run's seed: a resumed run continues in the epoch
where it stopped, in the same order, and two runs with the same seed and worker count see the
same clips. Clip positions and crops are drawn from a generator seeded by (seed, epoch, video).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np


@functools.lru_cache(maxsize=4)
def epoch_permutation(num_videos: int, seed: int, epoch: int) -> np.ndarray:
    """The order of all videos in `epoch` (int64), the same on every machine for (seed, epoch)."""
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(num_videos)


def clip_rng(seed: int, epoch: int, video: int) -> np.random.Generator:
    """The generator of everything random about one video's clips in one epoch."""
    return np.random.default_rng([seed, epoch, video])


def distinct_offsets(length: int, span: int, count: int, rng: np.random.Generator) -> list[int]:
    """`count` clip offsets in [0, length - span], all different when the video has room for
    that many (the official sampler draws distinct clip starts), else drawn with repeats."""
    positions = max(length - span, 0) + 1
    if positions >= count:
        return [int(v) for v in rng.choice(positions, size=count, replace=False)]
    return [int(v) for v in rng.integers(0, positions, size=count)]


@dataclass(frozen=True)
class EpochSampler:
    """Maps a worker's row (its n-th clip of the run) to (step, epoch, video)."""

    num_videos: int
    steps_per_epoch: int
    per_worker: int
    world_size: int
    rank: int
    seed: int

    @property
    def effective_batch(self) -> int:
        return self.per_worker * self.world_size

    def __post_init__(self):
        if self.effective_batch * self.steps_per_epoch > self.num_videos:
            raise ValueError(f"{self.steps_per_epoch} steps of {self.effective_batch} clips need more than {self.num_videos} videos per epoch")

    def locate(self, step: int, slot: int) -> tuple[int, int]:
        """(epoch, position in that epoch's permutation) of this rank's `slot`-th clip at `step`."""
        epoch, within = divmod(step, self.steps_per_epoch)
        return epoch, within * self.effective_batch + self.rank * self.per_worker + slot

    def video(self, step: int, slot: int) -> tuple[int, int]:
        """(epoch, video index) of this rank's `slot`-th clip at `step`."""
        epoch, position = self.locate(step, slot)
        return epoch, int(epoch_permutation(self.num_videos, self.seed, epoch)[position])

    def replacement(self, step: int, slot: int, attempt: int) -> tuple[int, int]:
        """(epoch, video) to use instead when the video of (step, slot) cannot be decoded:
        first the videos no step of the epoch uses (the leftover of the permutation), then,
        when there are none, the following videos of the same permutation."""
        epoch, position = self.locate(step, slot)
        used = self.steps_per_epoch * self.effective_batch
        leftover = self.num_videos - used
        if leftover:
            spare = used + (position + attempt) % leftover
        else:
            spare = (position + 1 + attempt) % self.num_videos
        return epoch, int(epoch_permutation(self.num_videos, self.seed, epoch)[spare])
