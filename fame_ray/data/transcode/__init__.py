"""Training-friendly copies of datasets: how one video is re-encoded (`encode`) and the Ray job that
copies a whole dataset, resumably (`job`)."""

from fame_ray.data.transcode.encode import (
    EncodeSettings,
    TranscodeError,
    container_for,
    encode_video,
    required_short_side,
)
from fame_ray.data.transcode.job import TranscodeResult, run

__all__ = [
    "EncodeSettings",
    "TranscodeError",
    "TranscodeResult",
    "container_for",
    "encode_video",
    "required_short_side",
    "run",
]
