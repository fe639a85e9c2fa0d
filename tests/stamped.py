"""Stamped test videos: every frame carries its index, so a decoded frame tells which one it is.

A frame is a 5 x 4 grid of black or white cells over its top four fifths (12 bits of the
index, then its 8-bit CRC, which any one or two wrong cells break) and a band of fresh noise below,
so that packets have a realistic size (a cut lands inside one) while no encoder blurs a cell
from black to white. `read_stamp` recovers the index from a decoded RGB frame, or None when a
cell is neither black nor white or the check bits disagree (a frame the decoder made up from
a cut packet, a blend of two frames).

`write_matrix(folder)` writes the formats of `SPECS` and the four files made by remuxing,
cutting or joining (`EDIT_LIST`, `NO_KEYFRAME_START`, `TRUNCATED`, `CONCATENATED`), with PyAV
only, and returns a `Sample` per file: its path and `shown`, the stamps a player shows, in
order (frame i of the video is the frame that carries stamp shown[i]; for the truncated file,
the frames that are whole).

    samples = write_matrix(tmp_path)
    assert stamps_by_pyav(samples["mp4_edit_list"].path) == samples["mp4_edit_list"].shown
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

BITS = 12  # up to 4096 frames
CHECK_BITS = 8
ROWS, COLS = 5, 4
STAMP_SHARE = 0.8  # the top 80% of the frame holds the grid, the rest is noise


def stamp_image(index: int, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """An RGB frame (H W 3 uint8) carrying `index`."""
    if not 0 <= index < 1 << BITS:
        raise ValueError(f"index {index} does not fit {BITS} bits")
    word = index | _check(index) << BITS
    bits = [(word >> b) & 1 for b in range(BITS + CHECK_BITS)]
    image = np.empty((height, width, 3), np.uint8)
    grid_h = int(height * STAMP_SHARE)
    for cell, bit in enumerate(bits):
        (y0, y1), (x0, x1) = _cell(cell, width, grid_h)
        image[y0:y1, x0:x1] = 255 if bit else 0
    image[grid_h:] = rng.integers(0, 256, (height - grid_h, width, 3), dtype=np.uint8)
    return image


def _check(index: int) -> int:
    """CRC-8 (polynomial x^8 + x^2 + x + 1) of the index's BITS bits."""
    crc = 0
    for b in reversed(range(BITS)):
        feedback = (crc >> 7) ^ ((index >> b) & 1)
        crc = ((crc << 1) & 0xFF) ^ (0x07 if feedback else 0)
    return crc


