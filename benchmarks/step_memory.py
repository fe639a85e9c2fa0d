"""Peak RSS of a few real training steps on CPU, next to fame-ray's estimate for the same run.

    .venv/bin/python benchmarks/step_memory.py --arch r2plus1d_18 --batch 12 --micro-batch 4
    .venv/bin/python benchmarks/step_memory.py --task pretrain --batch 4 --micro-batch 2

One process per measurement (peak RSS never goes down). Finetune: a uint8 batch through the
official augmentation (`classify.training_inputs`) and `classify.train_step`, as a worker
does; pretrain: `pretrain.step.train_step` on two uint8 views and FAME masks. Prints one JSON
line: peak RSS, seconds per step, and `fame_ray.models.memory.worker_memory` (which adds the
Ray worker's own footprint, absent here).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import torch

from fame_ray.components import augment
from fame_ray.config import DataConfig, FinetuneConfig, MoCoConfig, ModelConfig, PretrainConfig, TrainConfig
from fame_ray.downstream import classify
from fame_ray.models import memory
from fame_ray.models.backbones import build_backbone
from fame_ray.models.heads import build_classifier
from fame_ray.pretrain import step

CPU = torch.device("cpu")


def _clips(batch: int, frames: int, crop: int, seed: int) -> torch.Tensor:
    return torch.randint(
        0, 256, (batch, 3, frames, crop, crop), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


def finetune_steps(args) -> None:
    cfg = FinetuneConfig(
        pretrained="unused",
        data=DataConfig(frames_per_clip=args.frames, crop_size=args.crop),
        train=TrainConfig(global_batch=args.batch, micro_batch=args.micro_batch),
    )
    model = build_classifier(build_backbone(args.arch), 101, "finetune", 0.7).train()
    optimizer = classify.build_optimizer(model, 0.025, 1e-4, 0.9)
    for index in range(args.steps):
        clips = classify.training_inputs(
            _clips(args.batch, args.frames, args.crop, index),
            cfg,
            CPU,
            augment.make_generator([0, index]),
            augment.make_generator([0, index, 1]),
        )
        labels = torch.randint(0, 101, (args.batch,), generator=torch.Generator().manual_seed(index))
        classify.train_step(model, optimizer, clips, labels, args.micro_batch)


def pretrain_steps(args) -> None:
    cfg = PretrainConfig(
        data=DataConfig(frames_per_clip=args.frames, crop_size=args.crop),
        model=ModelConfig(arch=args.arch),
        moco=MoCoConfig(queue_size=2048),
        train=TrainConfig(global_batch=args.batch, micro_batch=args.micro_batch),
    )
    model, optimizer = step.build_training(cfg, CPU)
    for index in range(args.steps):
        batch = {
            "view_q": _clips(args.batch, args.frames, args.crop, 2 * index),
            "view_k": _clips(args.batch, args.frames, args.crop, 2 * index + 1),
            "mask": torch.randint(0, 2, (args.batch, args.crop, args.crop), dtype=torch.uint8),
        }
        step.train_step(model, optimizer, batch, 0.01, step.step_generators(0, index, 0, CPU), cfg, CPU)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["finetune", "pretrain"], default="finetune")
    parser.add_argument("--arch", default="r2plus1d_18")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--crop", type=int, default=112)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--micro-batch", type=int, default=0)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    started = time.perf_counter()
    (finetune_steps if args.task == "finetune" else pretrain_steps)(args)
    seconds = (time.perf_counter() - started) / args.steps
    workload = memory.Workload(args.task, args.arch, args.frames, args.crop, queue_size=2048)
    estimate = memory.worker_memory(workload, args.batch, args.micro_batch)
    print(
        json.dumps(
            {
                "task": args.task,
                "arch": args.arch,
                "clip": f"{args.frames}x{args.crop}x{args.crop}",
                "batch": args.batch,
                "micro_batch": args.micro_batch,
                "steps": args.steps,
                "threads": torch.get_num_threads(),
                "cpus": os.cpu_count(),
                "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, 2),
                "seconds_per_step": round(seconds, 1),
                "estimate_gb": round(estimate.total / 1e9, 2),
                "estimate_parts_gb": {k: round(v / 1e9, 2) for k, v in estimate.parts.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
