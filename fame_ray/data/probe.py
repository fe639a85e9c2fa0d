"""Probe videos (frame count, fps, height, width) with decord, in parallel on Ray.

Probing opens a video and decodes one frame (decord has no size query); it never decodes
the whole video. s3:// videos are read through fame_ray.storage and handed to decord as an
in-memory file. A video that cannot be read yields a reason instead of a result.
"""

from __future__ import annotations

import io
import logging
import math
import os

import ray

from fame_ray import runtime
from fame_ray.storage import Location

log = logging.getLogger(__name__)

CHUNK = 16  # videos per Ray task: enough to hide task overhead, small enough to spread out
TASK_CPUS = 0.5  # probing waits on I/O and demuxing more than it computes


def probe_video(video: Location) -> dict | str:
    """{'num_frames', 'fps', 'height', 'width'} of one video, or the reason it cannot be read."""
    import decord

    try:
        if video.is_s3:
            source = io.BytesIO(video.read_bytes())
        elif not os.path.isfile(video.uri):
            return "missing file"
        else:
            source = video.uri
        reader = decord.VideoReader(source, num_threads=1)
        num_frames = len(reader)
        height, width = reader[0].shape[:2]
        fps = float(reader.get_avg_fps())
    except FileNotFoundError:
        return "missing file"
    except Exception as error:  # decord raises DECORDError, RuntimeError, AssertionError...
        return f"unreadable: {type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}".rstrip(": ")
    if num_frames < 1 or height < 1 or width < 1:
        return "no frames"
    return {"num_frames": num_frames, "fps": fps if fps > 0 else 25.0, "height": height, "width": width}


def probe_chunk(videos: list[Location]) -> list[dict | str]:
    return [probe_video(video) for video in videos]


def probe_all(videos: list[Location]) -> list[dict | str]:
    """Probe every video in parallel Ray tasks; one result (dict or reason) per URI, in order.

    A task whose worker dies (a decoder crash on a broken file) is retried video by video,
    so one bad file costs only itself.
    """
    if not videos:
        return []
    # A local instance (or the cluster in RAY_ADDRESS); later Ray work in this process reuses it.
    runtime.connect_ray()
    remote = ray.remote(num_cpus=TASK_CPUS, max_retries=0)(probe_chunk)
    # At least two tasks per CPU when there are enough videos, at most CHUNK videos per task.
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    size = max(1, min(CHUNK, math.ceil(len(videos) / (2 * cpus))))
    chunks = [videos[i:i + size] for i in range(0, len(videos), size)]
    refs = [remote.remote(chunk) for chunk in chunks]
    results: list[dict | str] = []
    for chunk, ref in zip(chunks, refs):
        try:
            results.extend(ray.get(ref))
        except ray.exceptions.RayError as error:
            log.warning("probe task of %d videos failed (%s); probing them one by one", len(chunk), type(error).__name__)
            results.extend(_one_by_one(remote, chunk))
    return results


def _one_by_one(remote, chunk: list[Location]) -> list[dict | str]:
    refs = [remote.remote([video]) for video in chunk]
    out: list[dict | str] = []
    for ref in refs:
        try:
            out.extend(ray.get(ref))
        except ray.exceptions.RayError as error:
            out.append(f"probe crashed: {type(error).__name__}")
    return out
