"""Clip sampling and decoding with decord.

A clip is `frames_per_clip` frames taken every `temporal_stride` frames, so it covers
`clip_span = (frames_per_clip - 1) * temporal_stride + 1` frames of the video. Clips are
cut from the usable range [start_frame, end_frame) of a manifest row.

Videos shorter than one clip span loop: frame indices wrap around to start_frame
(index = start + (offset + i * stride) mod length), so a 10-frame video still gives a
16-frame clip (0, 2, 4, 6, 8, 0, 2, ...). The official loader (torchvision VideoClips)
drops such videos; looping keeps every labelled video usable and is documented here.

Videos are `Location`s: local files, or s3:// objects read through fame_ray.storage and
decoded from memory (decord accepts file-like objects).

A decode that takes longer than its bound (`DataConfig.decode_timeout_s`) raises
`DecodeTimeout`, a DecodeError the pipeline counts and replaces, instead of stalling the job:
decord can block forever inside FFmpeg (decord issue 373; a file that never delivers its bytes
does the same). The decode runs in a helper thread (decord calls release the GIL), which is
abandoned when it overruns; the Ray Data tasks that decode are recycled every few hundred calls
(`pipeline.TASK_CALLS`), so an abandoned thread or decord's slow memory growth (issues 157,
208) never outlives its process for long.
"""

from __future__ import annotations

import concurrent.futures
import io
import logging
import threading

import numpy as np

from fame_ray.storage import Location

log = logging.getLogger(__name__)


class DecodeError(Exception):
    """A video that cannot be read or decoded; the pipeline skips it and counts it."""


class DecodeTimeout(DecodeError):
    """A decode that ran past its bound (its thread is abandoned, the video skipped)."""


class _Watchdog:
    """Runs decodes in one helper thread per process and gives up on one that overruns."""

    def __init__(self):
        self.lock = threading.Lock()
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fame-ray-decode")
        self.abandoned = 0

    def run(self, fn, timeout_s: float, what: str):
        with self.lock:
            executor = self.executor
        future = executor.submit(fn)
        try:
            return future.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            with self.lock:
                # The thread is stuck inside the decoder: later decodes get a fresh one.
                if self.executor is executor:
                    self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fame-ray-decode")
                    executor.shutdown(wait=False, cancel_futures=True)
                self.abandoned += 1
            raise DecodeTimeout(f"{what}: decoding took longer than {timeout_s:g}s (skipped; raise data.decode_timeout_s if the storage is slow)") from None


_WATCHDOG = _Watchdog()


def with_deadline(fn, timeout_s: float, what: str):
    """fn() in the decode thread; DecodeTimeout when it takes longer than `timeout_s`."""
    return _WATCHDOG.run(fn, timeout_s, what)


def abandoned_decodes() -> int:
    """Decodes of this process that overran their bound (their threads are still blocked)."""
    return _WATCHDOG.abandoned


def clip_indices(start_frame: int, end_frame: int, offset: int, frames_per_clip: int, temporal_stride: int) -> np.ndarray:
    """Frame indices of one clip starting `offset` frames after start_frame (wrapping, see module doc)."""
    length = max(end_frame - start_frame, 1)
    steps = offset + np.arange(frames_per_clip) * temporal_stride
    return start_frame + steps % length


def random_offsets(length: int, span: int, count: int, rng: np.random.Generator) -> list[int]:
    """`count` independent uniform clip offsets in [0, length - span] (0 when the video is shorter)."""
    return [int(v) for v in rng.integers(0, max(length - span, 0) + 1, size=count)]


def uniform_offsets(length: int, span: int, count: int) -> list[int]:
    """`count` uniformly spaced clip offsets from the first to the last possible position."""
    return [int(v) for v in np.linspace(0, max(length - span, 0), count).round()]


def open_video(video: Location, num_threads: int = 1):
    """A decord VideoReader for a local file or an s3:// object (read into memory)."""
    import decord

    try:
        source = io.BytesIO(video.read_bytes()) if video.is_s3 else video.uri
        return decord.VideoReader(source, num_threads=num_threads)
    except (decord.DECORDError, RuntimeError, OSError, ValueError) as error:
        raise DecodeError(f"cannot open {video}: {str(error).splitlines()[0] if str(error) else type(error).__name__}") from error


def decode_clips(video: Location, start_frame: int, end_frame: int, offsets: list[int], frames_per_clip: int, temporal_stride: int,
                 num_threads: int = 1, timeout_s: float = 0.0) -> list[np.ndarray]:
    """Decode clips (uint8 T H W C each, size as stored) at the given offsets in one `get_batch`.

    The usable range is clamped to the frames decord actually finds (manifest counts come
    from probing and can be off by a few frames). With `timeout_s` > 0, a decode that takes
    longer raises DecodeTimeout.
    """
    if timeout_s > 0:
        return with_deadline(lambda: _decode_clips(video, start_frame, end_frame, offsets, frames_per_clip, temporal_stride, num_threads), timeout_s, str(video))
    return _decode_clips(video, start_frame, end_frame, offsets, frames_per_clip, temporal_stride, num_threads)


def _decode_clips(video: Location, start_frame: int, end_frame: int, offsets: list[int], frames_per_clip: int, temporal_stride: int, num_threads: int) -> list[np.ndarray]:
    import decord

    reader = open_video(video, num_threads)
    end = min(end_frame, len(reader))
    if end <= start_frame:
        raise DecodeError(f"{video}: no frames in [{start_frame}, {end_frame}) (video has {len(reader)})")
    clips = [clip_indices(start_frame, end, offset, frames_per_clip, temporal_stride) for offset in offsets]
    unique, inverse = np.unique(np.concatenate(clips), return_inverse=True)
    try:
        frames = reader.get_batch(unique.tolist()).asnumpy()
    except (decord.DECORDError, RuntimeError, ValueError) as error:
        raise DecodeError(f"cannot decode {video}: {str(error).splitlines()[0] if str(error) else type(error).__name__}") from error
    return [frames[part] for part in np.split(inverse, len(clips))]
