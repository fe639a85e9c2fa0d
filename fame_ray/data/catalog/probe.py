"""Probe videos (frame count, fps, height, width, decoder) in parallel on Ray.

Probing reads a video's packets once with PyAV (`stream_structure`, no decoding), opens it with
decord and decodes its first frame and its last few; it never decodes the whole video. s3://
videos are read through fame_ray.storage and handed to both as an in-memory file. A video that
cannot be read yields a reason instead of a result.

Frame i of a video is the i-th frame a player shows. Which decoder returns exactly that frame
is decided here, once per video, from its stream structure (`decoder_for`), and stored in the
manifest's `decoder` column for the clip path to follow (measured with stamped videos whose
every frame carries its index, tests/stamped.py, and docs/decoding.md):

- decord (the fast path) for every file it reads right;
- PyAV for an AVI or MPEG-TS file whose frames are shown after they are decoded (B-frames, or
  the one-frame delay FFmpeg gives H.264 in AVI) and that has more than one keyframe: these
  two demuxers seek by decoding time, decord by presentation time, so its seeks land on other
  frames, without an error (66 of 75 clips of an H.264 AVI with a keyframe every 16 frames
  came back wrong). With one keyframe decord never seeks and reads such an AVI file right (the
  built-in synthetic videos are written so).

Structures neither reads right are refused with a reason that names the fix, `fame-ray data
transcode` (`refusal`):

- an edit list that hides frames (an MP4 cut with `ffmpeg -ss ... -c copy`): decord counts and
  seeks by every packet of the stream while the decoder drops the hidden ones, so a clip
  reached by a seek comes back early by the number hidden, one read from the start does not;
- open GOPs (a keyframe shown after frames decoded after it: x264's open-gop, x265's default)
  outside AVI and MPEG-TS: decord takes a keyframe's place in the file for its place on screen;
- frames shown after they are decoded in a container other than those measured
  (`REORDER_SAFE_CONTAINERS`, `SEEK_BY_DECODING_TIME`);
- frames shown after they are decoded in an MPEG-TS file with a single keyframe: decord fails
  on its first frames;
- HEVC with B-frame pyramids: decord fails with an error on clips that cross a keyframe;
- a first packet that is not a keyframe, packets without distinct timestamps, or a packet
  count other than decord's: frame positions cannot be trusted.

A file cut short (a partial download) ends in a packet the demuxer flags corrupt; the decoder
fills its frame in from the one before, without an error. The frame count stops before the
first such frame.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass

from fame_ray import runtime
from fame_ray.data import deadline
from fame_ray.data.manifest import DECORD, PYAV
from fame_ray.storage import Location

log = logging.getLogger(__name__)

# At most 16 videos per task (enough to hide task overhead), two tasks per CPU at least; half a
# CPU each: probing waits on I/O and demuxing more than it computes.
TASKS = runtime.ChunkedTasks(task_cpus=0.5, max_chunk=16, tasks_per_cpu=2, crashed="probe crashed")
PROBE_TIMEOUT_S = 120.0  # reading the packets, opening a video and decoding a few frames takes milliseconds


TAIL = 8  # frames decoded in one batch to check the end of a video, as a clip near it would be
# PyAV's demuxer names (a container's name lists its aliases, e.g. 'mov,mp4,m4a,3gp,3g2,mj2').
# Containers whose demuxers seek by decoding time: with frames shown after they are decoded and
# more than one keyframe, decord lands on other frames in them, PyAV's backward seek does not.
SEEK_BY_DECODING_TIME = ("avi", "mpegts")
# Containers where decord seeks right with frames shown after they are decoded (measured).
REORDER_SAFE_CONTAINERS = ("mov", "mp4", "matroska", "webm", "flv")
FIX = "re-encode it with `fame-ray data transcode` (H.264, closed GOPs, no B-frames) and prepare the copy"


@dataclass(frozen=True)
class StreamStructure:
    """What one pass over a video stream's packets (no decoding) says about it."""

    container: str
    """PyAV's format name, e.g. 'mov,mp4,m4a,3gp,3g2,mj2', 'avi', 'matroska,webm'."""
    codec: str
    """The codec's canonical name: 'h264', 'hevc', 'mpeg4', 'vp9', 'av1'..."""
    packets: int
    """Packets holding data: one per frame."""
    hidden: int
    """Packets an edit list hides (flagged discard): in the file, never shown."""
    intact: int
    """Frames shown before the first frame of a corrupt (cut) packet: `packets` when none is."""
    first_is_key: bool
    """The first packet is a keyframe."""
    keyframes: int
    """Packets flagged keyframe: where a decoder can start, so where a seek lands."""
    open_gops: int
    """Keyframes shown later than their place in the file (frames decoded after them are shown before)."""
    delayed: bool
    """Some packet is shown after it is decoded (B-frames, or a decoder delay)."""
    reorder_depth: int
    """The most places a packet is decoded after its place on screen."""
    timestamps_distinct: bool
    """Every packet has a presentation time, and no two share one."""

    def in_container(self, names: tuple[str, ...]) -> bool:
        """Whether the container is one of `names` (any of its aliases)."""
        return bool(set(self.container.split(",")) & set(names))


