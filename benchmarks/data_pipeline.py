"""Data pipeline benchmark: bare decord decode vs decode + crop + FAME, JSON out.

Run from the repository root:

    .venv/bin/python benchmarks/data_pipeline.py --out bench-data.json
    .venv/bin/python benchmarks/data_pipeline.py --videos 64 --no-ray

Same as `fame-ray bench data`; the measurement itself lives in fame_ray/bench/data.py.
"""

from __future__ import annotations

import argparse
import json

import ray

from fame_ray.bench import data as bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-data.json")
    parser.add_argument("--data-root", default="", help="UCF101-layout folder (default: write synthetic videos)")
    parser.add_argument("--videos", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="config override, e.g. data.crop_size=224")
    args = parser.parse_args()
    if not args.no_ray:
        ray.init(include_dashboard=False, configure_logging=False, log_to_driver=False)
    result = bench.run(args.data_root, args.videos, args.batch, args.repeats, args.epochs, with_ray=not args.no_ray, overrides=args.overrides)
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
