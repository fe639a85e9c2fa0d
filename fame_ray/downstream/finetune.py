"""Downstream finetune and linear probe: a Ray Tune sweep with one Ray Train run per trial.

    record = run_finetune(build(FinetuneConfig, presets.demo_finetune(), {"pretrained": "fame-ray-runs/RUN"}))

`run_finetune` checks the inputs (preflight), sizes the sweep to the cluster (each trial's
workers AND its Ray Data CPUs), runs the trials and writes results.json and results.md. What
each worker does, epoch by epoch, is in `fame_ray.downstream.classify`.

Run again with the same run name (and storage), a sweep whose driver died picks up where it
was: finished and failed trials are kept, unfinished ones continue from their last epoch. The
run directory keeps the settings it started with (sweep.json); other settings are refused.

Held-out choice: the trials train on the training split minus a validation split
(`val_fraction` of each class, seeded: data.catalog.holdout, written into the run directory as
holdout/train.parquet and holdout/val.parquet); ASHA and the choice of the best trial read the
validation accuracy only. The test split is tested at the official epochs (classify) and read
only for the record: the chosen trial's test accuracy at its last epoch (the held-out number)
and its best test epoch (the official protocol's number, eval.py), side by side in results.md.

Ray pieces (marked `# Ray:`): the trial driver builds a TorchTrainer and calls fit();
`TuneReportCallback` forwards rank 0's `ray.train.report` metrics to Tune, so ASHA sees
`val_video_top1` after every epoch. Workers resume from `ray.train.get_checkpoint()`.
"""

from __future__ import annotations

import json
import logging
import time

import ray
import ray.train
from ray import tune
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from fame_ray import runtime
from fame_ray.config import FinetuneConfig, to_dict
from fame_ray.data.catalog import holdout
from fame_ray.data.clips.pipeline import supervised_dataset
from fame_ray.downstream import preflight, sweep
from fame_ray.downstream.classify import train_loop_per_worker
from fame_ray.downstream.search_space import Hyperparameters, describe_space, grid_size, max_value, normalise_space
from fame_ray.errors import UserError
from fame_ray.eval import report as results
from fame_ray.storage import parse_json

log = logging.getLogger(__name__)
SWEEP_FILE = "sweep.json"
# Where a run keeps the manifests of the videos it trains on and validates on.
HOLDOUT_DIR = "holdout"


# Datasets that are tested whole: split unequally over the workers, no clip dropped.
EVALUATED = ("val", "test")


class ValidationSplit(ray.train.DataConfig):
    """Ray: split 'train' into equal shards (DDP needs the same number of batches on every
    worker) and 'val' and 'test' into unequal ones, so that no clip they test is dropped.

    Ray Train V2 calls `configure` once per dataset (rank 0, a barrier for split datasets).
    """

    def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
        evaluated = [name for name in EVALUATED if name in datasets]
        if not evaluated:
            return super().configure(datasets, world_size, worker_handles, worker_node_ids, **kwargs)
        output = super().configure(
            {k: v for k, v in datasets.items() if k not in EVALUATED},
            world_size,
            worker_handles,
            worker_node_ids,
            **kwargs,
        )
        for name in evaluated:
            dataset = datasets[name].copy(datasets[name])
            dataset.context.execution_options = self._resolve_execution_options(name)
            for rank, shard in enumerate(dataset.streaming_split(world_size, equal=False)):
                output[rank][name] = shard
        return output


def trial_driver(
    hyper: dict,
    *,
    cfg: FinetuneConfig,
    num_classes: int,
    manifests: dict,
    cpus_per_worker: float,
    data_cpus: float,
    train_root: str,
    storage_filesystem=None,
    ledger=None,
) -> None:
    """Ray Tune function trainable: one Ray Train run with this trial's hyperparameters.

    Runs in the Tune trial's actor; it only drives the TorchTrainer (no CPU of its own).
    """
    trial_id = tune.get_context().get_trial_id()
    trial = Hyperparameters.from_trial(hyper)
    datasets = {
        "train": supervised_dataset(manifests["train"], cfg.data, train=True, seed=cfg.train.seed, data_cpus=data_cpus),
        "val": supervised_dataset(manifests["val"], cfg.data, train=False, data_cpus=data_cpus),
    }
    if "test" in manifests:  # a validation split of its own: the test split is tested apart
        datasets["test"] = supervised_dataset(manifests["test"], cfg.data, train=False, data_cpus=data_cpus)
    resources = {"CPU": cpus_per_worker, **({"GPU": 1} if cfg.train.use_gpu else {}), **cfg.train.worker_resources}
    callbacks = [TuneReportCallback()]  # Ray: rank 0's reports become Tune results
    if ledger:
        callbacks.append(sweep.RecordPlacementGroup(ledger, trial_id))
    trainer = TorchTrainer(  # Ray: a Train V2 run inside the Tune trial
        train_loop_per_worker,
        train_loop_config={
            "config": cfg,
            "trial": trial,
            "num_classes": num_classes,
            "held_out": "test" in datasets,
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.train.num_workers, use_gpu=cfg.train.use_gpu, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            name=f"trial_{trial_id}",
            storage_path=train_root,
            storage_filesystem=storage_filesystem,
            failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            callbacks=callbacks,
        ),
        datasets=datasets,
        dataset_config=ValidationSplit(),
    )
    trainer.fit()


