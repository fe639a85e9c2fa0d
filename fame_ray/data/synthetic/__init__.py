"""Synthetic datasets: videos whose classes differ only by the motion of an object (`render`),
written in the official dataset layouts (`layouts`, `writer`)."""

from fame_ray.data.synthetic.render import (
    MOTIONS,
    STILL_CAMERA,
    Camera,
    MotionClass,
    Rendered,
    family_background,
    motion_classes,
    render_scene,
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
    "STILL_CAMERA",
    "Camera",
    "MotionClass",
    "Rendered",
    "VideoWriter",
    "check_output_folder",
    "ensure_default",
    "family_background",
    "is_complete",
    "motion_classes",
    "render_scene",
    "render_video",
    "write_dataset",
    "write_video",
]
