"""Clip sampling rules and decoding with decord and PyAV (local files, s3:// through a loopback S3 server)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from fame_ray.config import DataConfig
from fame_ray.data.clips import decode, sampling
from fame_ray.data.manifest import DECODERS, DECORD
from fame_ray.storage import Location

FRAMES = 30


def write_video(path, frames=FRAMES, width=64, height=48):
    """Frame t is a flat grey of brightness 8 * t, so decoded frames tell their index."""
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=25)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.options = {"crf": "10"}
    for t in range(frames):
        image = np.full((height, width, 3), 8 * t, np.uint8)
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return str(path)


@pytest.fixture(params=DECODERS)
def decoder(request) -> str:
    """Each decoder a manifest row can name: both read a plain MP4 alike."""
    return request.param


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("videos") / "grey.mp4")


def _data(frames_per_clip: int, temporal_stride: int, threads: int = 1, timeout_s: float = 0.0) -> DataConfig:
    """How the tests cut clips: frames per clip, stride, decoder threads, decode time limit."""
    return DataConfig(
        frames_per_clip=frames_per_clip,
        temporal_stride=temporal_stride,
        decode_threads=threads,
        decode_timeout_s=timeout_s,
    )


def frame_numbers(clip: np.ndarray) -> list[int]:

    return [int(round(frame.mean() / 8)) for frame in clip]


def test_clip_indices_follow_frames_and_stride():
    assert sampling.clip_indices(5, 40, 3, 4, 2).tolist() == [8, 10, 12, 14]


def test_short_video_loops_back_to_the_first_usable_frame():
    assert sampling.clip_indices(0, 5, 0, 4, 2).tolist() == [0, 2, 4, 1]
    assert sampling.clip_indices(10, 13, 0, 5, 1).tolist() == [10, 11, 12, 10, 11]


def test_random_offsets_stay_inside_the_usable_range():
    rng = np.random.default_rng(0)
    offsets = sampling.random_offsets(40, 31, 200, rng)
    assert min(offsets) == 0 and max(offsets) == 9
    assert sampling.random_offsets(10, 31, 3, rng) == [0, 0, 0]


def test_uniform_offsets_span_first_to_last_position():
    assert sampling.uniform_offsets(40, 31, 4) == [0, 3, 6, 9]
    assert sampling.uniform_offsets(40, 31, 1) == [0]
    assert sampling.uniform_offsets(10, 31, 3) == [0, 0, 0]


def test_decode_two_clips_in_one_call(video, decoder):
    first, second = decode.decode_clips(Location.parse(video), range(0, FRAMES), [0, 3], _data(8, 2, 1, 0.0), decoder)
    assert first.shape == second.shape == (8, 48, 64, 3) and first.dtype == np.uint8
    assert frame_numbers(first) == list(range(0, 16, 2))
    assert frame_numbers(second) == list(range(3, 19, 2))


def test_decode_respects_start_frame_and_wraps_short_ranges(video, decoder):
    (clip,) = decode.decode_clips(Location.parse(video), range(20, 24), [1], _data(6, 1, 1, 0.0), decoder)
    assert frame_numbers(clip) == [21, 22, 23, 20, 21, 22]


def test_manifest_frame_count_larger_than_video_is_clamped(video, decoder):
    (clip,) = decode.decode_clips(
        Location.parse(video), range(0, FRAMES + 50), [FRAMES - 4], _data(4, 2, 1, 0.0), decoder
    )
    assert frame_numbers(clip) == [26, 28, 0, 2]


def test_corrupt_and_missing_videos_raise_decode_error(tmp_path, decoder):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"not a video" * 100)
    for path in (corrupt, tmp_path / "missing.mp4"):
        with pytest.raises(decode.DecodeError):
            decode.decode_clips(Location.parse(str(path)), range(0, 10), [0], _data(4, 1, 1, 0.0), decoder)


def test_decode_from_s3_reads_bytes_through_storage(video, bucket, s3_server, decoder):
    uri = f"{bucket}/videos/grey.mp4"
    Location.parse(uri, s3_server).write_bytes(Path(video).read_bytes())
    (remote,) = decode.decode_clips(Location.parse(uri, s3_server), range(0, FRAMES), [2], _data(8, 3, 1, 0.0), decoder)
    (local,) = decode.decode_clips(Location.parse(video), range(0, FRAMES), [2], _data(8, 3, 1, 0.0), decoder)
    assert np.array_equal(remote, local)
    with pytest.raises(decode.DecodeError):
        decode.decode_clips(
            Location.parse(f"{bucket}/videos/absent.mp4", s3_server),
            range(0, FRAMES),
            [0],
            _data(4, 1, 1, 0.0),
            decoder,
        )


def test_a_decode_that_hangs_is_cut_off_and_the_next_one_works(video, tmp_path):
    """A FIFO nobody writes to: decord blocks forever opening it, as on a file that never
    delivers its frames (decord issue 373). The bound turns that into a skipped video."""
    import os
    import threading
    import time

    fifo = tmp_path / "never.mp4"
    os.mkfifo(fifo)
    started = time.time()
    with pytest.raises(decode.DecodeTimeout, match="longer than 1s"):
        decode.decode_clips(Location.parse(str(fifo)), range(0, 40), [0], _data(4, 1, 1, 1.0), DECORD)
    assert time.time() - started < 5
    assert decode.abandoned_decodes() >= 1
    (clip,) = decode.decode_clips(Location.parse(video), range(0, FRAMES), [0], _data(4, 2, 1, 10.0), DECORD)
    assert frame_numbers(clip) == [0, 2, 4, 6]
    # Release the abandoned thread: a writer that closes at once gives the reader EOF.
    threading.Thread(target=lambda: open(fifo, "wb").close(), daemon=True).start()


def _decode_in_child(video: str) -> None:
    """A forked child's decode under a 10 s bound: exit 0 when it delivers the clip."""
    (clip,) = decode.decode_clips(Location.parse(video), range(0, FRAMES), [0], _data(4, 2, 1, 10.0), DECORD)
    raise SystemExit(0 if frame_numbers(clip) == [0, 2, 4, 6] else 1)


