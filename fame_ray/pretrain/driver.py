"""MoCo + FAME pretraining on Ray Train V2 (Ray 2.60): the driver side.

    from fame_ray.config import PretrainConfig, build, presets
    result = run_pretrain(build(PretrainConfig, presets.demo_pretrain()))

`run_pretrain` checks every user input before any worker starts (one UserError each), connects
to Ray (the cluster when RAY_ADDRESS is set or inside `ray job submit`, else a local instance),
checks that the batch fits the nodes' memory (`plan.micro_batch_for`: the micro batch), prepares the
dataset (`data.ready`: its manifests, written if absent or stale), derives the run plan once
and hands the worker loop (`fame_ray.pretrain.worker.train_loop`) to a TorchTrainer with its loop config: the
config the workers run (`plan.worker_config(cfg)`, the user's with the resolved micro batch), the
plan, whether a premade dataset replaces the stream, the progress relay and the verbosity.

Resume: the run directory is `<storage>/<run name>`. Every (re)start of the worker group
resumes from the furthest of Ray Train's registered checkpoint and the latest *complete*
checkpoint in storage (meta.json present), so a rerun resumes from any machine even when Ray's
snapshot is missing or behind.
"""

from __future__ import annotations

import logging

import yaml
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from fame_ray import checkpoints, runtime
from fame_ray.config import PretrainConfig, to_dict
from fame_ray.data import manifest, ready
from fame_ray.errors import UserError
from fame_ray.pretrain.plan import RunPlan, make_plan, micro_batch_for, world_plans
from fame_ray.pretrain.worker import train_loop
from fame_ray.runtime import ResourcePlan
from fame_ray.storage import Location

logger = logging.getLogger(__name__)


def preflight(cfg: PretrainConfig) -> None:
    """The checks that need storage (the config checked itself on creation): a reachable
    bucket, and a --resume that names an existing run."""
    root = cfg.storage.root()
    root.check_writable_root()
    if cfg.storage.resume and not checkpoints.run_exists(root, cfg.storage.resume):
        known = checkpoints.run_names(root)
        raise UserError(
            f"--resume: no run named '{cfg.storage.resume}' in {root}",
            f"runs there: {', '.join(known)}" if known else "drop --resume to start a new run",
        )


def _scaling_config(cfg: PretrainConfig, cpus_per_worker: float) -> ScalingConfig:
    resources = {"CPU": cpus_per_worker, **{k: float(v) for k, v in cfg.train.worker_resources.items()}}
    if cfg.train.use_gpu:
        resources["GPU"] = 1
    workers = (cfg.train.min_workers, cfg.train.num_workers) if cfg.train.min_workers else cfg.train.num_workers
    return ScalingConfig(
        num_workers=workers,
        use_gpu=cfg.train.use_gpu,
        resources_per_worker=resources,
        elastic_resize_monitor_interval_s=cfg.train.elastic_resize_s,
    )


def _run_config(cfg: PretrainConfig, plan: RunPlan) -> RunConfig:
    root = cfg.storage.root()
    root.make_dirs()
    return RunConfig(
        name=plan.run_name,
        storage_path=root.path,
        storage_filesystem=root.filesystem,
        failure_config=FailureConfig(max_failures=cfg.train.max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=cfg.train.keep_checkpoints),
    )


def plan_run(cfg: PretrainConfig, manifests: dict[str, Location], resources: ResourcePlan, micro_batch: int) -> RunPlan:
    """The run plan over the training manifest (`manifests`: 'train' and 'test'), with the micro
    batch `micro_batch_for` chose for the nodes' memory."""
    num_videos = manifest.read(manifests["train"]).num_rows
    if num_videos < cfg.train.global_batch:
        raise UserError(
            f"the training split has {num_videos} videos, fewer than one global batch ({cfg.train.global_batch})",
            "lower --batch",
        )
    return make_plan(cfg, manifests, num_videos, resources, checkpoints.git_sha(), micro_batch)


def log_start(cfg: PretrainConfig, plan: RunPlan, verbose: bool = False) -> None:
    """The git SHA and the resolved config, once, at the start of the run: in full with
    `verbose`, else one line (the whole config is written beside the run and every checkpoint)."""
    resolved = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    (plan.run / checkpoints.CONFIG_FILE).write_text(resolved)
    logger.info("fame-ray pretrain, git %s, run %s", plan.git_sha, plan.run)
    if verbose:
        logger.info("resolved config:\n%s", resolved.rstrip())
    latest = checkpoints.latest_complete(plan.run)
    logger.info(
        (
            "%s: %s, %s on %s, %dx%dx%d clips, %d videos, %d steps of %d clips%s on %s worker(s); %.2g CPU each, "
            "%.2g CPU for decoding%s"
        ),
        cfg.preset or "config",
        cfg.method,
        cfg.model.arch,
        cfg.data.dataset,
        cfg.data.frames_per_clip,
        cfg.data.crop_size,
        cfg.data.crop_size,
        plan.num_videos,
        plan.total_steps,
        cfg.train.global_batch,
        f" (micro batches of {plan.micro_batch})" if plan.micro_batch else "",
        "-".join(map(str, sorted({min(plan.worlds), max(plan.worlds)}))),
        plan.resources.cpus_per_worker,
        plan.resources.data_cpus,
        f"; resuming from {latest.name}" if latest else "",
    )


def fit(cfg: PretrainConfig, plan: RunPlan, premade=None, verbose: bool = False):
    """Run the worker loop on Ray Train. Each worker streams its own clips from the manifest;
    `premade` (a Ray Dataset of ready rows: view_q, view_k, mask, label) replaces that stream,
    for benchmarks and tests of the training side alone. Rank 0's progress lines come back
    through a relay and are logged here."""
    relay = runtime.LineRelay.remote()
    printer = runtime.RelayPrinter(relay, logger)
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={
            "config": plan.worker_config(cfg),
            "plan": plan,
            "premade": premade is not None,
            "relay": relay,
            "verbose": verbose,
        },
        scaling_config=_scaling_config(cfg, plan.resources.cpus_per_worker),
        run_config=_run_config(cfg, plan),
        datasets={"train": premade} if premade is not None else None,
    )
    try:
        return trainer.fit()
    finally:
        printer.close()


def run_pretrain(cfg: PretrainConfig, verbose: bool = False):
    """Validate, connect, plan, train; returns the Ray Train Result. `verbose` lets Ray's own
    logs (workers, Ray Data, Ray Train) through; by default the user sees the progress line,
    the summary and any errors."""
    preflight(cfg)
    runtime.connect_ray(verbose=verbose)
    runtime.await_resources(
        runtime.job_bundles(cfg.train, cfg.data),
        cfg.train.cluster_wait_s,
        "pretraining",
        runtime.job_minimum(cfg.train, cfg.data),
    )
    try:
        # The memory check needs no data: a batch that cannot fit is refused before a dataset is prepared.
        micro_batch = micro_batch_for(cfg, world_plans(cfg), runtime.node_memory(cfg.train.use_gpu))
        manifests = ready.manifests(cfg.data, cfg.data_location())  # the one step that prepares the dataset
        resources = runtime.plan_resources(runtime.cluster_cpus(), cfg.train, cfg.data)
        plan = plan_run(cfg, manifests, resources, micro_batch)
        cfg = plan.worker_config(cfg)  # the resolved micro batch, as the workers run it and the run records it
        log_start(cfg, plan, verbose)
        result = fit(cfg, plan, verbose=verbose)
    finally:
        runtime.release_resources()
    logger.info("run finished: checkpoints and metrics in %s", plan.run)
    return result
