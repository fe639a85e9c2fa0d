"""The run plan: every value the driver derives from the config, computed once, in one place.

The workers receive `{"config": PretrainConfig, "plan": RunPlan}` and read only these typed
objects; nothing is recomputed on the worker side.

Global batch and world size: each worker takes global_batch // world_size clips; when that does
not divide evenly the effective global batch is rounded down (logged), and the learning rate is
scaled by the effective batch (`optim.lr * batch / optim.base_batch`; linear scaling is
fame-ray's addition and changes nothing at the official batch of 64).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fame_ray.config import PretrainConfig
from fame_ray.pretrain.schedule import peak_lr
from fame_ray.runtime import ResourcePlan
from fame_ray.storage import Location


@dataclass(frozen=True)
class WorldPlan:
    """What one worker count means for the batch and the learning rate."""

    world_size: int
    per_worker_batch: int
    effective_batch: int
    peak_lr: float


@dataclass(frozen=True)
class RunPlan:
    """Derived once by the driver; read by every worker."""

    run_name: str
    run: Location
    """The run directory `<storage>/<run name>`."""
    manifest: Location
    """The training manifest."""
    num_videos: int
    steps_per_epoch: int
    """Optimizer steps per pass over the training videos (at the configured global batch)."""
    total_steps: int
    """Steps of the whole run: epochs x steps_per_epoch, capped by train.max_steps."""
    resources: ResourcePlan
    git_sha: str
    worlds: dict[int, WorldPlan] = field(default_factory=dict)
    """Every worker count the run may have (one, or min..max when elastic)."""

    def for_world(self, world_size: int) -> WorldPlan:
        return self.worlds[world_size]


def steps_per_epoch(cfg: PretrainConfig, num_videos: int) -> int:
    return max(1, num_videos // cfg.train.global_batch)


def total_steps(cfg: PretrainConfig, num_videos: int) -> int:
    """Optimizer steps of the run: epochs x (videos // global batch), capped by max_steps."""
    steps = cfg.train.epochs * steps_per_epoch(cfg, num_videos)
    return min(steps, cfg.train.max_steps) if cfg.train.max_steps else steps


def world_plans(cfg: PretrainConfig) -> dict[int, WorldPlan]:
    plans = {}
    for world in cfg.train.world_sizes():
        per_worker, effective = cfg.train.split_batch(world)
        plans[world] = WorldPlan(world, per_worker, effective, peak_lr(cfg.optim, effective))
    return plans


def make_plan(cfg: PretrainConfig, manifest: Location, num_videos: int, resources: ResourcePlan, git_sha: str) -> RunPlan:
    """The plan of a run over `num_videos` training videos."""
    name = cfg.run_name()
    return RunPlan(
        run_name=name,
        run=cfg.storage.root() / name,
        manifest=manifest,
        num_videos=num_videos,
        steps_per_epoch=steps_per_epoch(cfg, num_videos),
        total_steps=total_steps(cfg, num_videos),
        resources=resources,
        git_sha=git_sha,
        worlds=world_plans(cfg),
    )
