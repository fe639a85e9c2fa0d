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
"""

from __future__ import annotations

import io
import logging

import numpy as np

from fame_ray.storage import Location

log = logging.getLogger(__name__)


class DecodeError(Exception):
    """A video that cannot be read or decoded; the pipeline skips it and counts it."""


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


def decode_clips(video: Location, start_frame: int, end_frame: int, offsets: list[int], frames_per_clip: int, temporal_stride: int, num_threads: int = 1) -> list[np.ndarray]:
    """Decode clips (uint8 T H W C each, size as stored) at the given offsets in one `get_batch`.

    The usable range is clamped to the frames decord actually finds (manifest counts come
    from probing and can be off by a few frames).
    """
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
