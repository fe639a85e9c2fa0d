"""MoCo + FAME pretraining on Ray Train V2 (Ray 2.60): the driver side.

    from fame_ray.config import PretrainConfig, build, demo_pretrain
    result = run_pretrain(build(PretrainConfig, demo_pretrain()))

`run_pretrain` checks every user input before any worker starts (one UserError each), connects
to Ray (the cluster when RAY_ADDRESS is set or inside `ray job submit`, else a local instance),
builds the Ray Data pipeline from the manifest and hands the worker loop
(fame_ray.train.worker.train_loop) to a TorchTrainer.

Resume: the run directory is `<storage>/<run name>`. Ray Train V2 restores its checkpoint list
from `checkpoint_manager_snapshot.json` there when a run with the same name and storage path
starts, so `ray.train.get_checkpoint()` returns the latest checkpoint Ray registered. On top of
that, every (re)start of the worker group scans storage for the latest *complete* checkpoint
(meta.json present): after an ungraceful kill a checkpoint may be fully stored but not yet
registered by Ray. Rank 0 takes the further of the two and broadcasts the choice, so a rerun
resumes from any machine even when Ray's snapshot is missing or behind.

Global batch and world size: each worker takes global_batch // world_size clips; when that
does not divide evenly the effective global batch is rounded down (logged), the learning rate
is scaled by the effective batch, and the MoCo queue must stay divisible by it (checked here
for every world size an elastic run may reach).
"""

from __future__ import annotations

import logging
import os

from fame_ray import config as config_lib
from fame_ray import storage
from fame_ray.config import PretrainConfig
from fame_ray.errors import ConfigError, UserError
from fame_ray.train import checkpoint as ckpt
from fame_ray.train import runs

logger = logging.getLogger(__name__)


def split_batch(global_batch: int, world_size: int) -> tuple[int, int]:
    """(per-worker batch, effective global batch): the global batch rounded down to a multiple."""
    per_worker = global_batch // world_size
    return per_worker, per_worker * world_size


def world_sizes(cfg: PretrainConfig) -> range:
    """Every number of workers the run may have (one for a fixed run, min..max when elastic)."""
    low = cfg.train.min_workers or cfg.train.num_workers
    return range(low, cfg.train.num_workers + 1)


def validate(cfg: PretrainConfig) -> None:
    """Raise a one-line UserError for anything that would fail once workers run."""
    for world in world_sizes(cfg):
        per_worker, effective = split_batch(cfg.train.global_batch, world)
        if per_worker < 1:
            raise ConfigError(f"train.global_batch ({cfg.train.global_batch}) is smaller than the number of workers ({world})", "raise --batch or lower --workers")
        if cfg.moco.queue_size % effective:
            raise ConfigError(
                f"moco.queue_size ({cfg.moco.queue_size}) is not divisible by the effective global batch {effective} ({world} workers x {per_worker})",
                "pick a global batch divisible by every worker count the run may have, or a queue size divisible by the batch",
            )
    root = cfg.storage.resolved_path()
    storage.check_writable_root(root, cfg.storage.s3_endpoint)
    if cfg.storage.resume and not runs.run_exists(root, cfg.storage.resume, cfg.storage.s3_endpoint):
        known = runs.run_names(root, cfg.storage.s3_endpoint)
        raise UserError(f"--resume: no run named '{cfg.storage.resume}' in {root}", f"runs there: {', '.join(known)}" if known else "drop --resume to start a new run")


def resolve_run_name(cfg: PretrainConfig) -> str:
    """--resume names the run; otherwise --run-name or the name derived from dataset and arch."""
    return cfg.storage.resume or cfg.run_name()


