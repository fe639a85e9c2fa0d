"""Synthetic videos whose classes differ only by the MOTION of a foreground object.

Every video shows one object (a disk or a square with a dark outline) moving over its own
textured background. The class decides the trajectory (horizontal, vertical, circle,
diagonal, pulse, zigzag, figure eight, spiral; beyond eight classes the same motions again,
faster). All motions are symmetric under a horizontal flip, so flip augmentation never turns
one class into another. The background is a random low-frequency colour texture with
stripes, drifting slowly, plus a little sensor noise; it says nothing about the class unless
`scene_bias` is on, which ties its hue and stripe direction to the class: the shortcut FAME
is meant to break.

Videos are real H.264 (PyAV, libx264, yuv420p, no B-frames), so the same decord path reads
them as real datasets. `write_dataset` writes them in a dataset's official layout
(synthetic_layouts.py); `ensure_synthetic` writes the built-in default dataset once.

    write_dataset("/tmp/ucf-synth", "ucf101", num_classes=4, videos_per_class=6, frames=40)
"""

from __future__ import annotations

import colorsys
import json
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fame_ray.data import synthetic_layouts
from fame_ray.errors import UserError

log = logging.getLogger(__name__)

LAYOUTS = ("ucf101", "hmdb51", "diving48", "kinetics400", "folder")
MOTIONS = ("horizontal", "vertical", "circle", "diagonal", "pulse", "zigzag", "figure_eight", "spiral")
# The built-in default dataset ("synthetic"): UCF101 layout, written in seconds. Its objects all
# look alike and fill a good part of the frame, so that the motion is what tells videos apart
# (the background-bias experiment's reasoning, fame_ray.data.scene_bias); 64x64 frames for the
# demo's 48-pixel crops (about the official 128 : 112).
DEFAULT = {"num_classes": 8, "videos_per_class": 80, "frames": 32, "width": 64, "height": 64, "fps": 25, "seed": 0,
           "object_colour": (235, 235, 235), "object_size": (0.18, 0.23)}
MARKER = ".fame-ray-synthetic.json"
# One full period of the base motion in frames: a training clip (16 frames, stride 2 = 31
# frames of video) always sees at least one whole period.
BASE_PERIOD = 24.0
# Caps that stop a typo from running for hours or filling memory or disk: the largest real
# datasets have 400 classes (Kinetics-400) and clips of a few hundred frames.
MAX_SIDE = 4096
MAX_FRAMES = 3000
MAX_CLASSES = 400
MAX_VIDEOS_PER_CLASS = 1000
MAX_FPS = 240
# A video is rendered whole in memory (T x H x W x 3, int16) before it is encoded.
MAX_VIDEO_BYTES = 4 << 30


@dataclass(frozen=True)
class MotionClass:
    """One class: a trajectory kind and a speed level (1 = base period, 2 = twice as fast...)."""

    motion: str
    speed: int

    @property
    def words(self) -> list[str]:
        words = self.motion.split("_")
        return words if self.speed == 1 else words + [f"x{self.speed}"]