def _cell(cell: int, width: int, grid_h: int) -> tuple[tuple[int, int], tuple[int, int]]:
    row, col = divmod(cell, COLS)
    return (row * grid_h // ROWS, (row + 1) * grid_h // ROWS), (col * width // COLS, (col + 1) * width // COLS)


def read_stamp(frame: np.ndarray) -> int | None:
    """The index a decoded RGB frame (H W 3) carries, or None when it carries none cleanly."""
    height, width = frame.shape[:2]
    grid_h = int(height * STAMP_SHARE)
    bits = []
    for cell in range(ROWS * COLS):
        (y0, y1), (x0, x1) = _cell(cell, width, grid_h)
        dy, dx = (y1 - y0) // 4, (x1 - x0) // 4  # the centre half: away from ringing at the edges
        level = float(frame[y0 + dy : y1 - dy, x0 + dx : x1 - dx].mean())
        if 96 < level < 160:
            return None
        bits.append(int(level >= 128))
    word = sum(bit << b for b, bit in enumerate(bits))
    index = word & ((1 << BITS) - 1)
    return index if word >> BITS == _check(index) else None


def stamps_by_pyav(path: str) -> list[int | None]:
    """The stamps of every frame PyAV shows, in order (edit lists honoured)."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        return [read_stamp(frame.to_ndarray(format="rgb24")) for frame in container.decode(stream)]


@dataclass(frozen=True)
class Sample:
    """One written video: where it is and the stamps a player shows, in order."""

    name: str
    path: str
    shown: list[int]
    width: int = 160
    height: int = 120
    """Size as coded (before any rotation)."""
    rotation: int = 0
    """Degrees the display matrix turns the picture (decord turns the frames it returns)."""


@dataclass(frozen=True)
class Spec:
    """How one stamped video is encoded."""

    codec: str
    container: str  # PyAV format name
    suffix: str
    frames: int = 90
    width: int = 160
    height: int = 120
    options: dict | None = None
    rate: int = 25
    durations: tuple[int, ...] = ()  # variable frame rate: frame durations in ms, cycled
    first_pts: int = 0  # in frames: a late start
    audio: bool = False
    rotation: int = 0


X264 = {"preset": "ultrafast", "crf": "18"}
MPEG4 = {"g": "12", "b": "2000000"}  # FFmpeg's MPEG-4 Part 2 (the Xvid/DivX format of UCF101, HMDB51)
CLOSED = {"flags": "+cgop", "sc_threshold": "1000000000"}  # MPEG-4 Part 2 closed GOPs (no scene cuts)
X265 = {"preset": "ultrafast"}
ONE_KEYFRAME = "keyint=1000:min-keyint=1000:scenecut=0"  # x264: no keyframe after the first


def _x264(params: str) -> dict:
    return {**X264, "x264-params": params}


def _x265(params: str) -> dict:
    return {**X265, "x265-params": "log-level=error:" + params}


SPECS = {
    # MPEG-4 Part 2 in AVI, as UCF101 and HMDB51 ship it
    "avi_mpeg4": Spec("mpeg4", "avi", ".avi", options=MPEG4),
    "avi_mpeg4_odd_size": Spec("mpeg4", "avi", ".avi", width=341, height=255, options=MPEG4),
    "avi_mpeg4_bframes": Spec("mpeg4", "avi", ".avi", options={**MPEG4, "bf": "2"}),  # FFmpeg's default: open GOPs
    "avi_mpeg4_bframes_closed_gop": Spec("mpeg4", "avi", ".avi", options={**MPEG4, **CLOSED, "bf": "2"}),
    "mkv_mpeg4_bframes_closed_gop": Spec("mpeg4", "matroska", ".mkv", options={**MPEG4, **CLOSED, "bf": "2"}),
    "avi_h264": Spec("libx264", "avi", ".avi", options=_x264("keyint=24:bframes=0")),
    # One keyframe, as the built-in synthetic videos are written: decord never seeks inside them
    "avi_h264_one_keyframe": Spec("libx264", "avi", ".avi", options=_x264(ONE_KEYFRAME + ":bframes=0")),
    "avi_mpeg4_bframes_one_keyframe": Spec("mpeg4", "avi", ".avi", options={**MPEG4, **CLOSED, "g": "1000", "bf": "2"}),
    # H.264 in MP4, Matroska, FLV, MPEG-TS
    "mp4_h264_high_bframes": Spec(
        "libx264", "mp4", ".mp4", options={**_x264("keyint=24:bframes=3:b-pyramid=normal:b-adapt=0"), "profile": "high"}
    ),
    "mp4_h264_long_gop": Spec(
        "libx264", "mp4", ".mp4", frames=300, options=_x264("keyint=250:min-keyint=250:scenecut=0:bframes=2")
    ),
    "mp4_h264_open_gop": Spec("libx264", "mp4", ".mp4", options=_x264("keyint=24:bframes=3:open-gop=1")),
    "mp4_h264_aac": Spec("libx264", "mp4", ".mp4", options=_x264("keyint=30:bframes=2"), audio=True),
    "mp4_h264_vfr": Spec(
        "libx264", "mp4", ".mp4", options=_x264("keyint=30:bframes=2"), durations=(40, 33, 50, 20, 67)
    ),
    "mp4_h264_late_start": Spec("libx264", "mp4", ".mp4", options=_x264("keyint=30:bframes=2"), first_pts=50),
    "mp4_h264_rotated": Spec("libx264", "mp4", ".mp4", options=_x264("keyint=30:bframes=2"), rotation=90),
    "mkv_h264_late_start": Spec("libx264", "matroska", ".mkv", options=_x264("keyint=30:bframes=2"), first_pts=50),
    "flv_h264_bframes": Spec("libx264", "flv", ".flv", options=_x264("keyint=24:bframes=3")),
    "ts_h264": Spec("libx264", "mpegts", ".ts", options=_x264("keyint=24:bframes=0")),
    "ts_h264_bframes": Spec("libx264", "mpegts", ".ts", options=_x264("keyint=24:bframes=3")),
    "ts_h264_bframes_one_keyframe": Spec("libx264", "mpegts", ".ts", options=_x264(ONE_KEYFRAME + ":bframes=3")),
    # beyond H.264
    "webm_vp9": Spec(
        "libvpx-vp9",
        "webm",
        ".webm",
        options={"deadline": "realtime", "cpu-used": "8", "g": "30", "lag-in-frames": "16", "auto-alt-ref": "1"},
    ),
    "webm_vp8": Spec(
        "libvpx",
        "webm",
        ".webm",
        options={"deadline": "realtime", "cpu-used": "8", "g": "30", "lag-in-frames": "16", "auto-alt-ref": "1"},
    ),
    "mp4_hevc": Spec("libx265", "mp4", ".mp4", options=_x265("keyint=30:bframes=3")),  # x265's default: open GOPs
    "mp4_hevc_closed_gop": Spec("libx265", "mp4", ".mp4", options=_x265("keyint=30:bframes=3:open-gop=0")),
    "mp4_hevc_one_bframe": Spec("libx265", "mp4", ".mp4", options=_x265("keyint=30:bframes=1:open-gop=0")),
    "mkv_av1": Spec("libsvtav1", "matroska", ".mkv", options={"preset": "10", "g": "30"}),
}
EDIT_LIST = "mp4_edit_list"  # a stream copy cut after a keyframe: its edit list hides 6 frames
NO_KEYFRAME_START = "mp4_no_keyframe_start"  # a stream copy cut after a keyframe, without an edit list
TRUNCATED = "avi_truncated"  # an AVI cut inside its 161st packet; its header promises 200 frames
CONCATENATED = "ts_concatenated"  # two MPEG-TS files joined end to end: decoding times go backwards


def encoder_missing(spec: Spec) -> bool:
    return spec.codec not in av.codecs_available


def write(spec: Spec, path: str, seed: int = 0) -> list[int]:
    """Encode frames stamped 0 .. spec.frames - 1 as `spec` says; returns the stamps written."""
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1: errors only
    rng = np.random.default_rng(seed)
    with av.open(path, "w", format=spec.container) as container:
        stream = container.add_stream(spec.codec, rate=spec.rate, options=dict(spec.options or {}))
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        if spec.durations:
            stream.codec_context.time_base = Fraction(1, 1000)
        if spec.rotation:
            stream.set_display_rotation(spec.rotation)
        audio = container.add_stream("aac", rate=44100, layout="mono") if spec.audio else None
        audio_samples, pts = 0, spec.first_pts
        for index in range(spec.frames):
            frame = av.VideoFrame.from_ndarray(stamp_image(index, spec.width, spec.height, rng), format="rgb24")
            if spec.durations:
                frame.pts, frame.time_base = pts, Fraction(1, 1000)
                pts += spec.durations[index % len(spec.durations)]
            else:
                frame.pts, frame.time_base = pts, Fraction(1, spec.rate)
                pts += 1
            container.mux(stream.encode(frame))
            while audio is not None and audio_samples < (index + 1) * audio.rate // spec.rate:
                audio_samples = _mux_tone(container, audio, audio_samples)
        container.mux(stream.encode(None))
        if audio is not None:
            container.mux(audio.encode(None))
    return list(range(spec.frames))


def _mux_tone(container, stream, samples: int) -> int:
    size = stream.codec_context.frame_size or 1024
    wave = (0.2 * np.sin(2 * np.pi * 440 * (samples + np.arange(size)) / stream.rate)).astype(np.float32)
    frame = av.AudioFrame.from_ndarray(wave[None, :], format="fltp", layout="mono")
    frame.sample_rate, frame.pts, frame.time_base = stream.rate, samples, Fraction(1, stream.rate)
    container.mux(stream.encode(frame))
    return samples + size


def _stream_copy(source: str, path: str, first: int, shift: int) -> None:
    """Copy the video packets shown from frame `first` on into an MP4, their times moved `shift` frames earlier."""
    with av.open(source) as inp, av.open(path, "w", format="mp4") as out:
        stream = inp.streams.video[0]
        copy = out.add_stream_from_template(stream)
        step = round(1 / (stream.guessed_rate * stream.time_base))  # one frame in the stream's time base
        for packet in inp.demux(stream):
            if packet.dts is None or packet.pts < first * step:
                continue
            packet.pts -= shift * step
            packet.dts -= shift * step
            packet.stream = copy
            out.mux(packet)


def write_edit_list(path: str, seed: int = 0) -> list[int]:
    """What `ffmpeg -ss 1.44 -i src.mp4 -c copy` writes: an H.264 stream copied from the keyframe
    before the cut (frame 30 of 180) whose edit list starts playback six frames later (frame 36):
    the copied frames before it get negative times, which the MP4 muxer hides with an edit list.
    The file holds 150 frames, players show 144; returns the stamps they show."""
    source = path + ".source.mp4"
    write(
        Spec("libx264", "mp4", ".mp4", frames=180, options=_x264("keyint=30:min-keyint=30:scenecut=0:bframes=2")),
        source,
        seed,
    )
    _stream_copy(source, path, first=30, shift=36)
    os.remove(source)
    return list(range(36, 180))


def write_no_keyframe_start(path: str, seed: int = 0) -> list[int]:
    """A stream copy that starts 6 frames after a keyframe, with no edit list (what a cut
    recording or a careless remux leaves): 84 frames in the file; the decoder drops the 24
    before the next keyframe (nothing to predict them from), players show the 60 from it on."""
    source = path + ".source.mp4"
    write(
        Spec("libx264", "mp4", ".mp4", frames=90, options=_x264("keyint=30:min-keyint=30:scenecut=0:bframes=0")),
        source,
        seed,
    )
    _stream_copy(source, path, first=6, shift=6)
    os.remove(source)
    return list(range(30, 90))


def write_truncated_avi(path: str, seed: int = 0) -> list[int]:
    """An MPEG-4 Part 2 AVI of 200 frames (no B-frames) cut inside its 161st packet, as a partial
    download leaves it: the header still promises 200 frames, 161 packets are left, the last of
    them half there. Returns the stamps of the frames that are whole (0 .. 159)."""
    full = path + ".full.avi"
    write(Spec("mpeg4", "avi", ".avi", frames=200, options=MPEG4), full, seed)
    with av.open(full) as container:
        packets = [(packet.pos, packet.size) for packet in container.demux(video=0) if packet.size]
    position, size = packets[160]
    with open(full, "rb") as handle:
        data = handle.read()
    with open(path, "wb") as handle:
        handle.write(data[: position + 8 + size // 2])  # the chunk header (8 bytes), half its payload
    os.remove(full)
    return list(range(160))


def write_concatenated(path: str, seed: int = 0) -> list[int]:
    """Two H.264 MPEG-TS files joined end to end (`cat a.ts b.ts`, a common way recordings are
    put together): 60 frames whose times start at frame 100, then 60 whose times start at 0.
    Players show them in file order; returns the stamps they show (0 .. 59 twice)."""
    parts = []
    for part, first in enumerate((100, 0)):
        spec = Spec("libx264", "mpegts", ".ts", frames=60, options=_x264("keyint=24:bframes=0"), first_pts=first)
        write(spec, f"{path}.{part}.ts", seed + part)
        with open(f"{path}.{part}.ts", "rb") as handle:
            parts.append(handle.read())
        os.remove(f"{path}.{part}.ts")
    with open(path, "wb") as handle:
        handle.write(b"".join(parts))
    return list(range(60)) * 2


def write_matrix(folder: str, seed: int = 0) -> dict[str, Sample]:
    """Every format of SPECS whose encoder this PyAV has, and the remuxed and cut files."""
    os.makedirs(folder, exist_ok=True)
    samples = {}
    for name, spec in SPECS.items():
        if encoder_missing(spec):
            continue
        path = os.path.join(folder, name + spec.suffix)
        samples[name] = Sample(name, path, write(spec, path, seed), spec.width, spec.height, spec.rotation)
    for name, suffix, writer in (
        (EDIT_LIST, ".mp4", write_edit_list),
        (NO_KEYFRAME_START, ".mp4", write_no_keyframe_start),
        (TRUNCATED, ".avi", write_truncated_avi),
        (CONCATENATED, ".ts", write_concatenated),
    ):
        path = os.path.join(folder, name + suffix)
        samples[name] = Sample(name, path, writer(path, seed))
    return samples
