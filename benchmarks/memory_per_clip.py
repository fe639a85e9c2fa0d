"""Memory calibration: peak RSS of one training step per backbone on CPU, measured at small
sizes, as bytes per clip voxel (frames x crop x crop). These figures are the constants of
`fame_ray.models.memory`. Each measurement runs in a fresh process (peak RSS never goes down).

    .venv/bin/python benchmarks/memory_per_clip.py --out benchmarks/results/memory_per_clip-2cpu.json

For each arch, the slope of peak RSS over the number of clips (two batch sizes, the same clip
size) is the memory one more clip costs: in 'train' a forward + backward + SGD step of the
finetuning classifier (saved activations, their gradients, the CPU convolution workspaces),
in 'eval' a forward under no_grad. 'augment' is the finetune input path over a uint8 batch, 'pretrain_inputs'
pretraining's (FAME
merge, augmentation of both views), 'pretrain' a whole MoCo + FAME step.
Grads, optimizer state and the process itself are the same at both batch sizes and cancel out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

# (arch, frames, crop, smaller batch, larger batch): the clip size R(2+1)D-18 and R3D-18 are
# trained at (16x112x112), with batches small enough for a shared 2-CPU machine.
TRAIN_SIZES = [
    ("tiny", 16, 112, 2, 6),
    ("r3d_18", 16, 112, 1, 3),
    ("r2plus1d_18", 16, 112, 1, 3),
    ("i3d", 16, 112, 1, 3),
]
# A second clip size per arch (I3D: its own 224 crop), to see how memory scales with the volume.
CHECK_SIZES = [
    ("tiny", 8, 64, 2, 6),
    ("r3d_18", 8, 64, 2, 6),
    ("r2plus1d_18", 8, 64, 2, 6),
    ("i3d", 8, 224, 1, 3),
]
# Forward under no_grad: less memory per clip, so larger batches for a clear slope.
EVAL_SIZES = [
    ("tiny", 16, 112, 4, 12),
    ("r3d_18", 16, 112, 2, 6),
    ("r2plus1d_18", 16, 112, 2, 6),
    ("i3d", 16, 112, 4, 12),
]
# A whole pretraining step (both views, symmetric MoCo loss), to check the estimate's 2 x train.
PRETRAIN_SIZES = [("r2plus1d_18", 16, 112, 1, 3)]
# The pretraining input path: FAME merge, augmentation and normalisation of both views.
PRETRAIN_INPUT_SIZES = [("tiny", 16, 112, 8, 24)]
# The finetune input path (uint8 batch -> augmented float batch); the arch plays no part.
AUGMENT_SIZES = [("tiny", 16, 112, 8, 24)]


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> None:
    """Start the peak over (Linux: writing 5 to clear_refs resets VmHWM), so that building the
    model or importing torch cannot hide a small step's peak."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _peak() -> int:
    with open("/proc/self/status") as handle:
        line = next(line for line in handle if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def measure_one(kind: str, arch: str, frames: int, crop: int, clips: int) -> dict:
    """In this (fresh) process: RSS before, and peak RSS over one step of `kind`."""
    import torch

    from fame_ray.components import augment
    from fame_ray.config import FinetuneConfig
    from fame_ray.downstream import classify
    from fame_ray.models.backbones import build_backbone
    from fame_ray.models.heads import build_classifier

    torch.manual_seed(0)
    model = build_classifier(build_backbone(arch), 101, "finetune", 0.0)
    optimizer = classify.build_optimizer(model, 0.01, 1e-4, 0.9)
    if kind == "augment":
        data = torch.randint(0, 256, (clips, 3, frames, crop, crop), dtype=torch.uint8)
        cfg = FinetuneConfig(pretrained="unused")
        before = _rss()
        _reset_peak()
        classify.training_inputs(data, cfg, torch.device("cpu"), augment.make_generator(1), augment.make_generator(2))
        return {"rss_before": before, "peak": _peak()}
    if kind in ("pretrain", "pretrain_inputs"):
        return _pretrain_step(arch, frames, crop, clips, inputs_only=kind == "pretrain_inputs")
    inputs = torch.randn(clips, 3, frames, crop, crop)
    labels = torch.zeros(clips, dtype=torch.long)
    before = _rss()
    _reset_peak()
    if kind == "train":
        classify.train_step(model.train(), optimizer, inputs, labels, 0)
    else:
        with torch.no_grad():
            model.eval()(inputs)
    return {"rss_before": before, "peak": _peak()}


def _pretrain_step(arch: str, frames: int, crop: int, clips: int, inputs_only: bool = False) -> dict:
    import torch

    from fame_ray.config import DataConfig, MoCoConfig, ModelConfig, PretrainConfig, TrainConfig
    from fame_ray.pretrain import step

    cfg = PretrainConfig(
        data=DataConfig(frames_per_clip=frames, crop_size=crop),
        model=ModelConfig(arch=arch),
        moco=MoCoConfig(queue_size=2048),
        train=TrainConfig(global_batch=1),
    )
    model, optimizer = step.build_training(cfg, torch.device("cpu"))
    clip = lambda: torch.randint(0, 256, (clips, 3, frames, crop, crop), dtype=torch.uint8)  # noqa: E731
    batch = {"view_q": clip(), "view_k": clip(), "mask": torch.randint(0, 2, (clips, crop, crop), dtype=torch.uint8)}
    generators = step.step_generators(0, 0, 0, torch.device("cpu"))
    before = _rss()
    _reset_peak()
    if inputs_only:
        step.views(batch, cfg, generators, torch.device("cpu"))
    else:
        step.train_step(model, optimizer, batch, 0.01, generators, cfg, torch.device("cpu"))
    return {"rss_before": before, "peak": _peak()}


def _in_fresh_process(kind: str, arch: str, frames: int, crop: int, clips: int) -> dict:
    spec = json.dumps([kind, arch, frames, crop, clips])
    done = subprocess.run(
        [sys.executable, __file__, "--one", spec], capture_output=True, text=True, check=True, timeout=1200
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def slope(kind: str, arch: str, frames: int, crop: int, small: int, large: int) -> dict:
    """Bytes one more clip costs, and per voxel, from two fresh processes."""
    low, high = (_in_fresh_process(kind, arch, frames, crop, n) for n in (small, large))
    per_clip = (high["peak"] - low["peak"]) / (large - small)
    voxels = frames * crop * crop
    return {
        "kind": kind,
        "arch": arch,
        "frames": frames,
        "crop": crop,
        "clips": [small, large],
        "peak_bytes": [low["peak"], high["peak"]],
        "rss_before": low["rss_before"],
        "bytes_per_clip": per_clip,
        "bytes_per_voxel": per_clip / voxels,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="memory_per_clip.json")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--arch", action="append", help="only these archs")
    parser.add_argument(
        "--kind", action="append", help="only these kinds: train, eval, pretrain, pretrain_inputs, augment"
    )
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(*json.loads(args.one))))
        return
    wanted = lambda rows: [row for row in rows if not args.arch or row[0] in args.arch]  # noqa: E731
    results = []
    plan = [
        ("train", TRAIN_SIZES),
        ("train", CHECK_SIZES),
        ("eval", EVAL_SIZES),
        ("pretrain", PRETRAIN_SIZES),
        ("pretrain_inputs", PRETRAIN_INPUT_SIZES),
        ("augment", AUGMENT_SIZES),
    ]
    for kind, rows in plan:
        for row in wanted(rows) if not args.kind or kind in args.kind else []:
            results.append(slope(kind, *row))
            print(json.dumps(results[-1]), flush=True)
    import torch

    machine = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    with open(args.out, "w") as handle:
        json.dump({"measurements": results, "machine": machine}, handle, indent=2)


if __name__ == "__main__":
    main()