def motion_classes(num_classes: int) -> list[MotionClass]:
    """The first `num_classes` classes: the eight motions, then the same faster, and so on."""
    return [MotionClass(MOTIONS[k % len(MOTIONS)], 1 + k // len(MOTIONS)) for k in range(num_classes)]


def trajectory(motion: MotionClass, frames: int, rng: np.random.Generator) -> np.ndarray:
    """Object centre and radius scale per frame, in units of the frame: T x 3 (x, y, scale).

    x and y are in [0, 1] (fractions of width and height); random phase, amplitude and
    centre per video so that no two videos of a class are the same.
    """
    phase = rng.uniform(0, 2 * np.pi)
    angle = 2 * np.pi * np.arange(frames) * motion.speed / BASE_PERIOD + phase
    amp = rng.uniform(0.26, 0.32)
    cx, cy = 0.5 + rng.uniform(-0.04, 0.04, size=2)
    s, c = np.sin(angle), np.cos(angle)
    zero, one = np.zeros(frames), np.ones(frames)
    sign = rng.choice([-1.0, 1.0])  # which diagonal / which way round: flip-symmetric classes
    kind = motion.motion
    if kind == "horizontal":
        x, y, scale = cx + amp * s, cy + zero, one
    elif kind == "vertical":
        x, y, scale = cx + zero, cy + amp * s, one
    elif kind == "circle":
        x, y, scale = cx + amp * c, cy + sign * amp * s, one
    elif kind == "diagonal":
        x, y, scale = cx + amp * s, cy + sign * amp * s, one
    elif kind == "pulse":
        x, y, scale = cx + zero, cy + zero, 1.0 + 0.6 * s
    elif kind == "zigzag":
        tri = 2 / np.pi * np.arcsin(np.sin(4 * angle))  # triangle wave, 4x the base frequency
        x, y, scale = cx + amp * s, cy + 0.6 * amp * tri, one
    elif kind == "figure_eight":
        x, y, scale = cx + amp * s, cy + 0.6 * amp * np.sin(2 * angle), one
    else:  # spiral: a circle whose radius breathes
        radius = amp * (0.55 + 0.45 * np.sin(angle / 2))
        x, y, scale = cx + radius * c, cy + sign * radius * s, one
    return np.stack([x, y, scale], axis=1)


def _background(height: int, width: int, hue: float, angle: float, rng: np.random.Generator) -> np.ndarray:
    """A textured background of hue `hue` with stripes at `angle`: (H+8) x (W+8) x 3 float."""
    from PIL import Image

    pad_h, pad_w = height + 8, width + 8
    blobs = rng.uniform(0, 1, size=(6, 8, 3)).astype(np.float32)
    blobs = np.asarray(Image.fromarray((blobs * 255).astype(np.uint8)).resize((pad_w, pad_h), Image.BILINEAR), np.float32) / 255
    yy, xx = np.mgrid[0:pad_h, 0:pad_w].astype(np.float32)
    period = rng.uniform(8, 16)
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    base = np.array(colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(0.35, 0.6), rng.uniform(0.45, 0.65)), np.float32)
    texture = 0.55 + 0.3 * blobs + 0.25 * stripes[..., None]
    return np.clip(base * texture * 255, 0, 255)


def _draw(frame: np.ndarray, x: float, y: float, radius: float, square: bool, colour: np.ndarray) -> None:
    """Paint the object (with a 2-pixel dark outline) centred at (x, y) into frame, in place."""
    height, width = frame.shape[:2]
    outer = radius + 2
    top, bottom = max(0, int(y - outer)), min(height, int(y + outer) + 2)
    left, right = max(0, int(x - outer)), min(width, int(x + outer) + 2)
    if top >= bottom or left >= right:
        return
    yy, xx = np.mgrid[top:bottom, left:right].astype(np.float32)
    if square:
        dist = np.maximum(np.abs(xx - x), np.abs(yy - y))
    else:
        dist = np.sqrt((xx - x) ** 2 + (yy - y) ** 2)
    box = frame[top:bottom, left:right]
    box[dist <= outer] = 0  # dark outline: the object stands out on any background
    box[dist <= radius] = colour


def family_background(family: int, families: int, rng: np.random.Generator) -> tuple[float, float]:
    """(hue, stripe angle) of background family `family` of `families`: evenly spread hues and
    stripe directions, with a little jitter so that no two backgrounds are the same."""
    return family / families + rng.uniform(-0.03, 0.03), np.pi * family / families + rng.uniform(-0.1, 0.1)


def render_video(motion: MotionClass, frames: int, width: int, height: int, rng: np.random.Generator,
                 hue: float | None = None, stripe_angle: float | None = None, object_colour: tuple | None = None,
                 object_size: tuple[float, float] = (0.10, 0.13)) -> np.ndarray:
    """One video as uint8 T x H x W x 3. `hue`/`stripe_angle` fix the background (scene bias);
    `object_colour` (RGB 0-255) fixes the object's colour, else it is the background's
    complement (a colour that always stands out, but one that follows the background);
    `object_size` is the range of the object's radius, as a share of the frame's short side."""
    hue = rng.uniform(0, 1) if hue is None else hue
    stripe_angle = rng.uniform(0, np.pi) if stripe_angle is None else stripe_angle
    background = _background(height, width, hue, stripe_angle, rng)
    drift = rng.uniform(-0.25, 0.25, size=2)  # slow global motion, pixels per frame
    path = trajectory(motion, frames, rng)
    radius = rng.uniform(*object_size) * min(width, height)
    square = rng.random() < 0.5
    if object_colour is None:
        object_colour = np.array(colorsys.hsv_to_rgb((hue + 0.5 + rng.uniform(-0.15, 0.15)) % 1.0, 0.9, 1.0)) * 255
    obj_colour = np.asarray(object_colour).astype(np.int16)
    shifts = np.clip(np.round(4 + np.outer(np.arange(frames), drift)), 0, 8).astype(int)
    background = background.astype(np.int16)
    video = np.stack([background[dy:dy + height, dx:dx + width] for dy, dx in shifts])
    # Sensor noise, uniform in [-4, 4] (integers: a normal draw costs more than the rest).
    video += rng.integers(-4, 5, size=(frames, height, width, 1), dtype=np.int16)
    for t in range(frames):
        _draw(video[t], path[t, 0] * width, path[t, 1] * height, radius * path[t, 2], square, obj_colour)
    video = np.clip(video, 0, 255).astype(np.uint8)
    return video


def encode(video: np.ndarray, path: str, fps: int = 25) -> None:
    """Write uint8 T x H x W x 3 as H.264 (libx264, yuv420p) into an .avi/.mp4/.mkv file."""
    import av

    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = video.shape[2], video.shape[1], "yuv420p"
        # ultrafast: seconds for a test dataset; zerolatency: no B-frames, so AVI's
        # frame-count header is exact and decord's len() is right.
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": "20"}
        for frame in video:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@dataclass
class VideoSpec:
    """What `write_dataset` needs to render one video: its class, index in class, a seed."""

    label: int
    index: int
    seed: int


class VideoWriter:
    """Renders and encodes the videos of one dataset (shared by the layout writers)."""

    def __init__(self, num_classes: int, frames: int, width: int, height: int, fps: int, scene_bias: bool, seed: int,
                 object_colour: tuple | None = None, object_size: tuple[float, float] = (0.10, 0.13)):
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
        return render_video(self.classes[label], self.frames, self.width, self.height, rng, hue, angle, self.object_colour, self.object_size)

    def write(self, label: int, index: int, path: str) -> None:
        video = self.render(label, index)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        encode(video, path, self.fps)


def _validate(layout: str, num_classes: int, videos_per_class: int, frames: int, width: int, height: int, fps: int) -> None:
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout '{layout}': expected one of {', '.join(LAYOUTS)}", "e.g. --layout ucf101")
    if num_classes < 1 or videos_per_class < 2:
        raise UserError("need at least 1 class and 2 videos per class (one for train, one for test)", "raise --classes / --videos-per-class")
    if frames < 2 or fps < 1:
        raise UserError(f"need at least 2 frames and fps >= 1, got frames={frames} fps={fps}", "raise --frames")
    if width < 32 or height < 32 or width % 2 or height % 2:
        raise UserError(f"size {width}x{height} must be even and at least 32x32 (H.264 yuv420p)", "e.g. --size 160x120")
    _check_caps(num_classes, videos_per_class, frames, width, height, fps)


def _check_caps(num_classes: int, videos_per_class: int, frames: int, width: int, height: int, fps: int) -> None:
    for flag, value, cap in (("--classes", num_classes, MAX_CLASSES), ("--videos-per-class", videos_per_class, MAX_VIDEOS_PER_CLASS),
                             ("--frames", frames, MAX_FRAMES), ("--fps", fps, MAX_FPS)):
        if value > cap:
            raise UserError(f"{flag} {value} is more than the synthetic writer takes ({cap})", f"lower {flag}")
    if max(width, height) > MAX_SIDE:
        raise UserError(f"--size {width}x{height} is larger than {MAX_SIDE}x{MAX_SIDE}", "e.g. --size 320x240")
    needed = frames * width * height * 3 * 2
    if needed > MAX_VIDEO_BYTES:
        raise UserError(f"one video of {frames} frames at {width}x{height} needs {needed / (1 << 30):.1f} GiB of memory to render (at most {MAX_VIDEO_BYTES >> 30} GiB)",
                        "lower --frames or --size")


def check_output_folder(out: str, force: bool = False) -> None:
    """Where a dataset may be written: a local folder that is new, empty, or holds a synthetic
    dataset already (its marker file); another folder only with `force`, since files of the
    same names would be overwritten."""
    if "://" in out:
        raise UserError(f"synthetic datasets are written to a local folder, not to {out.split('://', 1)[0]}://", "write to a local --out, then upload the folder")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {out} exists and is not a folder", "give a folder path for --out")
    if path.is_dir() and any(path.iterdir()) and not is_complete(out) and not force:
        raise UserError(f"{out} holds other files and no synthetic dataset ({MARKER}); files of the same names would be overwritten",
                        "pick a new or empty folder, or pass --force")


def write_dataset(out: str, layout: str, num_classes: int = 6, videos_per_class: int = 8, frames: int = 48,
                  width: int = 160, height: int = 120, fps: int = 25, scene_bias: bool = False, seed: int = 0,
                  object_colour: tuple | None = None, object_size: tuple[float, float] = (0.10, 0.13), force: bool = False) -> str:
    """Write a synthetic dataset in `layout`'s official layout under `out`; returns `out`.

    Layouts (docs/datasets.md): ucf101, hmdb51, diving48, kinetics400, folder. The videos, split
    files and annotations are those the real dataset ships, with fewer classes. `out` must be
    new, empty or a synthetic dataset already, unless `force` (check_output_folder).
    """
    _validate(layout, num_classes, videos_per_class, frames, width, height, fps)
    check_output_folder(out, force)
    writer = VideoWriter(num_classes, frames, width, height, fps, scene_bias, seed, object_colour, object_size)
    os.makedirs(out, exist_ok=True)
    getattr(synthetic_layouts, f"write_{layout}")(out, writer, videos_per_class)
    settings = {"layout": layout, "num_classes": num_classes, "videos_per_class": videos_per_class, "frames": frames,
                "width": width, "height": height, "fps": fps, "scene_bias": scene_bias, "seed": seed,
                "object_colour": list(object_colour) if object_colour else None, "object_size": list(object_size)}
    # Written last: its presence means the dataset is complete.
    Path(out, MARKER).write_text(json.dumps(settings, indent=1))
    log.info("wrote %d synthetic %s videos (%d classes) to %s", num_classes * videos_per_class, layout, num_classes, out)
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


def ensure_synthetic(root: str) -> str:
    """Write the built-in default dataset (UCF101 layout) at `root` unless it is already there.

    A complete copy written with other settings (an older fame-ray's default) is replaced.
    Safe against a half-written folder and against two processes racing: the dataset is
    written into a temporary sibling folder and renamed into place in one step.
    """
    if "://" in root:
        raise UserError(f"the synthetic dataset is written on a local disk, not at {root}",
                        "write it with `fame-ray synth --out DIR`, upload it, and use --dataset ucf101 --data-root s3://...")
    target = Path(root).expanduser()
    if _is_current_default(target):
        return str(target)
    if target.exists() and not is_complete(str(target)) and any(p.name != ".fame-ray" for p in target.iterdir()):
        raise UserError(f"{target} exists but holds no complete synthetic dataset (no {MARKER})", "remove it or pick another --data-root")
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
