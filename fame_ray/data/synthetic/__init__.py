"""Synthetic datasets: videos whose classes differ only by the motion of an object (`render`),
written in the official dataset layouts (`layouts`, `writer`)."""

from fame_ray.data.synthetic.render import (
    MOTIONS,
    MotionClass,
    family_background,
    motion_classes,
    render_video,
    write_video,
)
from fame_ray.data.synthetic.writer import (
    DEFAULT,
    LAYOUTS,
    MARKER,
    VideoWriter,
    check_output_folder,
    ensure_default,
    is_complete,
    write_dataset,
)

__all__ = [
    "DEFAULT",
    "LAYOUTS",
    "MARKER",
    "MOTIONS",
    "MotionClass",
    "VideoWriter",
    "check_output_folder",
    "ensure_default",
    "family_background",
    "is_complete",
    "motion_classes",
    "render_video",
    "write_dataset",
    "write_video",
]
