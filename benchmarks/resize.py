"""The resize of a training crop three ways, JSON out: uint8 bilinear without antialiasing
(fame-ray's default, the official kernel), uint8 bilinear with antialiasing (the option
`data.resize_antialias`), and the official float path (torchvision's `_functional_video.resize`:
F.interpolate on float clips in [0, 1], bilinear, no antialiasing); time per clip and how far
each lands from the official float result.

    .venv/bin/python benchmarks/resize.py --out benchmarks/results/resize-2cpu-epyc.json

Clips: 16 random 320x240 frames (UCF101's size); each repetition draws one random resized crop
box (area 0.2-1, as the recipe) and resizes it to 112x112, the same boxes for all three ways.
One thread (a decode task holds one CPU).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from fame_ray.bench.data import machine
from fame_ray.data.clips import transforms


def official_float(region: np.ndarray, size: int) -> torch.Tensor:
    """The official path: uint8 T H W C -> float C T H W in [0, 1] -> bilinear without antialiasing."""
    clip = torch.from_numpy(np.ascontiguousarray(region)).permute(3, 0, 1, 2).float() / 255
    return F.interpolate(clip, size=(size, size), mode="bilinear", align_corners=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-resize.json")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--size", type=int, default=112)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (16, 240, 320, 3), dtype=np.uint8)
    boxes = [transforms.random_resized_crop_box(240, 320, (0.2, 1.0), rng) for _ in range(args.repeats)]
    regions = [clip[:, top : top + h, left : left + w] for top, left, h, w in boxes]
    ways = {
        "uint8_bilinear": lambda region: transforms.resize(region, args.size, args.size),
        "uint8_bilinear_antialias": lambda region: transforms.resize(region, args.size, args.size, antialias=True),
        "float_bilinear_official": lambda region: official_float(region, args.size),
    }
    out = {}
    for name, resize in ways.items():
        resize(regions[0])  # warm up
        started = time.perf_counter()
        results = [resize(region) for region in regions]
        elapsed = time.perf_counter() - started
        differences = [
            float(
                (torch.as_tensor(np.asarray(r)).float().permute(3, 0, 1, 2) / 255 - official_float(g, args.size))
                .abs()
                .max()
            )
            if name != "float_bilinear_official"
            else 0.0
            for r, g in zip(results, regions)
        ]
        out[name] = {"ms_per_clip": 1000 * elapsed / len(regions), "max_abs_difference_from_official": max(differences)}
    result = {
        "machine": machine(),
        "setup": {"frames": 16, "frame": "320x240", "crop": args.size, "threads": 1},
        "resize": out,
    }
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
