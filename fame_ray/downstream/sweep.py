"""Ray Tune sweeps of downstream runs: how many trials fit, the Tuner with ASHA, trial records,
and the placement-group bookkeeping a stopped trial needs.

Each trial is a Ray Train run launched from inside a Tune function trainable (the Ray 2.60
Train V2 pattern: `TorchTrainer.fit()` in the trial, with
`ray.tune.integration.ray_train.TuneReportCallback` forwarding rank 0's reports to Tune).
"""

from __future__ import annotations

import logging
import math

import ray
from ray import tune
from ray.train.v2._internal.execution.callback import WorkerGroupCallback
from ray.tune.schedulers import ASHAScheduler
from ray.util.placement_group import remove_placement_group

from fame_ray.downstream.search_space import SEARCHABLE
from fame_ray.errors import ConfigError

log = logging.getLogger(__name__)

# The Train driver inside a trial holds no CPU (it only waits on its workers); a Tune
# trial still needs a non-empty resource request, so it asks for 1 MiB of memory.
DRIVER_RESOURCES = {"cpu": 0, "memory": 2**20}


def to_tune_space(space: dict, fixed: dict) -> dict:
    """Parsed space + fixed defaults -> a Ray Tune `param_space` over SEARCHABLE keys."""
    builders = {
        "grid": tune.grid_search,
        "choice": tune.choice,
        "uniform": lambda v: tune.uniform(*v),
        "loguniform": lambda v: tune.loguniform(*v),
        "randint": lambda v: tune.randint(v[0], v[1] + 1),
        "value": lambda v: v[0],
    }
    param_space = {key: fixed[key] for key in SEARCHABLE}
    for key, entry in space.items():
        param_space[key] = builders[entry["kind"]](list(entry["values"]))
    return param_space


def concurrent_trials(total_cpus: float, total_gpus: float, trial_cpus: float, trial_gpus: float, wanted: int) -> int:
    """How many trials fit at once: every trial needs its workers AND its Ray Data CPUs.

    Ray Train runs start only when all their workers fit, so trials beyond this number
    would wait in line (or starve each other's data tasks on a small machine).
    """
    fits = math.floor((total_cpus + 1e-9) / trial_cpus) if trial_cpus > 0 else wanted
    if trial_gpus > 0:
        fits = min(fits, math.floor((total_gpus + 1e-9) / trial_gpus))
    if fits < 1:
        raise ConfigError(
            f"one trial needs {trial_cpus:g} CPUs and {trial_gpus:g} GPUs, the cluster has {total_cpus:g} CPUs and {total_gpus:g} GPUs",
            "lower train.num_workers / train.cpus_per_worker or grow the cluster",
        )
    return max(1, min(fits, wanted))


def run_sweep(trainable, param_space: dict, *, samples: int, max_concurrent: int, max_epochs: int, storage_path: str, name: str, trial_failures: int, storage_filesystem=None, metric: str = "val_video_top1", callbacks=None):
    """Run the Tuner: ASHA on `metric` (mode max), `samples` draws of the space.

    ASHA's time unit is the training iteration, i.e. one reported epoch. A trial that
    fails is retried `trial_failures` times (Tune's FailureConfig) and, if it still
    fails, comes back in the ResultGrid with its error: never dropped.
    """
    grace = max(1, max_epochs // 4)
    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=max(max_epochs, grace), grace_period=grace, reduction_factor=2)
    tuner = tune.Tuner(
        tune.with_resources(trainable, DRIVER_RESOURCES),
        param_space=param_space,
        tune_config=tune.TuneConfig(metric=metric, mode="max", scheduler=scheduler, num_samples=samples, max_concurrent_trials=max_concurrent, trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}"),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage_path,
            storage_filesystem=storage_filesystem,
            failure_config=tune.FailureConfig(max_failures=trial_failures),
            callbacks=callbacks,
            verbose=0,
        ),
    )
    return tuner.fit()


def trial_records(result_grid, planned_epochs_key: str = "epochs", metric: str = "val_video_top1") -> list[dict]:
    """One record per trial: id, status, hyperparameters, epochs run, last metrics, error.

    Status: 'completed', 'stopped early (ASHA)' when it ran fewer epochs than planned, or
    'failed' with the error's last line.
    """
    records = []
    for result in result_grid:
        config = dict(result.config or {})
        metrics = dict(result.metrics or {})
        planned = config.get(planned_epochs_key)
        epochs_run = metrics.get("epoch", 0) + 1 if metric in metrics else 0
        if result.error is not None:
            status = "failed"
            error = str(result.error).strip().splitlines()[-1][:300] if str(result.error).strip() else type(result.error).__name__
        else:
            status = "stopped early (ASHA)" if planned and epochs_run < planned else "completed"
            error = None
        records.append({
            "trial": metrics.get("trial_id") or _trial_id(result.path),
            "status": status,
            "hyperparameters": {k: config.get(k) for k in SEARCHABLE},
            "epochs_run": epochs_run,
            "metrics": {k: v for k, v in metrics.items() if k.startswith("val_") or k in ("train_loss",)},
            "error": error,
            "path": result.path,
        })
    return records


def _trial_id(path: str) -> str:
    return str(path or "").rstrip("/").rsplit("/", 1)[-1].replace("trial_", "")


@ray.remote(num_cpus=0)
class PlacementGroupLedger:
    """Ray: a small actor that remembers which placement groups each trial's Train run holds.

    Ray Train V2 frees the placement group of a run whose controller died (a Tune trial
    stopped by ASHA) through a cleaner that finds the cluster via the State API; with
    several Ray instances on one machine that lookup fails and the group leaks, starving
    later trials. The ledger (filled by `RecordPlacementGroup` in the Train controller)
    lets `ReleasePlacementGroups` (a Tune callback on the driver) free them itself.
    """

    def __init__(self):
        self.groups = {}

    def add(self, trial_id, group):
        self.groups.setdefault(trial_id, []).append(group)

    def pop(self, trial_id):
        return self.groups.pop(trial_id, [])


class RecordPlacementGroup(WorkerGroupCallback):
    """Ray Train callback (an internal interface of Train V2, pinned by a test): put the
    placement group of the trial's worker group into the ledger."""

    def __init__(self, ledger, trial_id: str):
        self.ledger, self.trial_id = ledger, trial_id

    def after_worker_group_start(self, worker_group):
        group = worker_group.get_worker_group_state().placement_group_handle.placement_group
        ray.get(self.ledger.add.remote(self.trial_id, group))


class ReleasePlacementGroups(tune.Callback):
    """Tune callback: when a trial ends (completed, stopped early, failed), free its groups."""

    def __init__(self, ledger):
        self.ledger = ledger

    def _release(self, trial):
        for group in ray.get(self.ledger.pop.remote(trial.trial_id)):
            try:
                remove_placement_group(group)
            except Exception:  # noqa: BLE001 - already removed by Ray Train
                log.debug("placement group of trial %s already removed", trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._release(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._release(trial)
