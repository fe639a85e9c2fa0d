"""Re-encode one video for training: H.264 (PyAV, libx264), a keyframe every few frames, frame
size, frame rate and frame count kept (the short side scaled down only when asked), audio dropped.

    settings = EncodeSettings(gop=16)                     # the frames as they are: the official geometry
    data, frames = encode_video("v_ApplyEyeMakeup_g01_c01.avi", settings, container_for("x.avi"))

Why: training decodes random 16-frame clips (stride 2, so 31 frames of video) at random
positions. A decoder seeks to the keyframe before the first frame it needs and decodes
everything from there: with keyframes hundreds of frames apart (x264's default keyint is 250;
real uploads often have one keyframe per clip), most of a clip's decode time goes to frames it
throws away. With a keyframe every `gop` frames, at most gop - 1 frames are wasted per seek.

Frame size: the official code reads UCF101 and HMDB51 at their original 320x240 (no resize,
`dataset/ucf101.py`): training crops 20-100% of the full frame, testing takes a 112 centre
crop of it. The default copy keeps every frame's size, so it changes only where keyframes sit
and what the recipe sees stays the official. `short_side` > 0 scales frames down (decoding
then costs less, in proportion to the pixels): a deviation from the official geometry, since a
112 centre crop covers ~16% of a 320x240 frame and ~58% of a 171x128 one. It is for datasets
whose frames are much larger than the recipe's crops (Kinetics-400 uploads up to 1080p).
No B-frames, no scene-cut keyframes: every gop starts at a multiple of `gop` and the AVI
container (UCF101, HMDB51) keeps exact frame counts.
"""

from __future__ import annotations

import io
import math
import posixpath
from dataclasses import dataclass
from fractions import Fraction

from fame_ray.errors import UserError

# A resized copy (a deviation, see above) keeps a margin over the crop: 8 : 7, the common
# 128-pixel short side for 112-pixel crops and 256 for I3D's 224.
CROP_MARGIN = Fraction(8, 7)
KEEP_SIZE = 0  # short_side: keep every frame's size (the official geometry)
MIN_SHORT_SIDE = 112  # the smallest crop any recipe of fame-ray trains on (R(2+1)D, R3D)
MAX_SHORT_SIDE = 2160
MAX_GOP = 300
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
# libx264 writes into every container fame-ray reads, except WebM (VP8/VP9/AV1 only): a .webm
# name gets a Matroska file (WebM's parent format); decoders read it by content, not by name.
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".avi": "avi", ".mkv": "matroska", ".webm": "matroska"}
FALLBACK_FPS = 25  # when a file states no frame rate (UCF101's and HMDB51's rate)


class TranscodeError(Exception):
    """An input that cannot be transcoded (no video stream, no frames)."""


def required_short_side(crop_size: int) -> int:
    """The smallest short side a resized copy may have for `crop_size` crops: 8/7 of it, even
    (128 for 112, 256 for 224)."""
    return max(MIN_SHORT_SIDE, 2 * math.ceil(crop_size * CROP_MARGIN / 2))


