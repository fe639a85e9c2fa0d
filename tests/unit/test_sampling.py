"""Which video each training clip comes from: every epoch a fresh permutation of all videos,
exact resume, reproducible from the seed; distinct clip positions."""

from __future__ import annotations

import numpy as np
import pytest

from fame_ray.data.clips import sampling


def _sampler(num_videos=23, per_worker=4, world=2, rank=0, seed=0):
    steps_per_epoch = num_videos // (per_worker * world)
    return sampling.EpochSampler(num_videos, steps_per_epoch, per_worker, per_worker * world, rank, seed)


def _epoch_videos(num_videos, per_worker, world, seed, epoch):
    """Every video the whole run (all ranks) uses in `epoch`, in order."""
    videos = []
    for step in range(epoch * (num_videos // (per_worker * world)), (epoch + 1) * (num_videos // (per_worker * world))):
        for rank in range(world):
            sampler = _sampler(num_videos, per_worker, world, rank, seed)
            videos += [sampler.video(step, slot)[1] for slot in range(per_worker)]
    return videos


def test_every_epoch_is_a_new_permutation_of_all_videos():
    first, second = _epoch_videos(40, 4, 2, 0, 0), _epoch_videos(40, 4, 2, 0, 1)
    assert sorted(first) == sorted(second) == list(range(40))  # 40 = 5 steps x 8: all used
    assert first != second
    # Not the same blocks in another order: the neighbourhoods change too.
    pairs = {frozenset(first[i : i + 4]) for i in range(0, 40, 4)}
    assert pairs != {frozenset(second[i : i + 4]) for i in range(0, 40, 4)}


def test_no_video_twice_in_an_epoch_and_ranks_do_not_overlap():
    videos = _epoch_videos(23, 4, 2, 3, 2)
    assert len(videos) == 16 and len(set(videos)) == 16


def test_the_same_seed_gives_the_same_clips_and_another_seed_does_not():
    assert _epoch_videos(23, 4, 2, 7, 0) == _epoch_videos(23, 4, 2, 7, 0)
    assert _epoch_videos(23, 4, 2, 7, 0) != _epoch_videos(23, 4, 2, 8, 0)


def test_a_resumed_run_continues_in_its_epoch():
    sampler = _sampler()
    assert sampler.video(5, 1)[0] == 5 // sampler.steps_per_epoch == 2
    # A fresh sampler (a restarted worker) maps the same step to the same video.
    assert _sampler().video(5, 1) == sampler.video(5, 1)


def test_replacements_come_from_the_epoch_leftovers_first():
    sampler = _sampler(num_videos=23)
    used = set(_epoch_videos(23, 4, 2, 0, 0))
    epoch, spare = sampler.replacement(0, 0, 0)
    assert epoch == 0 and spare not in used
    full = _sampler(num_videos=16)
    assert full.replacement(0, 0, 0)[1] != full.video(0, 0)[1]


def test_a_batch_larger_than_the_dataset_is_refused():
    with pytest.raises(ValueError):
        sampling.EpochSampler(10, 2, 4, 8, 0, 0)


@pytest.mark.parametrize("length, span", [(40, 31), (32, 31), (100, 16)])
def test_two_clip_positions_differ_whenever_the_video_has_room(length, span):
    for seed in range(50):
        first, second = sampling.distinct_offsets(length, span, 2, np.random.default_rng(seed))
        assert first != second and min(first, second) >= 0 and max(first, second) <= length - span


def test_a_video_with_one_position_repeats_it():
    assert sampling.distinct_offsets(31, 31, 2, np.random.default_rng(0)) == [0, 0]
    assert sampling.distinct_offsets(10, 31, 2, np.random.default_rng(0)) == [0, 0]


def test_stream_segments_end_at_every_epoch_and_after_at_most_the_segment_length():
    from fame_ray.config import DataConfig
    from fame_ray.data.clips.pipeline import PretrainShard
    from fame_ray.storage import Location

    sampler = sampling.EpochSampler(40, 5, 8, 8, 0, 0)  # 5 steps per epoch
    shard = PretrainShard(Location.parse("/nowhere.parquet"), DataConfig(), sampler, 3, 17, masks=True)
    assert shard.segments(steps_per_segment=4) == [
        range(3, 5),
        range(5, 9),
        range(9, 10),
        range(10, 14),
        range(14, 15),
        range(15, 17),
    ]
    assert [step for segment in shard.segments() for step in segment] == list(range(3, 17))
