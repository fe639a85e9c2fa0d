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
  frames, without an error (20 of 26 clips of a stamped H.264 AVI with a keyframe every 24
  frames came back wrong). With one keyframe and no B-frames (the one-frame delay of H.264 in AVI)
  decord never seeks and reads such a file right (the built-in synthetic videos are written so);
  with B-frames it returned the last frames of a clip two frames early once under load, so those
  files take PyAV too.

Structures neither reads right are refused with a reason that names the fix, `fame-ray data
transcode` (`refusal`):

- an edit list that hides frames (an MP4 cut with `ffmpeg -ss ... -c copy`): decord counts and
  seeks by every packet of the stream while the decoder drops the hidden ones, so a clip
  reached by a seek comes back early by the number hidden, one read from the start does not;
- decoding times that go backwards (MPEG-TS files joined end to end, a reset clock): players
  show the packets in file order, decord and the PyAV path order frames by presentation time,
  which puts the later part's frames among or before the earlier part's;
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
fills its frame in from the one before (MPEG-4 Part 2), without an error, or refuses the
packet (H.264). The frame count stops before the first such frame, and the result says why
the video holds fewer frames than it claims (`shortfall`): prepare lists such videos in its
report, beside the refused ones. PyAV decodes such a file: decord's demuxer runs ahead of its
decoder thread, so it sends the cut packet while a clip near the end is still being decoded,
and that clip fails or not with the timing (clips ending 4 frames before the cut of an H.264
file failed 1 time in 40 on a loaded 2-core machine); PyAV sends no packet after the last
frame a clip needs.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

from fame_ray import runtime
from fame_ray.data import deadline
from fame_ray.data.manifest import DECORD, PYAV
from fame_ray.storage import Location

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
SHORT_FIX = (
    "fetch the whole file again for the rest, or write a copy whose header says what it holds with "
    "`fame-ray data transcode` and prepare the copy"
)


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
    promised: int = 0
    """Frames the container's header promises (AVI's frame count, MP4's sample count); 0 when it says none."""
    backwards: int = 0
    """Packets whose decoding time is earlier than the one before theirs (a concatenation, a reset clock)."""

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
        container_name, codec, promised = container.format.name, stream.codec.canonical_name, stream.frames
    if not isinstance(source, str):
        source.seek(0)
    return _structure(container_name, codec, rows, max(promised, 0))


def _structure(container: str, codec: str, rows: list[tuple], promised: int = 0) -> StreamStructure:
    """StreamStructure from the packets' (pts, dts, keyframe, discard, corrupt) in file order and
    the frame count the header promises (0: none)."""
    stamps = [pts for pts, _, _, _, _ in rows]
    distinct = None not in stamps and len(set(stamps)) == len(stamps)
    order = sorted(range(len(rows)), key=lambda i: (stamps[i] is not None, stamps[i] or 0, i))
    place = [0] * len(rows)  # place on screen of each packet (decord's frame index)
    for shown, decoded in enumerate(order):
        place[decoded] = shown
    corrupt = next((i for i, row in enumerate(rows) if row[4]), None)
    decoding = [dts for _, dts, _, _, _ in rows if dts is not None]
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
        promised=promised,
        backwards=sum(after < before for before, after in zip(decoding, decoding[1:])),
    )


def decoder_for(structure: StreamStructure) -> str:
    """The decoder whose clips of this video are frame-exact: PYAV for an AVI or MPEG-TS file
    with frames shown after they are decoded (or open GOPs) and more than one keyframe (decord's
    seeks land on other frames there) or with B-frames (frames reordered: decord's last frames
    of a one-keyframe AVI came back two frames early in one of three suite runs, under load),
    and for a file cut inside a packet (decord's reading ahead
    reaches the cut packet and fails clips near the end, or not, depending on thread timing),
    DECORD for everything else (see the module docstring)."""
    late = structure.delayed or structure.open_gops > 0
    seeks_or_reorders = structure.keyframes > 1 or structure.reorder_depth > 0
    if late and structure.in_container(SEEK_BY_DECODING_TIME) and seeks_or_reorders:
        return PYAV
    if structure.intact < structure.packets:
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
    if structure.backwards:
        return (
            f"its decoding times go backwards at {structure.backwards} packets (files joined end to end, or a reset "
            f"clock: frames would be ordered by times other than the order a player shows them in): {FIX}"
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


def shortfall(structure: StreamStructure, reported: int, kept: int) -> str | None:
    """Why a video is kept with `kept` frames, fewer than it claims (its header's promise, or
    `reported`: decord's count), with the fix; None when it holds every frame it claims."""
    claimed = max(structure.promised, reported)
    if kept >= claimed:
        return None
    causes = []
    if structure.promised > structure.packets:
        causes.append(f"its header promises {structure.promised} frames where {structure.packets} packets are left")
    if structure.intact < structure.packets:
        causes.append(f"frame {structure.intact} comes from a cut packet (the decoder makes it up from the one before)")
    elif kept < structure.intact:
        causes.append(f"the frames from {kept} on do not decode")
    return f"kept with its {kept} whole frames of {claimed} ({'; '.join(causes) or 'a short file'}): {SHORT_FIX}"


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


def _pyav_decodable(source, count: int) -> int:
    """How many frames, at most `count`, PyAV decodes from the file's start before it fails (at a
    cut packet: H.264's decoder refuses it, MPEG-4 Part 2's makes a frame up, which `count`, the
    frames shown before the cut, leaves out). Decodes the whole stream: only cut files come here."""
    import av

    if not isinstance(source, str):
        source.seek(0)
    decoded = 0
    with av.open(source, metadata_errors="ignore") as container:
        try:
            for _ in container.decode(container.streams.best("video")):
                decoded += 1
                if decoded == count:
                    break
        except av.error.FFmpegError:
            pass  # the frames before the error are the ones that decode
    return decoded


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
    if structure.intact < structure.packets:  # cut: count what PyAV decodes, the decoder that reads it
        num_frames = _pyav_decodable(source, structure.intact)
    else:
        num_frames = decodable_frames(open_reader, structure.intact)
    if num_frames < 1:
        return "no frames decode"
    return {
        "num_frames": num_frames,
        "fps": fps if fps > 0 else 25.0,
        "height": height,
        "width": width,
        "decoder": decoder_for(structure),
        "incomplete": shortfall(structure, reported, num_frames),
    }


def probe_video(video: Location, timeout_s: float = PROBE_TIMEOUT_S) -> dict | str:
    """{'num_frames' (checked: its last frame decodes, none comes from a cut packet), 'fps',
    'height', 'width', 'decoder' (manifest.DECORD or PYAV), 'incomplete' (why it holds fewer frames
    than it claims, with the fix, or None: `shortfall`)} of one video, or the reason it cannot be
    read or decoded frame-exactly."""
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