def sweep_plan(cfg: FinetuneConfig, space: dict, cpus: float | None = None, gpus: float | None = None) -> dict:
    """How many trials run at once, and each trial's CPUs: its workers AND its Ray Data CPUs.

    A trial needs at least num_workers x (cpus_per_worker or 1) + (data_cpus or 1) CPUs;
    as many trials as fit run at once, and each splits its share of the cluster with
    `runtime.plan_resources`, so Ray Data always keeps CPUs (no deadlock on 2 CPUs).
    `cpus`, `gpus`: the cluster's (default: what Ray reports; a dry run passes the machine's).
    """
    if cpus is None or gpus is None:
        total = ray.cluster_resources()
        cpus, gpus = total.get("CPU", 0.0), total.get("GPU", 0.0)
    smallest_trial = cfg.train.num_workers * (cfg.train.cpus_per_worker or 1.0) + (cfg.data.data_cpus or 1.0)
    trial_gpus = cfg.train.num_workers if cfg.train.use_gpu else 0
    trials = cfg.samples * grid_size(space)
    wanted = min(cfg.max_concurrent or trials, trials)
    concurrent = sweep.concurrent_trials(cpus, gpus, smallest_trial, trial_gpus, wanted)
    plan = runtime.plan_resources(cpus / concurrent, cfg.train, cfg.data)
    trial_cpus = cfg.train.num_workers * plan.cpus_per_worker + plan.data_cpus
    return {
        "cpus_per_worker": plan.cpus_per_worker,
        "data_cpus": plan.data_cpus,
        "trial_cpus": trial_cpus,
        "smallest_trial_cpus": smallest_trial,
        "trial_gpus": trial_gpus,
        "max_concurrent": concurrent,
        "trials": trials,
    }


def run_finetune(cfg: FinetuneConfig, explicit_arch: str | None = None, budget: dict | None = None) -> dict:
    """Check inputs, run (or resume) the Tune sweep of Train runs, write results.json/.md;
    returns the record. `budget` ({"CPU": n, "GPU": m}): the share of the cluster the sweep may
    plan for (a study running stages at once), else the whole cluster."""
    started = time.time()
    space = normalise_space(cfg.search_space)
    cfg.storage.root().check_writable_root()
    cfg, info = preflight.prepare(cfg, explicit_arch)
    run_dir = cfg.run_location()
    owns_ray = runtime.connect_ray(dashboard=True)
    try:
        # A cold cluster brings at least one trial's nodes (as many trials as --max-concurrent asks).
        copies = cfg.max_concurrent or 1
        runtime.await_resources(
            runtime.job_bundles(cfg.train, cfg.data, copies),
            cfg.train.cluster_wait_s,
            "finetuning",
            runtime.job_minimum(cfg.train, cfg.data, copies),
        )
        resolved = preflight.micro_batch_for(cfg, len(info["class_names"]), runtime.node_memory(cfg.train.use_gpu))
        # The settings as asked ('auto', not the number this cluster resolves it to): a sweep resumed
        # on other nodes may take another micro batch.
        resume = resumable(cfg, run_dir)  # writes sweep.json: only once nothing refuses the run
        cfg = resolved
        info["manifests"], info["validation"] = trial_manifests(cfg, info["manifests"], run_dir)
        plan = sweep_plan(cfg, space, budget["CPU"], budget["GPU"]) if budget else sweep_plan(cfg, space)
        log.info(
            "sweep: %d trial(s), %d at once, %.3g CPUs each (%.3g for Ray Data)%s",
            plan["trials"],
            plan["max_concurrent"],
            plan["trial_cpus"],
            plan["data_cpus"],
            f", in a share of {budget['CPU']:g} CPUs" if budget else "",
        )
        records = _sweep(cfg, space, info, plan, resume)
    finally:
        runtime.release_resources()
        if owns_ray:
            ray.shutdown()
    record = _record(cfg, info, space, plan, records, time.time() - started)
    results.write(record, run_dir)
    record["run_dir"] = run_dir.uri
    return record