@dataclass(frozen=True)
class EncodeSettings:
    """How the copy is encoded (recorded in the copy, so that a rerun resumes only with the same)."""

    short_side: int = KEEP_SIZE
    """0 = keep every frame's size (default: the official geometry); else the short side of the
    copy in pixels (a deviation from the official geometry; frames already smaller are kept,
    never upscaled)."""
    gop: int = 16
    """A keyframe every `gop` frames."""
    crf: int = 23
    """x264 constant rate factor (0 lossless .. 51 worst; 23 is x264's default)."""
    preset: str = "veryfast"
    """x264 speed preset."""

    def __post_init__(self):
        resized = self.short_side != KEEP_SIZE
        if resized and (not MIN_SHORT_SIDE <= self.short_side <= MAX_SHORT_SIDE or self.short_side % 2):
            raise UserError(
                (
                    f"--short-side must be 0 (keep the frame size) or an even number from {MIN_SHORT_SIDE} to "
                    f"{MAX_SHORT_SIDE}, got {self.short_side}"
                ),
                "0 keeps the official geometry; 128 serves 112-pixel crops, 256 I3D's 224-pixel crops",
            )
        if not 1 <= self.gop <= MAX_GOP:
            raise UserError(
                f"--gop must be from 1 to {MAX_GOP} frames, got {self.gop}",
                "16 puts a keyframe in every 16-frame stretch",
            )
        if not 0 <= self.crf <= 51:
            raise UserError(
                f"--crf must be from 0 to 51, got {self.crf}", "23 is x264's default; lower is larger and sharper"
            )
        if self.preset not in X264_PRESETS:
            raise UserError(
                f"--preset must be one of {', '.join(X264_PRESETS)}, got '{self.preset}'",
                "veryfast encodes quickly at a small size cost",
            )

    def check_crop(self, crop_size: int) -> None:
        """Refuse a short side too small for the crops the copy is meant for (a copy that keeps
        the frame size serves the crops the original serves)."""
        needed = required_short_side(crop_size)
        if self.short_side != KEEP_SIZE and self.short_side < needed:
            raise UserError(
                f"--short-side {self.short_side} is below the {needed} that {crop_size}-pixel crops need",
                f"use --short-side {needed}; 128 serves 112-pixel crops, 256 serves I3D's 224",
            )

    def frame_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the copy: the short side scaled to `short_side`, the aspect kept,
        both even (4:2:0 chroma); with short_side 0, or a frame whose short side is already
        smaller, the frame keeps its size (cut to even)."""
        if self.short_side == KEEP_SIZE or min(width, height) <= self.short_side:
            return max(2, width - width % 2), max(2, height - height % 2)
        scale = self.short_side / min(width, height)
        if width <= height:
            return self.short_side, max(2, 2 * round(height * scale / 2))
        return max(2, 2 * round(width * scale / 2)), self.short_side

    def x264_options(self) -> dict[str, str]:
        """libx264 options: fixed keyframe interval without scene cuts, no B-frames, one thread
        (a Ray task holds one CPU; the job runs many tasks side by side)."""
        params = f"keyint={self.gop}:min-keyint={self.gop}:scenecut=0:bframes=0:open-gop=0"
        return {"preset": self.preset, "crf": str(self.crf), "threads": "1", "x264-params": params}

    def describe(self) -> str:
        size = (
            "frame size kept (the official geometry)"
            if self.short_side == KEEP_SIZE
            else f"short side {self.short_side} (resized: a deviation from the official geometry)"
        )
        return f"H.264, {size}, a keyframe every {self.gop} frames, crf {self.crf}, preset {self.preset}"


def container_for(name: str) -> str:
    """The container written under this file name (the copy keeps every file name)."""
    return CONTAINERS.get(posixpath.splitext(name)[1].lower(), "mp4")


def _frame_rate(stream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate
    return Fraction(rate) if rate and rate > 0 else Fraction(FALLBACK_FPS)


def encode_video(source, settings: EncodeSettings, container: str) -> tuple[bytes, int]:
    """Transcode `source` (a path or a file-like object) into the bytes of a finished file of
    format `container`; returns (bytes, frames written). Raises TranscodeError for an input
    without video, and PyAV's errors for one that does not decode."""
    import av

    with av.open(source, metadata_errors="ignore") as inp:
        if not inp.streams.video:
            raise TranscodeError("no video stream")
        stream = inp.streams.video[0]
        stream.thread_count = 1
        frames = inp.decode(stream)
        first = next(frames, None)
        if first is None:
            raise TranscodeError("no frames")
        rate = _frame_rate(stream)
        buffer = io.BytesIO()
        with av.open(buffer, "w", format=container) as out:
            width, height = settings.frame_size(first.width, first.height)
            target = out.add_stream("libx264", rate=rate, options=settings.x264_options())
            target.width, target.height, target.pix_fmt = width, height, "yuv420p"
            count = 0
            for frame in _chain(first, frames):
                # AREA: the average over each output pixel's footprint, the right filter to shrink.
                image = frame.reformat(width=width, height=height, format="yuv420p", interpolation="AREA")
                image.pts, image.time_base = count, 1 / rate
                out.mux(target.encode(image))
                count += 1
            out.mux(target.encode(None))
    return buffer.getvalue(), count


def _chain(first, rest):
    yield first
    yield from rest
