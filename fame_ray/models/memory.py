"""How much memory one training worker needs, estimated before a run starts.

Pure arithmetic over measured constants (no torch, no Ray), so that a configuration that
cannot fit is refused in a second instead of being killed an hour in:

    worker = process + weights and training state + the per-worker batch's inputs
             + activations of the clips that go through the model at once

- weights and state: fp32 weights; finetuning adds a gradient and an SGD momentum per trained
  weight (the linear probe trains only the classifier); MoCo keeps the momentum key encoder
  and the queue (with the two copies a step scores against, `MoCo.prepare_keys`) besides.
- inputs: the whole per-worker batch is decoded and augmented at once, whatever the micro
  batch (uint8 clips, float views, the colour augmentation's temporaries, a prefetched batch).
- activations: what a forward keeps for the backward, grown with the clips in the model at
  once: the micro batch (`train.micro_batch`), or the whole per-worker batch without one.
  `choose_micro_batch` resolves `train.micro_batch: auto` to the largest that fits.
  MoCo's symmetric loss runs two query forwards per clip before its backward (2 x finetuning);
  the key encoder and testing run under no_grad, in a phase of their own, and cost less.

Constants come from `benchmarks/memory_per_clip.py` (results in
benchmarks/results/memory_per_clip-2cpu-epyc.json): peak RSS of one step on CPU (torch 2.13,
2 threads), measured in a fresh process per point; the slope between two batch sizes at the
same clip size is what one more clip costs, divided by the clip's voxels (frames x crop x
crop) so that it scales with the clip. The figures hold for CPU training; on a GPU the
activations live in GPU memory, which this estimate does not cover.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from fame_ray.errors import UserError

log = logging.getLogger(__name__)
GB = 1e9
FLOAT_BYTES = 4


@dataclass(frozen=True)
class ArchMemory:
    """What one backbone costs."""

    parameters: int
    """Backbone parameters (tests/unit/test_memory.py counts them on `build_backbone`)."""
    feature_dim: int
    """Width of the pooled features (the classifier's and MoCo head's input)."""
    train_bytes_per_voxel: float
    """Peak RSS one more clip adds to a finetuning step (forward, backward, SGD), per voxel."""
    eval_bytes_per_voxel: float
    """Peak RSS one more clip adds to a forward under no_grad, per voxel."""


# Slopes of peak RSS at 16x112x112 (benchmarks/memory_per_clip.py), rounded up from the larger
# of two runs (they differ by up to 15%: how much of a step fits in memory the allocator already
# holds varies). At a second clip size (8x64x64; I3D 8x224x224) the train slopes per voxel land
# within 25% (small crops cost more per voxel: padding is a larger share of a small feature map).
ARCH_MEMORY = {
    "tiny": ArchMemory(parameters=292_080, feature_dim=128, train_bytes_per_voxel=100, eval_bytes_per_voxel=46),
    "r3d_18": ArchMemory(parameters=33_166_272, feature_dim=512, train_bytes_per_voxel=670, eval_bytes_per_voxel=300),
    "r2plus1d_18": ArchMemory(
        parameters=31_300_125, feature_dim=512, train_bytes_per_voxel=2320, eval_bytes_per_voxel=580
    ),
    "i3d": ArchMemory(parameters=12_287_264, feature_dim=1024, train_bytes_per_voxel=450, eval_bytes_per_voxel=85),
}
# Inputs per clip voxel, held for the whole per-worker batch. Finetuning: the augmentation's
# slope (uint8 -> augmented float: 72-81 B) and one prefetched uint8 batch (3 B). Pretraining:
# the FAME merge and augmentation of both views (138-171 B) and a prefetched pair of uint8
# views (6 B). Check: a whole MoCo + FAME step with R(2+1)D-18 costs 4807-4867 B a voxel,
# within 2% of these inputs plus two query forwards (2 x 2320 B).
INPUT_BYTES_PER_VOXEL = {"finetune": 85, "pretrain": 180}
# A training worker's own footprint: Python, torch, Ray's core worker and Ray Data's iterator
# (0.43 GB after the imports alone, measured), allocator slack and the CPU kernels' workspaces.
PROCESS_BYTES = 1.0 * GB
ONE_CLIP_HINT = (
    "lower data.crop_size or data.frames_per_clip, spread the batch over more workers, or use nodes with more memory"
)


@dataclass(frozen=True)
class Estimate:
    """Bytes one worker needs, by part."""

    parts: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.parts.values())


@dataclass(frozen=True)
class Workload:
    """What one training worker runs, apart from its batch: the task ('finetune', 'linear' or
    'pretrain'), the backbone and clip size, the classifier's outputs (`classes`) and MoCo's
    projection and queue (`embed_dim`, `queue_size`, `mlp_head`, `views`)."""

    task: str
    arch: str
    frames: int
    crop: int
    classes: int = 101
    embed_dim: int = 128
    queue_size: int = 65536
    mlp_head: bool = True
    query_views: int = 2
    """Clips the query encoder runs per training clip before the backward (pretraining): two for
    MoCo's symmetric loss, three for DCLR (RGB, static and dynamic views)."""
    views: int = 2
    """Pretraining: clips per video in a batch (2; Background Erasing's three: anchor, positive, negative)."""

    @property
    def name(self) -> str:
        return "linear probe" if self.task == "linear" else self.task

    @property
    def setting(self) -> str:
        return f"{self.arch}, {self.frames}x{self.crop}x{self.crop}"

    def need(self, batch: int, micro_batch: int = 0) -> float:
        """Bytes of one worker (`worker_memory(...).total`)."""
        return worker_memory(self, batch, micro_batch).total


