"""Rendering synthetic videos: an object whose MOTION is the class, over a textured background.

Every video shows one object (a disk or a square with a dark outline) moving over its own
textured background. The class decides the trajectory (horizontal, vertical, circle,
diagonal, pulse, zigzag, figure eight, spiral; beyond eight classes the same motions again,
faster). All motions are symmetric under a horizontal flip, so flip augmentation never turns
one class into another. The background is a random low-frequency colour texture with
stripes, drifting slowly, plus a little sensor noise; it says nothing about the class unless
the caller ties its hue and stripe direction to the class (`family_background`): the shortcut
FAME is meant to break.

Options make the video harder, one factor each (`render_scene`): the object's fill taken from
its own background's texture ('palette'), its size, a camera that pans and shakes (`Camera`),
and a distractor object that moves the same way in every class. `render_scene` also returns
the class object's mask per frame (what the activation maps are scored against).

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


def _background(
    height: int, width: int, hue: float, angle: float, rng: np.random.Generator, margin: int = 4
) -> np.ndarray:
    """A textured background of hue `hue` with stripes at `angle`: (H+2m) x (W+2m) x 3 float,
    m = `margin` (room for the camera to move). The blob grid grows with the margin, so blobs
    keep their size in pixels; the default margin draws exactly as before."""
    from PIL import Image

    pad_h, pad_w = height + 2 * margin, width + 2 * margin
    grid = (max(6, round(6 * pad_h / (height + 8))), max(8, round(8 * pad_w / (width + 8))))
    blobs = rng.uniform(0, 1, size=(*grid, 3)).astype(np.float32)
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


def _draw(frame: np.ndarray, x: float, y: float, radius: float, square: bool, fill: np.ndarray) -> np.ndarray:
    """Paint the object (with a 2-pixel dark outline) centred at (x, y) into frame, in place;
    returns the H x W bool mask of the pixels it covers. `fill`: an RGB colour (3,) or a texture
    (S x S x 3, centred on the object and moving with it)."""
    height, width = frame.shape[:2]
    covered = np.zeros((height, width), bool)
    outer = radius + 2
    top, bottom = max(0, int(y - outer)), min(height, int(y + outer) + 2)
    left, right = max(0, int(x - outer)), min(width, int(x + outer) + 2)
    if top >= bottom or left >= right:
        return covered
    yy, xx = np.mgrid[top:bottom, left:right].astype(np.float32)
    if square:
        dist = np.maximum(np.abs(xx - x), np.abs(yy - y))
    else:
        dist = np.sqrt((xx - x) ** 2 + (yy - y) ** 2)
    box = frame[top:bottom, left:right]
    box[dist <= outer] = 0  # dark outline: the object stands out on any background
    inside = dist <= radius
    if fill.ndim == 1:
        box[inside] = fill
    else:
        centre = fill.shape[0] // 2
        rows = np.clip(np.round(yy - y).astype(int) + centre, 0, fill.shape[0] - 1)
        columns = np.clip(np.round(xx - x).astype(int) + centre, 0, fill.shape[1] - 1)
        box[inside] = fill[rows[inside], columns[inside]]
    covered[top:bottom, left:right] = dist <= outer
    return covered


def family_background(
    family: int, families: int, rng: np.random.Generator, hue_spread: float = 0.03
) -> tuple[float, float]:
    """(hue, stripe angle) of background family `family` of `families`: evenly spread hues and
    stripe directions, with jitter so that no two backgrounds are the same (hue uniform within
    +-`hue_spread` of the family's hue; 0.5 / families makes the families tile the hue circle,
    neighbours meeting at a boundary; the angle within +-0.1 rad)."""
    return family / families + rng.uniform(-hue_spread, hue_spread), np.pi * family / families + rng.uniform(-0.1, 0.1)


@dataclass(frozen=True)
class Camera:
    """How the background moves behind the objects, in pixels per frame (the objects' paths are
    in frame coordinates: a camera that follows the action)."""

    drift: float = 0.25
    """Largest component of the slow drift velocity every video has."""
    pan: tuple[float, float] = (0.0, 0.0)
    """Speed range of a pan in a random direction (0: none)."""
    shake: float = 0.0
    """Amplitude of an independent random jitter per frame (0: none)."""

    def margin(self, frames: int) -> int:
        """Background pixels beyond each side of the frame that the camera can reach."""
        return 4 + int(np.ceil(frames * self.pan[1] + self.shake))

    def offsets(self, frames: int, rng: np.random.Generator, drift: np.ndarray) -> np.ndarray:
        """Window position of every frame in the padded background: T x 2 int (dy, dx)."""
        margin = self.margin(frames)
        path = np.outer(np.arange(frames), drift)
        if self.pan[1] > 0:
            speed, direction = rng.uniform(*self.pan), rng.uniform(0, 2 * np.pi)
            path = path + np.outer(np.arange(frames), speed * np.array([np.sin(direction), np.cos(direction)]))
        if self.shake > 0:
            path = path + rng.uniform(-self.shake, self.shake, size=(frames, 2))
        return np.clip(np.round(margin + path), 0, 2 * margin).astype(int)


STILL_CAMERA = Camera()


@dataclass(frozen=True)
class Rendered:
    """A rendered video and where its class object is."""

    video: np.ndarray
    """uint8 T x H x W x 3."""
    mask: np.ndarray
    """bool T x H x W: the pixels of the object whose motion is the class (outline included)."""


def _fill(object_colour, hue: float, background: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """The object's fill: a fixed RGB colour; None: the background's complement (a colour that
    always stands out, but follows the background); 'palette': a patch of its own background's
    texture from a random place (colour statistics cannot tell it from the background)."""
    if isinstance(object_colour, str):
        size = min(size, *background.shape[:2])
        top = int(rng.integers(0, background.shape[0] - size + 1))
        left = int(rng.integers(0, background.shape[1] - size + 1))
        return background[top : top + size, left : left + size].astype(np.int16)
    if object_colour is None:
        object_colour = np.array(colorsys.hsv_to_rgb((hue + 0.5 + rng.uniform(-0.15, 0.15)) % 1.0, 0.9, 1.0)) * 255
    return np.asarray(object_colour).astype(np.int16)


def distractor_path(frames: int, rng: np.random.Generator) -> np.ndarray:
    """A distractor's centre per frame (T x 2, fractions of the frame): a straight line at a
    constant speed (2% of the frame per frame) in a random direction, bouncing off the edges of
    [0.15, 0.85]; a motion none of the classes has, drawn the same way for every class."""
    start, direction = rng.uniform(0.2, 0.8, size=2), rng.uniform(0, 2 * np.pi)
    travel = start[None] - 0.15 + np.outer(np.arange(frames), 0.02 * np.array([np.cos(direction), np.sin(direction)]))
    folded = np.abs((travel + 0.7) % 1.4 - 0.7)  # a triangle wave: reflections at both walls
    return 0.15 + folded


def render_video(
    motion: MotionClass,
    frames: int,
    width: int,
    height: int,
    rng: np.random.Generator,
    hue: float | None = None,
    stripe_angle: float | None = None,
    object_colour: tuple | str | None = None,
    object_size: tuple[float, float] = (0.10, 0.13),
    *,
    camera: Camera = STILL_CAMERA,
    distractor: bool = False,
) -> np.ndarray:
    """One video as uint8 T x H x W x 3 (`render_scene`'s video)."""
    return render_scene(
        motion, frames, width, height, rng, hue, stripe_angle, object_colour, object_size, camera, distractor
    ).video


def render_scene(
    motion: MotionClass,
    frames: int,
    width: int,
    height: int,
    rng: np.random.Generator,
    hue: float | None = None,
    stripe_angle: float | None = None,
    object_colour: tuple | str | None = None,
    object_size: tuple[float, float] = (0.10, 0.13),
    camera: Camera = STILL_CAMERA,
    distractor: bool = False,
) -> Rendered:
    """One video and its class object's mask. `hue`/`stripe_angle` fix the background (scene
    bias); `object_colour`: RGB 0-255, None (the background's complement) or 'palette' (`_fill`);
    `object_size`: the range of the object's radius, as a share of the frame's short side;
    `camera`: how the background moves; `distractor`: a second object of the same look moving on
    `distractor_path` (the same in every class), drawn under the class object.

    The random draws of the default look come first and in the same order whatever the options,
    so a variant changes only what its option changes (for the camera, also the blob grid)."""
    hue = rng.uniform(0, 1) if hue is None else hue
    stripe_angle = rng.uniform(0, np.pi) if stripe_angle is None else stripe_angle
    margin = camera.margin(frames)
    background = _background(height, width, hue, stripe_angle, rng, margin)
    drift = rng.uniform(-camera.drift, camera.drift, size=2) if camera.drift else np.zeros(2)
    path = trajectory(motion, frames, rng)
    radius = rng.uniform(*object_size) * min(width, height)
    square = rng.random() < 0.5
    side = 2 * int(np.ceil(1.6 * radius)) + 5  # the largest object (pulse: 1.6x) fits a texture fill
    fill = _fill(None if isinstance(object_colour, str) else object_colour, hue, background, side, rng)
    noise = rng.integers(-4, 5, size=(frames, height, width, 1), dtype=np.int16)
    if isinstance(object_colour, str):
        fill = _fill(object_colour, hue, background, side, rng)
    shifts = camera.offsets(frames, rng, drift)
    background = background.astype(np.int16)
    # Sensor noise, uniform in [-4, 4] (integers: a normal draw costs more than the rest).
    video = np.stack([background[dy : dy + height, dx : dx + width] for dy, dx in shifts]) + noise
    if distractor:
        _draw_distractor(video, rng, object_size, object_colour, hue, background, fill)
    mask = np.stack(
        [
            _draw(video[t], path[t, 0] * width, path[t, 1] * height, radius * path[t, 2], square, fill)
            for t in range(frames)
        ]
    )
    return Rendered(np.clip(video, 0, 255).astype(np.uint8), mask)


def _draw_distractor(video, rng, object_size, object_colour, hue, background, class_fill) -> None:
    """Paint a distractor (same size range and colour rule as the class object) into video, in place."""
    frames, height, width = video.shape[:3]
    radius = rng.uniform(*object_size) * min(width, height)
    square = rng.random() < 0.5
    side = 2 * int(np.ceil(radius)) + 5
    fill = _fill(object_colour, hue, background, side, rng) if isinstance(object_colour, str) else class_fill
    for t, (x, y) in enumerate(distractor_path(frames, rng)):
        _draw(video[t], x * width, y * height, radius, square, fill)


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
