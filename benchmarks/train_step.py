"""Training-step benchmark: plain PyTorch vs Ray Train on the same batches, and the data-wait
share when the real Ray Data pipeline feeds the step. Writes JSON.

    .venv/bin/python benchmarks/train_step.py --out bench-train.json
    .venv/bin/python benchmarks/train_step.py --gpu --steps 50 --out bench-train-gpu.json
"""

from __future__ import annotations

import argparse
import json

from fame_ray import logs
from fame_ray.bench import train as bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-train.json")
    parser.add_argument("--gpu", action="store_true", help="R(2+1)D-18 16x112x112 bf16 on one GPU")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--no-pipeline", action="store_true")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override key=value")
    args = parser.parse_args()
    logs.setup()
    result = bench.run(overrides=args.overrides, gpu=args.gpu, steps=args.steps, pipeline=not args.no_pipeline)
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)
    print(json.dumps({k: result[k] for k in ("plain", "ray_train", "ray_train_overhead")}, indent=2))


if __name__ == "__main__":
    main()
