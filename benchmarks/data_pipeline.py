"""Data plane benchmark at steady state on UCF101- and Kinetics-sized videos, original and
transcoded, JSON out.

Run from the repository root:

    .venv/bin/python benchmarks/data_pipeline.py --out benchmarks/results/data_pipeline-2cpu.json
    .venv/bin/python benchmarks/data_pipeline.py --sets ucf101 --seconds 5 --pretrain-steps 0   # a quick look

Same as `fame-ray bench data`; the measurement itself lives in fame_ray/bench/data.py.
"""

from __future__ import annotations

import argparse
import json

from fame_ray.bench import data as bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench-data.json")
    parser.add_argument(
        "--root", default="fame-ray-bench", help="folder of the benchmark's videos (kept for the next run)"
    )
    parser.add_argument("--videos", type=int, default=24, help="videos per set")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of work per side of every figure")
    parser.add_argument("--sets", nargs="*", default=list(bench.SETS), choices=list(bench.SETS))
    parser.add_argument("--pretrain-steps", type=int, default=40)
    args = parser.parse_args()
    result = bench.run(args.root, args.videos, args.seconds, args.sets, args.pretrain_steps)
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
