"""Rendering synthetic videos: an object whose MOTION is the class, over a textured background.

Every video shows one object (a disk or a square with a dark outline) moving over its own
textured background. The class decides the trajectory (horizontal, vertical, circle,
diagonal, pulse, zigzag, figure eight, spiral; beyond eight classes the same motions again,
faster). All motions are symmetric under a horizontal flip, so flip augmentation never turns
one class into another. The background is a random low-frequency colour texture with
stripes, drifting slowly, plus a little sensor noise; it says nothing about the class unless
the caller ties its hue and stripe direction to the class (`family_background`): the shortcut
FAME is meant to break.

Videos are real H.264 (PyAV, libx264, yuv420p, no B-frames), so the same decord path reads
them as real datasets (`write_video`).
"""

from __future__ import annotations

import colorsys
import os
from dataclasses import dataclass

import numpy as np

MOTIONS = ("horizontal", "vertical", "circle", "diagonal", "pulse", "zigzag", "figure_eight", "spiral")
# One full period of the base motion in frames: a training clip (16 frames, stride 2 = 31
# frames of video) always sees at least one whole period.
BASE_PERIOD = 24.0


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
    blobs = (
        np.asarray(Image.fromarray((blobs * 255).astype(np.uint8)).resize((pad_w, pad_h), Image.BILINEAR), np.float32)
        / 255
    )
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


def render_video(
    motion: MotionClass,
    frames: int,
    width: int,
    height: int,
    rng: np.random.Generator,
    hue: float | None = None,
    stripe_angle: float | None = None,
    object_colour: tuple | None = None,
    object_size: tuple[float, float] = (0.10, 0.13),
) -> np.ndarray:
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
    video = np.stack([background[dy : dy + height, dx : dx + width] for dy, dx in shifts])
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


def write_video(video: np.ndarray, path: str, fps: int = 25) -> None:
    """Encode uint8 T x H x W x 3 to `path` (its folder created first)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    encode(video, path, fps)