def test_a_forked_child_decodes_under_a_bound_after_its_parent_did(video):
    """A torch DataLoader worker is a fork of a process whose decode thread already runs: the
    child gets a watchdog of its own, instead of queueing for a thread fork did not copy."""
    import multiprocessing
    import time

    decode.decode_clips(Location.parse(video), range(0, FRAMES), [0], _data(4, 2, 1, 10.0), DECORD)
    child = multiprocessing.get_context("fork").Process(target=_decode_in_child, args=(video,))
    started = time.time()
    child.start()
    child.join(30)
    assert child.exitcode == 0 and time.time() - started < 10


def test_probing_counts_only_the_frames_that_decode(tmp_path):
    """A file cut short after its header promised every frame (a partial download of an MP4
    whose index sits at the front): decord counts the half-written last frame, which does not
    decode. The manifest gets the frames that really do."""
    import av
    import decord

    from fame_ray.data.catalog import probe

    path = tmp_path / "front_index.mp4"
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        rng = np.random.default_rng(0)
        for _ in range(40):  # noise: large packets, so a cut lands inside one
            for packet in stream.encode(
                av.VideoFrame.from_ndarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), format="rgb24")
            ):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert probe.probe_video(Location.parse(str(path)))["num_frames"] == 40
    data, cut = path.read_bytes(), tmp_path / "cut.mp4"
    for share in (0.5, 0.55, 0.6, 0.45):
        cut.write_bytes(data[: int(len(data) * share)])
        reported = len(decord.VideoReader(str(cut)))
        if not probe._decodes(lambda: decord.VideoReader(str(cut)), reported - 1):
            break
    else:
        pytest.fail("no cut left a half-written last frame")
    found = probe.probe_video(Location.parse(str(cut)))
    assert 0 < found["num_frames"] < reported
    assert found["incomplete"].startswith(  # the index at the front still lists all 40
        f"kept with its {found['num_frames']} whole frames of 40 (its header promises 40 frames where {reported}"
    )
    (clip,) = decode.decode_clips(
        Location.parse(str(cut)),
        range(0, found["num_frames"]),
        [found["num_frames"] - 4],
        _data(4, 1, 1, 0.0),
        found["decoder"],
    )
    assert clip.shape == (4, 120, 160, 3)
