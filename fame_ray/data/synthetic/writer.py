"""Synthetic datasets in the official layouts: videos from `render`, split files from `layouts`.

`write_dataset` writes a dataset in a dataset's official layout (layouts.py) with videos whose
classes differ only by the motion of a foreground object (render.py); `ensure_default` writes the
built-in default dataset ('synthetic', UCF101 layout) once, when a command asks for it.

    write_dataset("/tmp/ucf-synth", "ucf101", num_classes=4, videos_per_class=6, frames=40)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path

import numpy as np

from fame_ray.data.synthetic import layouts
from fame_ray.data.synthetic.render import family_background, motion_classes, render_video, write_video
from fame_ray.errors import UserError

log = logging.getLogger(__name__)

LAYOUTS = ("ucf101", "hmdb51", "diving48", "kinetics400", "folder")
# The built-in default dataset ("synthetic"): UCF101 layout, written in seconds. Its objects all
# look alike and fill a good part of the frame, so that the motion is what tells videos apart
# (the background-bias experiment's reasoning, fame_ray.experiments.scene_bias); 64x64 frames for
# the demo's 48-pixel crops.
DEFAULT = {
    "num_classes": 8,
    "videos_per_class": 80,
    "frames": 32,
    "width": 64,
    "height": 64,
    "fps": 25,
    "seed": 0,
    "object_colour": (235, 235, 235),
    "object_size": (0.18, 0.23),
}
MARKER = ".fame-ray-synthetic.json"
# Caps that stop a typo from running for hours or filling memory or disk: the largest real
# datasets have 400 classes (Kinetics-400) and clips of a few hundred frames.
MAX_SIDE = 4096
MAX_FRAMES = 3000
MAX_CLASSES = 400
MAX_VIDEOS_PER_CLASS = 1000
MAX_FPS = 240
# A video is rendered whole in memory (T x H x W x 3, int16) before it is encoded.
MAX_VIDEO_BYTES = 4 << 30


class VideoWriter:
    """Renders and encodes the videos of one dataset (shared by the layout writers)."""

    def __init__(
        self,
        num_classes: int,
        frames: int,
        width: int,
        height: int,
        fps: int,
        scene_bias: bool,
        seed: int,
        object_colour: tuple | None = None,
        object_size: tuple[float, float] = (0.10, 0.13),
    ):
        self.classes = motion_classes(num_classes)
        self.frames, self.width, self.height, self.fps = frames, width, height, fps
        self.scene_bias, self.seed = scene_bias, seed
        self.object_colour, self.object_size = object_colour, tuple(object_size)

    def render(self, label: int, index: int) -> np.ndarray:
        """Video `index` of class `label`: uint8 T x H x W x 3, the same for the same seed."""
        rng = np.random.default_rng([self.seed, label, index])
        hue = angle = None
        if self.scene_bias:
            # The class decides the background's hue and stripe direction (small jitter).
            hue, angle = family_background(label, len(self.classes), rng)
        return render_video(
            self.classes[label],
            self.frames,
            self.width,
            self.height,
            rng,
            hue,
            angle,
            self.object_colour,
            self.object_size,
        )

    def write(self, label: int, index: int, path: str) -> None:
        write_video(self.render(label, index), path, self.fps)


def _validate(
    layout: str, num_classes: int, videos_per_class: int, frames: int, width: int, height: int, fps: int
) -> None:
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout '{layout}': expected one of {', '.join(LAYOUTS)}", "e.g. --layout ucf101")
    if num_classes < 1 or videos_per_class < 2:
        raise UserError(
            "need at least 1 class and 2 videos per class (one for train, one for test)",
            "raise --classes / --videos-per-class",
        )
    if frames < 2 or fps < 1:
        raise UserError(f"need at least 2 frames and fps >= 1, got frames={frames} fps={fps}", "raise --frames")
    if width < 32 or height < 32 or width % 2 or height % 2:
        raise UserError(f"size {width}x{height} must be even and at least 32x32 (H.264 yuv420p)", "e.g. --size 160x120")
    _check_caps(num_classes, videos_per_class, frames, width, height, fps)


def _check_caps(num_classes: int, videos_per_class: int, frames: int, width: int, height: int, fps: int) -> None:
    for flag, value, cap in (
        ("--classes", num_classes, MAX_CLASSES),
        ("--videos-per-class", videos_per_class, MAX_VIDEOS_PER_CLASS),
        ("--frames", frames, MAX_FRAMES),
        ("--fps", fps, MAX_FPS),
    ):
        if value > cap:
            raise UserError(f"{flag} {value} is more than the synthetic writer takes ({cap})", f"lower {flag}")
    if max(width, height) > MAX_SIDE:
        raise UserError(f"--size {width}x{height} is larger than {MAX_SIDE}x{MAX_SIDE}", "e.g. --size 320x240")
    needed = frames * width * height * 3 * 2
    if needed > MAX_VIDEO_BYTES:
        raise UserError(
            (
                f"one video of {frames} frames at {width}x{height} needs {needed / (1 << 30):.1f} GiB of memory to "
                f"render (at most {MAX_VIDEO_BYTES >> 30} GiB)"
            ),
            "lower --frames or --size",
        )


def check_output_folder(out: str, force: bool = False) -> None:
    """Where a dataset may be written: a local folder that is new, empty, or holds a synthetic
    dataset already (its marker file); another folder only with `force`, since files of the
    same names would be overwritten."""
    if "://" in out:
        raise UserError(
            f"synthetic datasets are written to a local folder, not to {out.split('://', 1)[0]}://",
            "write to a local --out, then upload the folder",
        )
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {out} exists and is not a folder", "give a folder path for --out")
    if path.is_dir() and any(path.iterdir()) and not is_complete(out) and not force:
        raise UserError(
            (
                f"{out} holds other files and no synthetic dataset ({MARKER}); files of the same names would be "
                "overwritten"
            ),
            "pick a new or empty folder, or pass --force",
        )


def write_dataset(
    out: str,
    layout: str,
    num_classes: int = 6,
    videos_per_class: int = 8,
    frames: int = 48,
    width: int = 160,
    height: int = 120,
    fps: int = 25,
    scene_bias: bool = False,
    seed: int = 0,
    object_colour: tuple | None = None,
    object_size: tuple[float, float] = (0.10, 0.13),
    force: bool = False,
) -> str:
    """Write a synthetic dataset in `layout`'s official layout under `out`; returns `out`.

    Layouts (docs/datasets.md): ucf101, hmdb51, diving48, kinetics400, folder. The videos, split
    files and annotations are those the real dataset ships, with fewer classes. `out` must be
    new, empty or a synthetic dataset already, unless `force` (check_output_folder).
    """
    _validate(layout, num_classes, videos_per_class, frames, width, height, fps)
    check_output_folder(out, force)
    writer = VideoWriter(num_classes, frames, width, height, fps, scene_bias, seed, object_colour, object_size)
    os.makedirs(out, exist_ok=True)
    getattr(layouts, f"write_{layout}")(out, writer, videos_per_class)
    settings = {
        "layout": layout,
        "num_classes": num_classes,
        "videos_per_class": videos_per_class,
        "frames": frames,
        "width": width,
        "height": height,
        "fps": fps,
        "scene_bias": scene_bias,
        "seed": seed,
        "object_colour": list(object_colour) if object_colour else None,
        "object_size": list(object_size),
    }
    # Written last: its presence means the dataset is complete.
    Path(out, MARKER).write_text(json.dumps(settings, indent=1))
    log.info(
        "wrote %d synthetic %s videos (%d classes) to %s", num_classes * videos_per_class, layout, num_classes, out
    )
    return out


def is_complete(root: str) -> bool:
    """True when `root` holds a synthetic dataset written to the end."""
    return Path(root, MARKER).is_file()


def _is_current_default(root: Path) -> bool:
    """True when `root` holds the built-in dataset as this version of fame-ray writes it."""
    if not is_complete(str(root)):
        return False
    settings = json.loads(Path(root, MARKER).read_text())
    expected = {"layout": "ucf101", **{k: (list(v) if isinstance(v, tuple) else v) for k, v in DEFAULT.items()}}
    return all(settings.get(key) == value for key, value in expected.items())


def ensure_default(root: str) -> str:
    """Write the built-in default dataset (UCF101 layout) at `root` unless it is already there.

    A complete copy written with other settings (an older fame-ray's default) is replaced.
    Safe against a half-written folder and against two processes racing: the dataset is
    written into a temporary sibling folder and renamed into place in one step.
    """
    if "://" in root:
        raise UserError(
            f"the synthetic dataset is written on a local disk, not at {root}",
            "write it with `fame-ray synth --out DIR`, upload it, and use --dataset ucf101 --data-root s3://...",
        )
    target = Path(root).expanduser()
    if _is_current_default(target):
        return str(target)
    if target.exists() and not is_complete(str(target)) and any(p.name != ".fame-ray" for p in target.iterdir()):
        raise UserError(
            f"{target} exists but holds no complete synthetic dataset (no {MARKER})",
            "remove it or pick another --data-root",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        write_dataset(str(temp), "ucf101", **DEFAULT)
        if _is_current_default(target):  # another process finished first
            return str(target)
        if target.exists():
            shutil.rmtree(target)  # empty, stale manifests, or an older built-in copy: ours to replace
        os.rename(temp, target)
    except OSError:
        if not _is_current_default(target):  # lost a race is fine; anything else is not
            raise
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return str(target)
