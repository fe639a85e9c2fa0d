"""Decoding clips with decord, or PyAV where decord would be wrong: given where each clip starts
(`sampling`), the frames.

Clips are cut from the usable range of a manifest row (`range(start_frame, end_frame)`), clamped
to the frames the decoder finds; which frames a clip at an offset takes, looping in videos shorter
than a clip, is `sampling.clip_indices`.

Videos are `Location`s: local files, or s3:// objects read through fame_ray.storage and
decoded from memory (decord accepts file-like objects).

Frame i is the i-th frame a player shows. Each manifest row names the decoder that reads its
video exactly (`decoder` column, decided once when the video was probed: catalog.probe):
decord for nearly every file; PyAV (`_pyav_clips`) for the AVI and MPEG-TS files with frames
shown after they are decoded and more than one keyframe, which decord seeks wrong. Nothing here
looks at a file to choose.

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
from fame_ray.data.clips.sampling import centre_offset, clip_indices
from fame_ray.data.deadline import DecodeError, DecodeTimeout, abandoned_decodes, with_deadline
from fame_ray.data.manifest import DECODERS, DECORD
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
        raise DecodeError(f"cannot open {video}: {_first_line(error)}") from error


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def decode_clips(
    video: Location, usable: range, offsets: list[int], data: DataConfig, decoder: str, stills: tuple[int, ...] = ()
) -> list[np.ndarray]:
    """Decode clips (uint8 T H W C each, size as stored) at the given offsets into `usable`
    (the manifest row's frames) with data.frames_per_clip frames every data.temporal_stride,
    data.decode_threads decoder threads, by `decoder` (the row's `decoder`: manifest.DECORD, one
    `get_batch`, or manifest.PYAV). `stills`: positions of single frames to decode as well (1 H W C
    each, after the clips, wrapping like a clip's frames; DCLR's static frames), in the same pass.

    The usable range is clamped to the frames the decoder actually finds (manifest counts come
    from probing and can be off by a few frames). With data.decode_timeout_s > 0, a decode that
    takes longer raises DecodeTimeout.
    """
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    if data.decode_timeout_s > 0:
        return with_deadline(
            lambda: _decode_clips(video, usable, offsets, data, decoder, stills), data.decode_timeout_s, str(video)
        )
    return _decode_clips(video, usable, offsets, data, decoder, stills)


def _wanted(start_frame: int, end: int, offsets: list[int], data: DataConfig, stills: tuple[int, ...]) -> list:
    """Frame indices of every clip at `offsets`, then of every still (one frame each)."""
    clips = [clip_indices(start_frame, end, offset, data.frames_per_clip, data.temporal_stride) for offset in offsets]
    return clips + [clip_indices(start_frame, end, still, 1, 1) for still in stills]


def _decode_clips(
    video: Location, usable: range, offsets: list[int], data: DataConfig, decoder: str, stills: tuple[int, ...]
) -> list[np.ndarray]:
    if decoder != DECORD:
        return _pyav_clips(video, usable, offsets, data, stills)
    import decord

    reader = open_video(video, data.decode_threads)
    start_frame, end = usable.start, min(usable.stop, len(reader))
    if end <= start_frame:
        raise DecodeError(f"{video}: no frames in [{usable.start}, {usable.stop}) (video has {len(reader)})")
    clips = _wanted(start_frame, end, offsets, data, stills)
    unique, inverse = np.unique(np.concatenate(clips), return_inverse=True)
    try:
        frames = reader.get_batch(unique.tolist()).asnumpy()
    except (decord.DECORDError, RuntimeError, ValueError) as error:
        raise DecodeError(f"cannot decode {video}: {_first_line(error)}") from error
    return _split(frames, inverse, clips)


def _split(frames: np.ndarray, inverse: np.ndarray, clips: list) -> list[np.ndarray]:
    """The decoded distinct frames back into the clips (and stills) that asked for them."""
    return [frames[part] for part in np.split(inverse, np.cumsum([len(clip) for clip in clips])[:-1])]


def _pyav_clips(
    video: Location, usable: range, offsets: list[int], data: DataConfig, stills: tuple[int, ...] = ()
) -> list[np.ndarray]:
    """`_decode_clips` through PyAV: frame i is the packet with the i-th smallest presentation time."""
    import av

    try:
        source = io.BytesIO(video.read_bytes()) if video.is_s3 else video.uri
        with av.open(source, metadata_errors="ignore") as container:
            stream = container.streams.best("video")
            if stream is None:
                raise DecodeError(f"cannot decode {video}: no video stream")
            stream.thread_count = data.decode_threads
            index = [(packet.pts, packet.is_keyframe) for packet in container.demux(stream) if packet.size]
            start_frame, end = usable.start, min(usable.stop, len(index))
            if end <= start_frame:
                raise DecodeError(f"{video}: no frames in [{usable.start}, {usable.stop}) (video has {len(index)})")
            clips = _wanted(start_frame, end, offsets, data, stills)
            unique, inverse = np.unique(np.concatenate(clips), return_inverse=True)
            frames = _pyav_frames(container, stream, index, unique.tolist())
    except (av.error.FFmpegError, OSError) as error:
        raise DecodeError(f"cannot decode {video}: {_first_line(error)}") from error
    if frames is None:
        raise DecodeError(f"cannot decode {video}: frames missing after a seek")
    return _split(frames, inverse, clips)


def _pyav_frames(container, stream, index: list[tuple[int | None, bool]], wanted: list[int]) -> np.ndarray | None:
    """RGB frames (N H W 3) at the display positions `wanted` (sorted, distinct), given the
    stream's packets (pts, keyframe) in file order; None when a frame does not come out.

    Each run of wanted frames starts with a backward seek to the keyframe shown last at or
    before the first of them, and decodes on, past keyframes, until the next wanted frame has a
    keyframe of its own after the frames decoded so far. Frames that come out before the first
    keyframe of a run are not taken (a seek may land between keyframes). A run that misses its
    first frame (an MPEG-TS seek can land a keyframe late) starts again one keyframe earlier,
    and at last from the file's first byte."""
    if any(pts is None for pts, _ in index):
        return None
    times = sorted(pts for pts, _ in index)
    place = {pts: i for i, pts in enumerate(times)}
    keys = sorted(place[pts] for pts, key in index if key)
    if not keys or keys[0] != 0:
        return None
    found: dict[int, np.ndarray] = {}
    todo = list(wanted)
    back = 0  # keyframes further back than the nearest, after a run that missed its first frame
    while todo:
        first = todo[0]
        nearest = int(np.searchsorted(keys, first, side="right")) - 1
        if nearest - back >= 0:
            container.seek(times[keys[nearest - back]], stream=stream, backward=True)
        elif nearest - back == -1:
            container.seek(0, unsupported_byte_offset=True)  # the first byte: where no seek can land late
        else:
            return None
        _decode_run(container, stream, place, keys, todo, found)
        back = back + 1 if todo and todo[0] == first else 0
    return np.stack([found[i] for i in wanted])


def _decode_run(container, stream, place: dict, keys: list[int], todo: list[int], found: dict) -> None:
    """Decode from where the container was sought, moving the wanted positions it meets from
    `todo` into `found`, until the next wanted one is behind, or nearer a later keyframe."""
    synced = False
    for frame in container.decode(stream):
        synced = synced or frame.key_frame
        position = place.get(frame.pts, -1) if synced else -1
        if position in todo:
            found[position] = frame.to_ndarray(format="rgb24")
            todo.remove(position)
        if not todo or position > todo[0]:
            return
        if position >= 0 and keys[int(np.searchsorted(keys, todo[0], side="right")) - 1] > position + 1:
            return  # a keyframe nearer the next wanted frame: seek there


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
                source.at(row["path"]), usable, [centre_offset(len(usable), data.clip_span)], data, row["decoder"]
            )
        except DecodeError as error:
            log.warning("skipped: %s", error)
            continue
        picked.append((row, clip))
    return picked