def trial_manifests(cfg: FinetuneConfig, manifests: dict, run_dir) -> tuple[dict, dict]:
    """({'train', 'val'[, 'test']} manifests the trials read, the validation split's record).

    With val_fraction > 0: the training split minus the validation split is trained on, the
    validation split chooses, the test split is tested apart. With 0: the whole training split
    is trained on and the test split is the validation (the paper's protocol)."""
    if cfg.val_fraction == 0:
        record = {"split": "test", "note": "val_fraction 0: the test split chooses, as the paper's protocol"}
        return {"train": manifests["train"], "val": manifests["test"]}, record
    split = holdout.write_split(manifests["train"], run_dir / HOLDOUT_DIR, cfg.val_fraction, cfg.val_seed)
    log.info("validation split: %s", split.describe())
    record = {
        "split": "validation",
        "videos": split.val_videos,
        "train_videos": split.train_videos,
        "val_fraction": cfg.val_fraction,
        "val_seed": cfg.val_seed,
        "manifest": split.val.uri,
        "note": split.describe(),
    }
    return {"train": split.train, "val": split.val, "test": manifests["test"]}, record


def resumable(cfg: FinetuneConfig, run_dir) -> bool:
    """True when `run_dir` holds a sweep of the same settings to resume; a sweep of other
    settings is a UserError. A new sweep's settings are saved there first (sweep.json)."""
    current = sweep.signature(to_dict(cfg))
    saved = run_dir / SWEEP_FILE
    if not sweep.can_resume(run_dir):
        saved.write_text(json.dumps(current, indent=1))
        return False
    started_with = _saved_signature(saved)
    differing = sweep.signature_differences(started_with, current) if started_with else []
    if differing:
        raise UserError(
            (
                f"run '{cfg.run_name()}' in {cfg.storage.root()} is a sweep with other settings "
                f"({', '.join(differing[:6])})"
            ),
            "run it again with the settings it was started with to resume it, or pick another --run-name",
        )
    log.info("resuming the sweep in %s (finished trials are kept, unfinished ones continue)", run_dir)
    return True


def _saved_signature(saved) -> dict:
    """The settings a sweep started with; {} (nothing to compare) when sweep.json is missing or
    damaged, e.g. a sweep started by an older fame-ray."""
    try:
        found = parse_json(saved.read_bytes()) if saved.exists() else None
    except ValueError:  # not JSON, not UTF-8, or nested too deep
        found = None
    if not isinstance(found, dict):
        log.warning("%s is missing or unreadable: resuming without checking the sweep's settings", saved)
        return {}
    return found


def _sweep(cfg: FinetuneConfig, space: dict, info: dict, plan: dict, resume: bool) -> list[dict]:
    root = cfg.storage.root()
    fs_arg = root.filesystem if root.is_s3 else None
    fixed = {
        "lr": cfg.optim.lr,
        "weight_decay": cfg.optim.weight_decay,
        "dropout": cfg.dropout,
        "epochs": cfg.train.epochs,
    }
    trainable = tune.with_parameters(
        trial_driver,
        cfg=cfg,
        num_classes=len(info["class_names"]),
        manifests=info["manifests"],
        cpus_per_worker=plan["cpus_per_worker"],
        data_cpus=plan["data_cpus"],
        train_root=f"{root.path}/{cfg.run_name()}/train",
        storage_filesystem=fs_arg,
        ledger=sweep.ledger(cfg.run_name()),
    )
    grid = sweep.run_sweep(
        trainable,
        sweep.to_tune_space(space, fixed),
        samples=cfg.samples,
        max_concurrent=plan["max_concurrent"],
        max_epochs=int(max_value(space, "epochs", cfg.train.epochs)),
        storage_path=root.path,
        name=cfg.run_name(),
        trial_failures=cfg.trial_failures,
        storage_filesystem=fs_arg,
        callbacks=[sweep.ReleasePlacementGroups(cfg.run_name())],
        resume=resume,
    )
    return sweep.trial_records(grid)


def _metrics_of(metrics: dict, prefix: str) -> dict:
    """The `<prefix>_*` metrics of a trial's last report, without the prefix, as percentages
    (counts and the epoch stay numbers)."""
    return results.percent({k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)})


