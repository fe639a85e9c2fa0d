"""What `fame-ray data transcode` costs and buys: disk before and after, transcoding time, and the
bare decode speed of random training clips from the original and from each copy, JSON out.

Run from the repository root:

    .venv/bin/python benchmarks/transcode.py --out benchmarks/results/transcode-geometry-2cpu-epyc.json  # 0, 128
    .venv/bin/python benchmarks/transcode.py --short-side 256 --out benchmarks/results/transcode-256-2cpu-epyc.json
    .venv/bin/python benchmarks/transcode.py --videos-per-class 4 --seconds 10    # a quick look

Steps: write a synthetic UCF101-layout dataset (what `fame-ray synth --frames 175 --size 320x240`
writes: H.264, x264's default of one keyframe every 250 frames, so one per video), transcode it
with the real Ray job (a local instance) once per --short-side (0 = the frame size kept, the
default copy), then decode random clips (16 frames, stride 2, decord, one thread, one process)
from the original and from every copy, in turn in short blocks so that all sides see the same
machine load, at least --seconds of decoding per side. Each clip opens its video and decodes
its frames in one `get_batch`, as the training pipeline does.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import tempfile
import time

import decord
import numpy as np
import ray

from fame_ray.bench.data import machine
from fame_ray.config import DataConfig
from fame_ray.data import synthetic, transcode
from fame_ray.data.clips import sampling
from fame_ray.data.transcode import EncodeSettings
from fame_ray.storage import Location

FRAMES_PER_CLIP, STRIDE = 16, 2
BLOCK_S = 2.0  # decode time per side before switching to the other


def _clip(path: str, offset: int) -> None:
    reader = decord.VideoReader(path, num_threads=1)
    indices = sampling.clip_indices(0, len(reader), offset, FRAMES_PER_CLIP, STRIDE)
    reader.get_batch(indices.tolist()).asnumpy()


def decode_speed(roots: dict[str, str], videos: list[str], frames: int, seconds: float, seed: int) -> dict:
    """Clips per second (CPU and wall time) from each root ({name: folder}, 'original' first): the
    same video and offset sequence on every side, blocks of BLOCK_S seconds in turn until each
    side has `seconds`; each copy's speedup over the original."""
    rng = np.random.default_rng(seed)
    span = (FRAMES_PER_CLIP - 1) * STRIDE + 1
    plan = [(videos[int(rng.integers(len(videos)))], int(rng.integers(0, frames - span + 1))) for _ in range(200_000)]
    sides = {name: {"root": root, "clips": 0, "cpu_s": 0.0, "wall_s": 0.0, "next": 0} for name, root in roots.items()}
    while min(side["wall_s"] for side in sides.values()) < seconds:
        for side in sides.values():
            cpu, wall = time.process_time(), time.perf_counter()
            while time.perf_counter() - wall < BLOCK_S:
                video, offset = plan[side["next"]]
                _clip(os.path.join(side["root"], video), offset)
                side["next"] += 1
                side["clips"] += 1
            side["cpu_s"] += time.process_time() - cpu
            side["wall_s"] += time.perf_counter() - wall
    out = {
        name: {
            "clips": s["clips"],
            "cpu_s": round(s["cpu_s"], 2),
            "wall_s": round(s["wall_s"], 2),
            "clips_per_s_cpu": s["clips"] / s["cpu_s"],
            "clips_per_s_wall": s["clips"] / s["wall_s"],
        }
        for name, s in sides.items()
    }
    for name in roots:
        if name != "original":
            out[name]["speedup_cpu"] = out[name]["clips_per_s_cpu"] / out["original"]["clips_per_s_cpu"]
            out[name]["speedup_wall"] = out[name]["clips_per_s_wall"] / out["original"]["clips_per_s_wall"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-transcode.json")
    parser.add_argument("--classes", type=int, default=6)
    parser.add_argument("--videos-per-class", type=int, default=8)
    parser.add_argument("--frames", type=int, default=175, help="UCF101's median clip is about 7 s at 25 fps")
    parser.add_argument("--size", default="320x240", help="UCF101's frame size")
    parser.add_argument(
        "--short-side", type=int, nargs="+", default=[0, 128], help="one copy per value; 0 keeps the frame size"
    )
    parser.add_argument("--gop", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0, help="decode time per side, at least")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    work = tempfile.mkdtemp(prefix="fame-ray-bench-transcode-")
    original = os.path.join(work, "UCF101")
    started = time.perf_counter()
    synthetic.write_dataset(
        original,
        "ucf101",
        num_classes=args.classes,
        videos_per_class=args.videos_per_class,
        frames=args.frames,
        width=width,
        height=height,
        seed=args.seed,
    )
    synth_s = time.perf_counter() - started
    ray.init(address="local", include_dashboard=False, configure_logging=False, log_to_driver=False)
    data = DataConfig(dataset="ucf101", data_root=original)
    roots, copies = {"original": original}, {}
    for short_side in args.short_side:
        name = "kept" if short_side == 0 else f"short_side_{short_side}"
        settings = EncodeSettings(short_side=short_side, gop=args.gop)
        roots[name] = os.path.join(work, f"UCF101-{name}")
        job = transcode.run(data, data.location(), Location.parse(roots[name]), settings)
        copies[name] = {
            "settings": dataclasses.asdict(settings),
            "bytes_before": job.bytes_before,
            "bytes_after": job.bytes_after,
            "ratio": job.ratio,
            "mib_per_video_after": job.bytes_after / max(job.transcoded, 1) / 2**20,
            "transcode_s": round(job.seconds, 1),
            "videos_per_s": job.transcoded / max(job.seconds, 1e-9),
            "skipped": len(job.skipped),
        }
    cpus = ray.cluster_resources().get("CPU", 0)
    ray.shutdown()
    videos = sorted(
        os.path.relpath(os.path.join(d, f), original)
        for d, _, files in os.walk(os.path.join(original, "UCF-101"))
        for f in files
    )
    speed = decode_speed(roots, videos, args.frames, args.seconds, args.seed)
    shutil.rmtree(work)
    result = {
        "machine": machine(),
        "setup": {
            "videos": len(videos),
            "frames": args.frames,
            "size": args.size,
            "fps": 25,
            "original_codec": "H.264 (synth: x264 ultrafast, crf 20, default keyint 250)",
            "frames_per_clip": FRAMES_PER_CLIP,
            "temporal_stride": STRIDE,
            "decode_threads": 1,
            "synth_s": round(synth_s, 1),
            "ray_cpus": cpus,
        },
        "copies": copies,
        "decode": speed,
    }
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
