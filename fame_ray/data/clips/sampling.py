"""Which video every training clip comes from, and where in it: pure, seeded, resumable.

Every epoch is a fresh permutation of ALL the videos, seeded by (seed, epoch), as the official
sampler reshuffles every video every epoch. Step s of a run is step s % steps_per_epoch of epoch
s // steps_per_epoch and takes the next `effective_batch` videos of that epoch's permutation;
rank r takes the r-th block of `per_worker_batch` of them. So the video behind any
(step, rank, slot) is a pure function of the run's seed: a resumed run continues in the epoch
where it stopped, in the same order, and two runs with the same seed and worker count see the
same clips. Clip positions and crops are drawn from a generator seeded by (seed, epoch, video).

Where a clip sits in a video: a clip is `frames_per_clip` frames taken every `temporal_stride`
frames, so it covers `clip_span = (frames_per_clip - 1) * temporal_stride + 1` frames, starting
at an offset into the usable range [start_frame, end_frame) of a manifest row (`random_offsets`
for finetuning, `distinct_offsets` for the two clips of pretraining, `uniform_offsets` for
testing). Videos shorter than one clip span loop: frame indices wrap around to start_frame
(index = start + (offset + i * stride) mod length), so a 10-frame video still gives a 16-frame
clip (0, 2, 4, 6, 8, 0, 2, ...). The official loader (torchvision VideoClips) drops such videos;
looping keeps every labelled video usable (`clip_indices`).
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


def clip_indices(
    start_frame: int, end_frame: int, offset: int, frames_per_clip: int, temporal_stride: int
) -> np.ndarray:
    """Frame indices of one clip starting `offset` frames after start_frame (wrapping, see module doc)."""
    length = max(end_frame - start_frame, 1)
    steps = offset + np.arange(frames_per_clip) * temporal_stride
    return start_frame + steps % length


def random_offsets(length: int, span: int, count: int, rng: np.random.Generator) -> list[int]:
    """`count` independent uniform clip offsets in [0, length - span] (0 when the video is shorter)."""
    return [int(v) for v in rng.integers(0, max(length - span, 0) + 1, size=count)]


def centre_offset(length: int, span: int) -> int:
    """Offset of the clip in the middle of a video's usable frames (0 when it is shorter)."""
    return max(length - span, 0) // 2


def uniform_offsets(length: int, span: int, count: int) -> list[int]:
    """`count` uniformly spaced clip offsets from the first to the last possible position."""
    return [int(v) for v in np.linspace(0, max(length - span, 0), count).round()]


def distinct_offsets(length: int, span: int, count: int, rng: np.random.Generator) -> list[int]:
    """`count` clip offsets in [0, length - span], all different when the video has room for
    that many (the official sampler draws distinct clip starts), else drawn with repeats."""
    positions = max(length - span, 0) + 1
    if positions >= count:
        return [int(v) for v in rng.choice(positions, size=count, replace=False)]
    return [int(v) for v in rng.integers(0, positions, size=count)]


@dataclass(frozen=True)
class EpochSampler:
    """Maps a worker's row (its n-th clip of the run) to (step, epoch, video). The batch sizes
    come from the run plan (`pretrain.plan.WorldPlan`), derived there once."""

    num_videos: int
    steps_per_epoch: int
    per_worker_batch: int
    effective_batch: int
    """per_worker_batch x the number of workers."""
    rank: int
    seed: int

    def __post_init__(self):
        if self.effective_batch * self.steps_per_epoch > self.num_videos:
            raise ValueError(
                f"{self.steps_per_epoch} steps of {self.effective_batch} clips need more than "
                f"{self.num_videos} videos per epoch"
            )

    def locate(self, step: int, slot: int) -> tuple[int, int]:
        """(epoch, position in that epoch's permutation) of this rank's `slot`-th clip at `step`."""
        epoch, within = divmod(step, self.steps_per_epoch)
        return epoch, within * self.effective_batch + self.rank * self.per_worker_batch + slot

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