def _split_trial_metrics(trials: list[dict]) -> list[dict]:
    """The trials with their last report as three sets: validation ('metrics', what chooses), the
    latest test ('test') and the best test epoch ('test_best')."""
    out = []
    for trial in trials:
        reported = trial["metrics"]
        latest = {k: v for k, v in reported.items() if not k.startswith("test_best_")}
        out.append(
            {
                **trial,
                "metrics": _metrics_of(reported, "val_"),
                "test": _metrics_of(latest, "test_"),
                "test_best": _metrics_of(reported, "test_best_"),
            }
        )
    return out


def _numbers(cfg: FinetuneConfig, best: dict | None, validation: dict) -> dict:
    """The two test numbers of the chosen trial, labelled (results.md prints them side by side)."""
    if not best:
        return {}
    chooser = "the validation split" if validation.get("split") == "validation" else "the test split"
    return {
        "held_out": {
            "label": f"test, trial chosen on {chooser}, its last test (epoch {best['test'].get('epoch')})",
            "metrics": best["test"],
        },
        "official": {
            "label": (
                f"test, official protocol (eval.py): best of the test epochs (every {cfg.test_every} and the last), "
                f"epoch {best['test_best'].get('epoch')}"
            ),
            "metrics": best["test_best"],
        },
        "validation": {"label": f"{validation.get('split')}, chosen trial, last epoch", "metrics": best["metrics"]},
    }


def _protocol(cfg: FinetuneConfig, info: dict, space: dict, plan: dict) -> dict:
    return {
        "classes": len(info["class_names"]),
        "eval_clips": cfg.data.eval_clips,
        "test_crop": cfg.data.test_crop,
        "video_score": cfg.video_score,
        "train_augmentation": "grayscale p=0.2, colour jitter (0.4, 0.4, 0.4, 0.1) p=0.8 (official)"
        if cfg.mode == "finetune"
        else f"none (linear probe), inputs {cfg.probe_inputs}",
        "frames_per_clip": cfg.data.frames_per_clip,
        "temporal_stride": cfg.data.temporal_stride,
        "crop_size": cfg.data.crop_size,
        "global_batch": cfg.train.global_batch,
        "micro_batch": cfg.train.micro_batch or "whole batch",
        "workers_per_trial": cfg.train.num_workers,
        "momentum": cfg.optim.momentum,
        "schedule": cfg.optim.schedule,
        "milestones": list(cfg.optim.milestones),
        "validation": info["validation"].get("note"),
        "test_every": cfg.test_every,
        "search_space": describe_space(space) or "none (defaults)",
        "samples": cfg.samples,
        "scheduler": f"ASHA on val_video_top1 (the {info['validation'].get('split')} split, max), one rung = one epoch",
        "trials_at_once": plan["max_concurrent"],
    }


def _record(cfg: FinetuneConfig, info: dict, space: dict, plan: dict, trials: list[dict], wall_s: float) -> dict:
    trials = _split_trial_metrics(trials)
    finished = [t for t in trials if t["status"] != "failed" and t["metrics"].get("video_top1") is not None]
    # The choice reads the validation accuracy only (the test split when val_fraction is 0).
    best = max(finished, key=lambda t: (t["metrics"]["video_top1"], t["epochs_run"]), default=None)
    setting = {
        "dataset": cfg.data.dataset,
        "split": cfg.data.split,
        "mode": cfg.mode,
        "backbone": cfg.model.arch,
        "pretrained": cfg.pretrained,
    }
    validation = info["validation"]
    notes = [
        (
            f"the best trial is chosen on the validation split ({validation.get('note')}); the test split is "
            "tested apart and never read by ASHA or the choice"
        )
        if validation.get("split") == "validation"
        else "validation = the test split (val_fraction 0), as the paper's protocol: both numbers are test-selected"
    ]
    if not best:
        notes.append("no trial finished: see the trials table for the errors")
    extra = {
        "protocol": _protocol(cfg, info, space, plan),
        "numbers": _numbers(cfg, best, validation),
        "validation": validation,
        "trials": [{k: v for k, v in t.items() if k != "path"} for t in trials],
        "notes": notes,
        "checkpoint_dir": info["checkpoint_dir"],
        "load_report": info["load_report"],
        "wall_s": round(wall_s, 1),
    }
    if best:
        extra["best"] = {
            "trial": best["trial"],
            "hyperparameters": best["hyperparameters"],
            "epochs_run": best["epochs_run"],
        }
    headline = {k: v for k, v in best["test"].items() if k != "epoch"} if best else {}
    return results.new_record("finetune", cfg.run_name(), setting, info["recipe"], headline, **extra)
