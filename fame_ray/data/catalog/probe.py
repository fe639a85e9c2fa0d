"""Probe videos (frame count, fps, height, width) with decord, in parallel on Ray.

Probing opens a video and decodes one frame (decord has no size query); it never decodes
the whole video. s3:// videos are read through fame_ray.storage and handed to decord as an
in-memory file. A video that cannot be read yields a reason instead of a result.
"""

from __future__ import annotations

import io
import logging
import os

from fame_ray import runtime
from fame_ray.data import deadline
from fame_ray.storage import Location

log = logging.getLogger(__name__)

# At most 16 videos per task (enough to hide task overhead), two tasks per CPU at least; half a
# CPU each: probing waits on I/O and demuxing more than it computes.
TASKS = runtime.ChunkedTasks(task_cpus=0.5, max_chunk=16, tasks_per_cpu=2, crashed="probe crashed")
PROBE_TIMEOUT_S = 120.0  # opening a video and decoding two frames takes milliseconds


TAIL = 8  # frames decoded in one batch to check the end of a video, as a clip near it would be


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

    reader = open_reader()
    reported = len(reader)
    if reported < 1:
        return "no frames"
    height, width = reader[0].shape[:2]
    fps = float(reader.get_avg_fps())
    del reader
    num_frames = decodable_frames(open_reader, reported)
    if num_frames < 1:
        return "no frames decode"
    if num_frames < reported:
        log.warning(
            "%s reports %d frames, %d decode: using %d",
            source if isinstance(source, str) else "video",
            reported,
            num_frames,
            num_frames,
        )
    return {"num_frames": num_frames, "fps": fps if fps > 0 else 25.0, "height": height, "width": width}


def probe_video(video: Location, timeout_s: float = PROBE_TIMEOUT_S) -> dict | str:
    """{'num_frames' (checked: its last frame decodes), 'fps', 'height', 'width'} of one video,
    or the reason it cannot be read."""
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
    except Exception as error:  # decord raises DECORDError, RuntimeError, AssertionError...
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