def stream_structure(source) -> StreamStructure | None:
    """The structure of the video stream decord reads (FFmpeg's best video stream) from one pass
    over its packets with PyAV; None when there is no video stream. `source`: a path or a
    file-like object (read from its start). PyAV's errors propagate."""
    import av

    if not isinstance(source, str):
        source.seek(0)
    with av.open(source, metadata_errors="ignore") as container:
        try:
            stream = container.streams.best("video")
        except ValueError:
            stream = None
        if stream is None:
            return None
        rows = [
            (packet.pts, packet.dts, packet.is_keyframe, packet.is_discard, packet.is_corrupt)
            for packet in container.demux(stream)
            if packet.size
        ]
        container_name, codec = container.format.name, stream.codec.canonical_name
    if not isinstance(source, str):
        source.seek(0)
    return _structure(container_name, codec, rows)


def _structure(container: str, codec: str, rows: list[tuple]) -> StreamStructure:
    """StreamStructure from the packets' (pts, dts, keyframe, discard, corrupt) in file order."""
    stamps = [pts for pts, _, _, _, _ in rows]
    distinct = None not in stamps and len(set(stamps)) == len(stamps)
    order = sorted(range(len(rows)), key=lambda i: (stamps[i] is not None, stamps[i] or 0, i))
    place = [0] * len(rows)  # place on screen of each packet (decord's frame index)
    for shown, decoded in enumerate(order):
        place[decoded] = shown
    corrupt = next((i for i, row in enumerate(rows) if row[4]), None)
    return StreamStructure(
        container=container,
        codec=codec,
        packets=len(rows),
        hidden=sum(row[3] for row in rows),
        intact=len(rows) if corrupt is None else min(place[corrupt:]),
        first_is_key=bool(rows) and rows[0][2],
        keyframes=sum(row[2] for row in rows),
        open_gops=sum(1 for i, row in enumerate(rows) if row[2] and place[i] != i),
        delayed=any(pts is not None and dts is not None and pts != dts for pts, dts, _, _, _ in rows),
        reorder_depth=max((i - place[i] for i in range(len(rows))), default=0),
        timestamps_distinct=distinct,
    )


def decoder_for(structure: StreamStructure) -> str:
    """The decoder whose clips of this video are frame-exact: PYAV for an AVI or MPEG-TS file
    with frames shown after they are decoded (or open GOPs) and more than one keyframe (decord's
    seeks land on other frames there), DECORD for everything else (see the module docstring)."""
    late = structure.delayed or structure.open_gops > 0
    if late and structure.in_container(SEEK_BY_DECODING_TIME) and structure.keyframes > 1:
        return PYAV
    return DECORD


def refusal(structure: StreamStructure, frames: int | None = None) -> str | None:
    """Why decoding with `decoder_for(structure)` would return frames other than the ones their
    indices name, with the fix; None when this structure decodes frame-exactly. `frames`:
    decord's frame count, if known."""
    by_decord = decoder_for(structure) == DECORD
    if structure.hidden:
        return (
            f"an edit list hides {structure.hidden} of its {structure.packets} frames, which decord counts and "
            f"seeks by (clips would come back up to {structure.hidden} frames early): {FIX}"
        )
    if not structure.first_is_key:
        return f"its first frame is not a keyframe (decord counts frames the decoder drops): {FIX}"
    if not structure.timestamps_distinct:
        return f"frames without distinct presentation times (decord orders frames by them): {FIX}"
    if structure.open_gops and by_decord:
        return (
            f"open GOPs ({structure.open_gops} keyframes shown after frames decoded after them; decord returns "
            f"other frames near them): {FIX}"
        )
    if structure.delayed and structure.in_container(("mpegts",)) and structure.keyframes == 1:
        return f"frames shown after they are decoded in MPEG-TS with a single keyframe (decord fails on them): {FIX}"
    measured = REORDER_SAFE_CONTAINERS + SEEK_BY_DECODING_TIME
    if structure.delayed and by_decord and not structure.in_container(measured):
        return (
            f"frames shown after they are decoded (B-frames or a decoder delay) in {structure.container}, "
            f"a container where decord's seeks are not known to land right: {FIX}"
        )
    if structure.codec == "hevc" and structure.reorder_depth >= 2:
        return f"HEVC with B-frame pyramids (decord fails on clips that cross a keyframe): {FIX}"
    if frames is not None and frames != structure.packets:
        return f"decord counts {frames} frames where the stream holds {structure.packets}: {FIX}"
    return None