def worker_memory(workload: Workload, batch: int, micro_batch: int = 0) -> Estimate:
    """Memory of one worker running `workload` on a per-worker batch of `batch` clips,
    `micro_batch` clips at a time (0 = all at once)."""
    cost = ARCH_MEMORY[workload.arch]
    voxels = workload.frames * workload.crop * workload.crop
    at_once = micro_batch if 0 < micro_batch < batch else batch
    if workload.task == "pretrain":
        embed_dim = workload.embed_dim
        head = cost.feature_dim * (cost.feature_dim + embed_dim) if workload.mlp_head else cost.feature_dim * embed_dim
        encoder = cost.parameters + head
        # query encoder: weights, gradients, momentum; key encoder: weights; queue and two copies
        state = FLOAT_BYTES * (4 * encoder + 3 * embed_dim * workload.queue_size)
        activations = workload.query_views * at_once * voxels * cost.train_bytes_per_voxel
        # Measured with two views; Background Erasing's third view adds its share.
        inputs = batch * voxels * INPUT_BYTES_PER_VOXEL["pretrain"] * workload.views / 2
    else:
        classifier = (cost.feature_dim + 1) * workload.classes
        trained = cost.parameters + classifier if workload.task == "finetune" else classifier
        state = FLOAT_BYTES * (cost.parameters + classifier + 2 * trained)
        per_voxel = cost.train_bytes_per_voxel if workload.task == "finetune" else cost.eval_bytes_per_voxel
        activations = at_once * voxels * per_voxel
        inputs = batch * voxels * INPUT_BYTES_PER_VOXEL["finetune"]
    return Estimate(
        {"process": PROCESS_BYTES, "weights and state": state, "inputs": inputs, "activations": activations}
    )


def largest_fitting_micro_batch(need: Callable[[int], float], divisible: int, available: float) -> int | None:
    """The largest micro batch that divides `divisible` and whose `need` fits `available`."""
    for micro in sorted((d for d in range(1, divisible + 1) if divisible % d == 0), reverse=True):
        if need(micro) <= available:
            return micro
    return None


@dataclass(frozen=True)
class Placement:
    """One way a run may be laid out: its per-worker batch and the workers one node holds."""

    batch: int
    workers_per_node: int = 1


