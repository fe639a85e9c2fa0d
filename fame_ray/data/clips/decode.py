"""Decoding clips with decord: given where each clip starts (`sampling`), the frames.

Clips are cut from the usable range of a manifest row (`range(start_frame, end_frame)`), clamped
to the frames decord finds; which frames a clip at an offset takes, looping in videos shorter
than a clip, is `sampling.clip_indices`.

Videos are `Location`s: local files, or s3:// objects read through fame_ray.storage and
decoded from memory (decord accepts file-like objects).

A decode that takes longer than its bound (`DataConfig.decode_timeout_s`) raises
`DecodeTimeout` (fame_ray.data.deadline), a DecodeError the pipeline counts and replaces, instead
of stalling the job.
"""

from __future__ import annotations

import io
import logging

import numpy as np

from fame_ray.config import DataConfig
from fame_ray.data.clips import transforms
from fame_ray.data.clips.sampling import clip_indices, uniform_offsets
from fame_ray.data.deadline import DecodeError, DecodeTimeout, abandoned_decodes, with_deadline
from fame_ray.storage import Location

log = logging.getLogger(__name__)
__all__ = [
    "DecodeError",
    "DecodeTimeout",
    "abandoned_decodes",
    "centre_clips",
    "decode_clips",
    "open_video",
    "with_deadline",
]


def open_video(video: Location, num_threads: int = 1):
    """A decord VideoReader for a local file or an s3:// object (read into memory)."""
    import decord

    try:
        source = io.BytesIO(video.read_bytes()) if video.is_s3 else video.uri
        return decord.VideoReader(source, num_threads=num_threads)
    except (decord.DECORDError, RuntimeError, OSError, ValueError) as error:
        raise DecodeError(
            f"cannot open {video}: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
        ) from error


def decode_clips(video: Location, usable: range, offsets: list[int], data: DataConfig) -> list[np.ndarray]:
    """Decode clips (uint8 T H W C each, size as stored) at the given offsets into `usable`
    (the manifest row's frames) in one `get_batch`, with data.frames_per_clip frames every
    data.temporal_stride, data.decode_threads decoder threads.

    The usable range is clamped to the frames decord actually finds (manifest counts come
    from probing and can be off by a few frames). With data.decode_timeout_s > 0, a decode that
    takes longer raises DecodeTimeout.
    """
    if data.decode_timeout_s > 0:
        return with_deadline(lambda: _decode_clips(video, usable, offsets, data), data.decode_timeout_s, str(video))
    return _decode_clips(video, usable, offsets, data)


def _decode_clips(video: Location, usable: range, offsets: list[int], data: DataConfig) -> list[np.ndarray]:
    import decord

    reader = open_video(video, data.decode_threads)
    start_frame, end = usable.start, min(usable.stop, len(reader))
    if end <= start_frame:
        raise DecodeError(f"{video}: no frames in [{usable.start}, {usable.stop}) (video has {len(reader)})")
    clips = [clip_indices(start_frame, end, offset, data.frames_per_clip, data.temporal_stride) for offset in offsets]
    unique, inverse = np.unique(np.concatenate(clips), return_inverse=True)
    try:
        frames = reader.get_batch(unique.tolist()).asnumpy()
    except (decord.DECORDError, RuntimeError, ValueError) as error:
        raise DecodeError(
            f"cannot decode {video}: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
        ) from error
    return [frames[part] for part in np.split(inverse, len(clips))]


def centre_clips(table, order, count: int, data: DataConfig, source: Location) -> list[tuple[dict, np.ndarray]]:
    """(manifest row, uint8 T H W C clip from the middle of the video) of the first `count`
    videos in `order` (row numbers of the manifest `table`) that decode; a video that does not
    decode is skipped with a warning. Decodes in this process (previews, read-outs)."""
    picked = []
    for index in order:
        if len(picked) == count:
            break
        row = {name: table[name][int(index)].as_py() for name in table.column_names}
        transforms.check_crop_fits(data.crop_size, row["height"], row["width"], row["path"])
        usable = range(row["start_frame"], row["end_frame"])
        try:
            (clip,) = decode_clips(
                source.at(row["path"]), usable, uniform_offsets(len(usable), data.clip_span, 1), data
            )
        except DecodeError as error:
            log.warning("skipped: %s", error)
            continue
        picked.append((row, clip))
    return picked
