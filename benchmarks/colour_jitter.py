"""Colour jitter: fame-ray's implementation against kornia's, on the same batches, in one run.

    python benchmarks/colour_jitter.py --out benchmarks/results/colour_jitter-2cpu.json

kornia's ColorJiggle (the definitions of the ColorJitter the official FAME code ran) inside a
VideoSequential with same_on_frame=True, as the official `Augment_GPU_pre`, against
`fame_ray.components.augment.jitter` with the same probability 1 and ranges. Both get the same
uint8-derived float clips; best of N repetitions, interleaved. kornia is not a fame-ray
dependency: `pip install kornia` to run this.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time

import torch

from fame_ray.components import augment


def _time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="colour_jitter.json")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import kornia
    from kornia.augmentation.container import VideoSequential

    torch.set_num_threads(1)
    clips = torch.rand(args.batch, 3, args.frames, args.size, args.size, generator=torch.Generator().manual_seed(0))
    theirs = VideoSequential(
        kornia.augmentation.ColorJiggle(0.4, 0.4, 0.4, 0.1, p=1.0), data_format="BCTHW", same_on_frame=True
    )
    params = augment.AugmentParams(grayscale_p=0.0, jitter_p=1.0, blur_p=0.0)
    generator = augment.make_generator(0)
    ours_s = kornia_s = 0.0
    for _ in range(2):  # interleaved rounds, so that load affects both alike
        ours_s = _time(lambda: augment._jitter(clips, params, generator, generator), args.repeats)
        kornia_s = _time(lambda: theirs(clips), args.repeats)
    result = {
        "setup": {"batch": args.batch, "frames": args.frames, "size": args.size, "threads": 1, "repeats": args.repeats},
        "fame_ray_ms_per_batch": 1000 * ours_s,
        "kornia_colorjiggle_ms_per_batch": 1000 * kornia_s,
        "kornia_over_fame_ray": kornia_s / ours_s,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "kornia": kornia.__version__,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
    }
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)
    print(
        f"fame-ray {result['fame_ray_ms_per_batch']:.1f} ms, kornia ColorJiggle "
        f"{result['kornia_colorjiggle_ms_per_batch']:.1f} ms per batch (x{result['kornia_over_fame_ray']:.2f})"
    )


if __name__ == "__main__":
    main()