def choose_micro_batch(
    workload: Workload, placements: list[Placement], micro_batch: int | str, node_memory: list[float]
) -> int:
    """The micro batch a run takes: a number as given (after `check_fits`), or for 'auto' the
    whole batch (0) when it fits the largest node by the estimate, else the largest micro batch
    that divides every per-worker batch and fits, logged in one line with the estimate. 'auto'
    with no node memory known yet (a cold autoscaling cluster) takes the whole batch at once (0).
    Raises UserError when even one clip at a time does not fit."""
    if micro_batch != "auto":
        check_fits(workload, placements, micro_batch, node_memory)
        return micro_batch
    if not node_memory:
        log.info(
            "%s: train.micro_batch auto: no node memory known yet, the whole per-worker batch at once", workload.name
        )
        return 0
    largest = max(node_memory)

    def per_node(micro: int) -> float:
        return max(workload.need(p.batch, micro) * p.workers_per_node for p in placements)

    worst_whole = max(placements, key=lambda placement: workload.need(placement.batch) * placement.workers_per_node)
    if per_node(0) <= largest:
        log.info(
            "%s: train.micro_batch auto: the whole batch at once (per-worker batch %d), ~%.1f GB per worker (%s); "
            "nodes have up to %.1f GB",
            workload.name,
            worst_whole.batch,
            workload.need(worst_whole.batch) / GB,
            workload.setting,
            largest / GB,
        )
        return 0
    # Smaller: a micro batch that divides every per-worker batch the run may have (elastic runs).
    divisible = math.gcd(*(placement.batch for placement in placements))
    fitting = largest_fitting_micro_batch(per_node, divisible, largest)
    if fitting is None:
        worst = max(placements, key=lambda placement: workload.need(placement.batch, 1))
        raise UserError(
            f"{workload.name} needs ~{workload.need(worst.batch, 1) / GB:.1f} GB per worker ({workload.setting}) even "
            f"one clip at a time, but nodes have {largest / GB:.1f} GB: {ONE_CLIP_HINT}"
        )
    worst = max(placements, key=lambda placement: workload.need(placement.batch, fitting))
    log.info(
        "%s: train.micro_batch auto: %d clips at a time (per-worker batch %d), ~%.1f GB per worker (%s); nodes have "
        "up to %.1f GB",
        workload.name,
        fitting,
        worst.batch,
        workload.need(worst.batch, fitting) / GB,
        workload.setting,
        largest / GB,
    )
    return fitting


def check_fits(workload: Workload, placements: list[Placement], micro_batch: int, node_memory: list[float]) -> None:
    """Refuse (UserError, one line) a run whose workers cannot fit the largest node.

    `placements` are the layouts the run may have (several when elastic);
    `node_memory` is the memory of each node that can host a worker (none yet, as on an
    autoscaling cluster that starts cold: the check is skipped). The message names the largest
    `train.micro_batch` that divides every per-worker batch and fits."""
    task, setting, need = workload.name, workload.setting, workload.need
    if not node_memory:
        log.info(
            "%s: no node can host a training worker yet (an autoscaling cluster starting cold?): memory check skipped",
            task,
        )
        return
    largest = max(node_memory)

    def per_node(micro: int, placement: Placement) -> float:
        return need(placement.batch, micro) * placement.workers_per_node

    worst = max(placements, key=lambda placement: per_node(micro_batch, placement))
    needed = need(worst.batch, micro_batch)
    if per_node(micro_batch, worst) <= largest:
        log.info("%s: ~%.1f GB per worker (%s); nodes have up to %.1f GB", task, needed / GB, setting, largest / GB)
        return
    at_once = micro_batch if 0 < micro_batch < worst.batch else worst.batch
    shared = f" for {worst.workers_per_node} workers each" if worst.workers_per_node > 1 else ""
    message = (
        f"{task} needs ~{needed / GB:.1f} GB per worker ({setting}, {at_once} clips at once) but nodes have "
        f"{largest / GB:.1f} GB{shared}"
    )
    divisible = math.gcd(*(placement.batch for placement in placements))
    fitting = largest_fitting_micro_batch(lambda micro: max(per_node(micro, p) for p in placements), divisible, largest)
    if fitting is not None:
        raise UserError(f"{message}: set --set train.micro_batch={fitting} (~{need(worst.batch, fitting) / GB:.1f} GB)")
    raise UserError(f"{message}; even one clip at a time needs ~{need(worst.batch, 1) / GB:.1f} GB: {ONE_CLIP_HINT}")
