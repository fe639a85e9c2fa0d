"""The run plan: every value the driver derives from the config, computed once, in one place.

The workers receive the config and this plan and read the numbers from it: the run's location,
step counts, the per-worker batch, the effective global batch and the peak lr of every worker
count the run may have. Two things are derived on the worker, from the plan, by the plan's own
methods: the sampler (it needs the worker's rank) and the per-step lr schedule (an array of one
number per step, cheap to compute and large to ship).

Global batch and world size: each worker takes global_batch // world_size clips; when that does
not divide evenly the effective global batch is rounded down (logged), and the learning rate is
scaled by the effective batch (`optim.lr * batch / optim.base_batch`; linear scaling is
fame-ray's addition and changes nothing at the official batch of 64).

Memory: `micro_batch_for` resolves `train.micro_batch: auto` to the largest micro batch that fits
the nodes by the estimate (fame_ray.models.memory), and refuses, before Ray Train starts, a run
whose workers cannot fit even one clip at a time (or whose explicit micro batch does not fit,
naming the one that would). The plan holds the result; the workers run `plan.worker_config(cfg)`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field

import numpy as np

from fame_ray.components.schedule import lr_schedule, peak_lr
from fame_ray.config import PretrainConfig
from fame_ray.data.clips.sampling import EpochSampler
from fame_ray.models import memory
from fame_ray.runtime import ResourcePlan
from fame_ray.storage import Location

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorldPlan:
    """What one worker count means for the batch and the learning rate."""

    world_size: int
    per_worker_batch: int
    effective_batch: int
    """per_worker_batch x world_size: the global batch rounded down to a multiple of the workers."""
    peak_lr: float


@dataclass(frozen=True)
class RunPlan:
    """Derived once by the driver; read by every worker."""

    run_name: str
    run: Location
    """The run directory `<storage>/<run name>`."""
    manifest: Location
    """The training manifest."""
    test_manifest: Location
    """The test manifest (the read-out's held-out videos)."""
    num_videos: int
    steps_per_epoch: int
    """Optimizer steps per pass over the training videos (at the configured global batch)."""
    total_steps: int
    """Steps of the whole run: epochs x steps_per_epoch, capped by train.max_steps."""
    resources: ResourcePlan
    git_sha: str
    worlds: dict[int, WorldPlan] = field(default_factory=dict)
    """Every worker count the run may have (one, or min..max when elastic)."""
    micro_batch: int = 0
    """Clips per forward/backward on every worker (0 = the whole per-worker batch): `train.micro_batch`,
    with 'auto' resolved by `micro_batch_for`."""

    def worker_config(self, cfg: PretrainConfig) -> PretrainConfig:
        """The config the workers run: `cfg` with the plan's micro batch in place of 'auto'."""
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, micro_batch=self.micro_batch))

    def for_world(self, world_size: int) -> WorldPlan:
        return self.worlds[world_size]

    def sampler(self, world_size: int, rank: int, seed: int) -> EpochSampler:
        """Which video every clip of rank `rank` comes from, on `world_size` workers."""
        world = self.for_world(world_size)
        return EpochSampler(
            self.num_videos, self.steps_per_epoch, world.per_worker_batch, world.effective_batch, rank, seed
        )

    def lr_schedule(self, cfg: PretrainConfig, world_size: int) -> np.ndarray:
        """The lr of every step on `world_size` workers (from that worker count's peak lr)."""
        return lr_schedule(cfg.optim, self.for_world(world_size).peak_lr, self.steps_per_epoch, cfg.train.epochs)


def steps_per_epoch(cfg: PretrainConfig, num_videos: int) -> int:
    return max(1, num_videos // cfg.train.global_batch)


def total_steps(cfg: PretrainConfig, num_videos: int) -> int:
    """Optimizer steps of the run: epochs x (videos // global batch), capped by max_steps."""
    steps = cfg.train.epochs * steps_per_epoch(cfg, num_videos)
    return min(steps, cfg.train.max_steps) if cfg.train.max_steps else steps


def world_plans(cfg: PretrainConfig) -> dict[int, WorldPlan]:
    plans = {}
    for world in cfg.train.world_sizes():
        per_worker_batch, effective = cfg.train.split_batch(world)
        plans[world] = WorldPlan(world, per_worker_batch, effective, peak_lr(cfg.optim, effective))
    return plans


def make_plan(
    cfg: PretrainConfig,
    manifests: dict[str, Location],
    num_videos: int,
    resources: ResourcePlan,
    git_sha: str,
    micro_batch: int | None = None,
) -> RunPlan:
    """The plan of a run over `num_videos` training videos (`manifests`: 'train' and 'test');
    `micro_batch`: the resolved one (`micro_batch_for`; None = the config's number, or 0 for 'auto')."""
    if micro_batch is None:
        micro_batch = 0 if cfg.train.micro_batch == "auto" else cfg.train.micro_batch
    return RunPlan(
        run_name=cfg.run_name(),
        run=cfg.run_location(),
        manifest=manifests["train"],
        test_manifest=manifests["test"],
        num_videos=num_videos,
        steps_per_epoch=steps_per_epoch(cfg, num_videos),
        total_steps=total_steps(cfg, num_videos),
        resources=resources,
        git_sha=git_sha,
        worlds=world_plans(cfg),
        micro_batch=micro_batch,
    )


def micro_batch_for(cfg: PretrainConfig, worlds: dict[int, WorldPlan], node_memory: list[float]) -> int:
    """The micro batch every worker takes, for every worker count the run may have (`worlds`:
    the plan's): `train.micro_batch: auto` resolved to the largest that divides every per-worker
    batch and fits a node by the estimate (fame_ray.models.memory, one log line), a number kept
    after checking that it fits (refused with the one that would). `node_memory`: bytes of each
    node that can host a worker (runtime.node_memory). GPU runs keep their activations in GPU
    memory, which Ray does not report: no check, and 'auto' takes the whole batch at once (0)."""
    requested = cfg.train.micro_batch
    if cfg.train.use_gpu:
        logger.info(
            "pretrain on GPUs: activations live in GPU memory, which Ray does not report: memory check skipped%s",
            "; train.micro_batch auto: the whole per-worker batch at once" if requested == "auto" else "",
        )
        return 0 if requested == "auto" else requested
    return memory.choose_micro_batch(workload(cfg), placements(worlds, node_memory), requested, node_memory)


def workload(cfg: PretrainConfig) -> memory.Workload:
    """What one pretraining worker runs, for the memory estimate."""
    return memory.Workload(
        "pretrain",
        cfg.model.arch,
        cfg.data.frames_per_clip,
        cfg.data.crop_size,
        embed_dim=cfg.model.embed_dim,
        # DCLR keeps seven queues.
        queue_size=7 * cfg.dclr.queue_size if cfg.method == "dclr" else cfg.moco.queue_size,
        mlp_head=cfg.model.use_mlp_head,
        # DCLR runs three views per clip through the query encoder; BE decodes a third clip.
        query_views=3 if cfg.method == "dclr" else 2,
        views=3 if cfg.method == "be" else 2,
    )


def placements(worlds: dict[int, WorldPlan], node_memory: list[float]) -> list[memory.Placement]:
    """Every layout the run may have: each worker count's per-worker batch, its workers spread over the nodes."""
    nodes = max(len(node_memory), 1)
    return [memory.Placement(world.per_worker_batch, math.ceil(size / nodes)) for size, world in worlds.items()]