def decodable_frames(open_reader, count: int) -> int:
    """How many frames really decode: `count` (the reported number) when its last frames decode,
    else the last decodable one found by bisection (a header can promise frames the file does
    not hold; reading past them is what hangs or fails later, in training).

    Each check decodes a window of frames ending at the one checked, in one batch and from a
    fresh reader (`open_reader()`), the way a clip is decoded: a cut-off packet can leave a
    single frame decodable on its own yet break the batch that reads up to it.
    """
    if _decodes(open_reader, count - 1):
        return count
    low, high = -1, count - 1  # frames up to `low` decode (none yet), `high` does not
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if _decodes(open_reader, middle) else (low, middle)
    return low + 1


def _decodes(open_reader, index: int) -> bool:
    try:
        open_reader().get_batch(list(range(max(0, index - TAIL + 1), index + 1))).asnumpy()
        return True
    except Exception:  # decord raises DECORDError, RuntimeError...: the frame is not there
        return False


def _probe(source) -> dict | str:
    import decord

    def open_reader():
        if not isinstance(source, str):
            source.seek(0)
        return decord.VideoReader(source, num_threads=1)

    structure = stream_structure(source)
    if structure is None:
        return "no video stream"
    reason = refusal(structure)
    if reason:
        return reason
    reader = open_reader()
    reported = len(reader)
    if reported < 1:
        return "no frames"
    reason = refusal(structure, reported)
    if reason:
        return reason
    height, width = reader[0].shape[:2]
    fps = float(reader.get_avg_fps())
    del reader
    name = source if isinstance(source, str) else "video"
    if structure.intact < reported:
        log.warning(
            "%s: frame %d comes from a cut or corrupt packet (the decoder makes it up): using %d of %d frames",
            name,
            structure.intact,
            structure.intact,
            reported,
        )
    num_frames = decodable_frames(open_reader, structure.intact) if structure.intact > 0 else 0
    if num_frames < 1:
        return "no frames decode"
    if num_frames < structure.intact:
        log.warning("%s reports %d frames, %d decode: using %d", name, reported, num_frames, num_frames)
    return {
        "num_frames": num_frames,
        "fps": fps if fps > 0 else 25.0,
        "height": height,
        "width": width,
        "decoder": decoder_for(structure),
    }


def probe_video(video: Location, timeout_s: float = PROBE_TIMEOUT_S) -> dict | str:
    """{'num_frames' (checked: its last frame decodes, none comes from a cut packet), 'fps',
    'height', 'width', 'decoder' (manifest.DECORD or PYAV)} of one video, or the reason it cannot
    be read or decoded frame-exactly."""
    try:
        if video.is_s3:
            source = io.BytesIO(video.read_bytes())
        elif not os.path.isfile(video.uri):
            return "missing file"
        else:
            source = video.uri
        result = deadline.with_deadline(lambda: _probe(source), timeout_s, str(video))
    except FileNotFoundError:
        return "missing file"
    except deadline.DecodeTimeout as error:
        return f"unreadable: {error}"
    except Exception as error:  # decord raises DECORDError, RuntimeError, AssertionError...; PyAV FFmpegError
        return f"unreadable: {type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}".rstrip(
            ": "
        )
    if isinstance(result, dict) and (result["height"] < 1 or result["width"] < 1):
        return "no frames"
    return result


def probe_chunk(videos: list[Location]) -> list[dict | str]:
    return [probe_video(video) for video in videos]


def probe_all(videos: list[Location]) -> list[dict | str]:
    """Probe every video in parallel Ray tasks; one result (dict or reason) per URI, in order
    (a task whose worker dies is retried video by video: `runtime.map_chunks`)."""
    if not videos:
        return []
    # A local instance (or the cluster in RAY_ADDRESS); later Ray work in this process reuses it.
    runtime.connect_ray()
    return runtime.map_chunks(probe_chunk, videos, TASKS)