def connect_ray(num_cpus: float | None = None) -> None:
    """Join the cluster (RAY_ADDRESS, `ray job submit`) or start a local Ray instance."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        logger.info("connecting to the Ray cluster at %s", os.environ["RAY_ADDRESS"])
        ray.init(log_to_driver=True)
        return
    logger.info("no RAY_ADDRESS: starting a local Ray instance")
    ray.init(num_cpus=num_cpus, include_dashboard=False)


def total_steps(cfg: PretrainConfig, num_videos: int) -> int:
    """Optimizer steps of the run: epochs x (videos // global batch), capped by max_steps."""
    per_epoch = max(1, num_videos // cfg.train.global_batch)
    steps = cfg.train.epochs * per_epoch
    return min(steps, cfg.train.max_steps) if cfg.train.max_steps else steps


def _scaling_config(cfg: PretrainConfig, cpus_per_worker: float):
    from ray.train import ScalingConfig

    resources = {"CPU": cpus_per_worker, **{k: float(v) for k, v in cfg.train.worker_resources.items()}}
    if cfg.train.use_gpu:
        resources["GPU"] = 1
    workers = (cfg.train.min_workers, cfg.train.num_workers) if cfg.train.min_workers else cfg.train.num_workers
    return ScalingConfig(num_workers=workers, use_gpu=cfg.train.use_gpu, resources_per_worker=resources, elastic_resize_monitor_interval_s=cfg.train.elastic_resize_s)


def _run_config(cfg: PretrainConfig, name: str):
    from ray.train import CheckpointConfig, FailureConfig, RunConfig

    root = cfg.storage.resolved_path()
    fs, path = storage.filesystem(root, cfg.storage.s3_endpoint)
    if not storage.is_s3(root):
        os.makedirs(path, exist_ok=True)
    return RunConfig(
        name=name,
        storage_path=path,
        storage_filesystem=fs,
        failure_config=FailureConfig(max_failures=cfg.train.max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=cfg.train.keep_checkpoints),
    )


def plan(cfg: PretrainConfig):
    """CPUs for training workers and for Ray Data (pipeline.plan_resources over the cluster's CPUs)."""
    import ray

    from fame_ray.data import pipeline

    resources = pipeline.plan_resources(float(ray.cluster_resources().get("CPU", 1)), cfg.train, cfg.data)
    logger.info("resource plan: %.2f CPU per training worker, %.2f CPU for Ray Data", resources.cpus_per_worker, resources.data_cpus)
    return resources


def prepare(cfg: PretrainConfig) -> dict:
    """Everything the workers need, as a plain dict (Ray's train_loop_config)."""
    from fame_ray.data import catalog, manifest

    endpoint = cfg.storage.s3_endpoint
    manifest_uri = catalog.manifest_uri(cfg.data, "train", endpoint)
    num_videos = manifest.read(manifest_uri, endpoint).num_rows
    if num_videos < cfg.train.global_batch:
        raise UserError(f"the training split has {num_videos} videos, fewer than one global batch ({cfg.train.global_batch})", "lower --batch")
    return loop_config_for(cfg, num_videos, manifest_uri)


def loop_config_for(cfg: PretrainConfig, num_videos: int, manifest_uri: str = "") -> dict:
    """The train_loop_config of a run over `num_videos` videos (resume point found in storage)."""
    name = resolve_run_name(cfg)
    run_uri = runs.run_uri(cfg.storage.resolved_path(), name)
    latest = ckpt.latest_complete(run_uri, cfg.storage.s3_endpoint)
    return {
        "config": config_lib.to_dict(cfg),
        "run_name": name,
        "run_uri": run_uri,
        "manifest_uri": manifest_uri,
        "num_videos": num_videos,
        "total_steps": total_steps(cfg, num_videos),
        "resume_uri": latest.uri if latest else "",
        "git_sha": ckpt.git_sha(),
    }


def log_start(cfg: PretrainConfig, loop_config: dict) -> None:
    """The resolved config and git SHA, once, at the start of the run."""
    import yaml

    logger.info("fame-ray pretrain, git %s, run %s", loop_config["git_sha"], loop_config["run_uri"])
    logger.info("resolved config:\n%s", yaml.safe_dump(loop_config["config"], sort_keys=False).rstrip())
    if loop_config["resume_uri"]:
        logger.info("resuming from %s", loop_config["resume_uri"])
    logger.info("%d videos, %d steps of global batch %d", loop_config["num_videos"], loop_config["total_steps"], cfg.train.global_batch)


def fit(cfg: PretrainConfig, loop_config: dict, dataset, cpus_per_worker: float):
    """Run the worker loop on Ray Train over `dataset` (rows view_q, view_k, label)."""
    from ray.train.torch import TorchTrainer

    from fame_ray.train.worker import train_loop

    trainer = TorchTrainer(
        train_loop,
        train_loop_config=loop_config,
        scaling_config=_scaling_config(cfg, cpus_per_worker),
        run_config=_run_config(cfg, loop_config["run_name"]),
        datasets={"train": dataset},
    )
    return trainer.fit()


def run_pretrain(cfg: PretrainConfig):
    """Validate, connect, build the data pipeline, train; returns the Ray Train Result."""
    from fame_ray.data import pipeline

    validate(cfg)
    connect_ray()
    loop_config = prepare(cfg)
    log_start(cfg, loop_config)
    resources = plan(cfg)
    dataset = pipeline.pretrain_dataset(loop_config["manifest_uri"], cfg, cfg.storage.s3_endpoint, plan=resources)
    result = fit(cfg, loop_config, dataset, resources.cpus_per_worker)
    logger.info("run finished: checkpoints and metrics in %s", loop_config["run_uri"])
    return result
