"""Ray Tune sweeps of downstream runs: how many trials fit, the Tuner with ASHA (a new sweep, or
the one a dead driver left behind, resumed), trial records, and the placement-group bookkeeping
a stopped trial needs.

Each trial is a Ray Train run launched from inside a Tune function trainable (the Ray 2.60
Train V2 pattern: `TorchTrainer.fit()` in the trial, with
`ray.tune.integration.ray_train.TuneReportCallback` forwarding rank 0's reports to Tune).
"""

from __future__ import annotations

import json
import logging
import math
import threading

import ray
from ray import tune
from ray.train.v2._internal.execution.callback import WorkerGroupCallback
from ray.tune.schedulers import ASHAScheduler
from ray.util.placement_group import remove_placement_group

from fame_ray.downstream.search_space import SEARCHABLE
from fame_ray.errors import ConfigError
from fame_ray.storage import Location

log = logging.getLogger(__name__)

# Config keys (section, key) that say where a sweep is stored and what it runs on, not what it
# computes: a resumed sweep may change them (e.g. another S3 endpoint, a bigger cluster).
SITE_KEYS = (
    ("storage", None),
    ("max_concurrent", None),
    ("preset", None),
    ("train", "cpus_per_worker"),
    ("train", "worker_resources"),
    ("data", "data_cpus"),
    ("data", "decode_threads"),
)

# The Train driver inside a trial holds no CPU (it only waits on its workers); a Tune
# trial still needs a non-empty resource request, so it asks for 1 MiB of memory.
DRIVER_RESOURCES = {"cpu": 0, "memory": 2**20}
# Tune's trainable registry is one per process and job, keyed by the trainable's name, and not
# thread-safe: sweeps that run side by side in one driver (a study's stages) register under names
# of their own, one at a time.
_REGISTRY_LOCK = threading.Lock()


def register(trainable, name: str) -> str:
    """Register the trainable (with the trial drivers' resources) under a name of this sweep's
    own; the name Tune knows it by."""
    key = f"fame_ray_trial-{name}"
    with _REGISTRY_LOCK:
        tune.register_trainable(key, tune.with_resources(trainable, DRIVER_RESOURCES))
    return key


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
            (
                f"one trial needs {trial_cpus:g} CPUs and {trial_gpus:g} GPUs, the cluster has {total_cpus:g} CPUs "
                f"and {total_gpus:g} GPUs"
            ),
            "lower train.num_workers / train.cpus_per_worker or grow the cluster",
        )
    return max(1, min(fits, wanted))


def can_resume(experiment: Location) -> bool:
    """Whether `experiment` (storage root / run name) holds a Tune sweep to pick up: the Tuner's
    own file and at least one saved experiment state (a driver that died before Tune first
    saved its state left nothing to resume; the sweep then starts again)."""
    if not tune.Tuner.can_restore(experiment.path, storage_filesystem=experiment.filesystem):
        return False
    return any(
        info.base_name.startswith("experiment_state-") and info.base_name.endswith(".json")
        for info in experiment.children()
    )


def signature(config: dict) -> dict:
    """The settings that decide what a sweep computes: the config as a plain dict without
    SITE_KEYS (where it is stored, what it runs on), which a resumed sweep may change."""
    out = json.loads(json.dumps(config))
    for section, key in SITE_KEYS:
        holder = out.get(section, {}) if key else out
        holder.pop(key or section, None)
    return out


def signature_differences(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """Dotted names of the settings that differ between two signatures."""
    names = []
    for key in sorted(set(saved) | set(current)):
        old, new = saved.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            names += signature_differences(old, new, f"{prefix}{key}.")
        elif old != new:
            names.append(f"{prefix}{key}")
    return names


def run_sweep(
    trainable,
    param_space: dict,
    *,
    samples: int,
    max_concurrent: int,
    max_epochs: int,
    storage_path: str,
    name: str,
    trial_failures: int,
    storage_filesystem=None,
    metric: str = "val_video_top1",
    callbacks=None,
    resume: bool = False,
):
    """Run the Tuner: ASHA on `metric` (mode max), `samples` draws of the space.

    ASHA's time unit is the training iteration, i.e. one reported epoch. A trial that
    fails is retried `trial_failures` times (Tune's FailureConfig) and, if it still
    fails, comes back in the ResultGrid with its error: never dropped.

    `resume`: pick up the sweep in storage_path/name (`can_resume`) with `Tuner.restore`:
    finished and failed trials stay as they are, unfinished ones run again (their Train runs
    restart from their last epoch checkpoint); the rest of the settings are the saved ones.
    """
    registered = register(trainable, name)
    if resume:
        experiment = f"{storage_path}/{name}"
        tuner = tune.Tuner.restore(
            experiment,
            registered,
            resume_unfinished=True,
            storage_filesystem=storage_filesystem,
        )
        return tuner.fit()
    grace = max(1, max_epochs // 4)
    scheduler = ASHAScheduler(
        time_attr="training_iteration", max_t=max(max_epochs, grace), grace_period=grace, reduction_factor=2
    )
    tuner = tune.Tuner(
        registered,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=metric,
            mode="max",
            scheduler=scheduler,
            num_samples=samples,
            max_concurrent_trials=max_concurrent,
            trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",
        ),
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
    """One record per trial: id, status, hyperparameters, epochs run, workers (the Train run's
    world size at its last epoch), last metrics (val_*, test_* and test_best_*), error.

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
            error = (
                str(result.error).strip().splitlines()[-1][:300]
                if str(result.error).strip()
                else type(result.error).__name__
            )
        else:
            status = "stopped early (ASHA)" if planned and epochs_run < planned else "completed"
            error = None
        records.append(
            {
                "trial": metrics.get("trial_id") or _trial_id(result.path),
                "status": status,
                "hyperparameters": {k: config.get(k) for k in SEARCHABLE},
                "epochs_run": epochs_run,
                "workers": metrics.get("world_size"),
                "metrics": {
                    k: v for k, v in metrics.items() if k.startswith(("val_", "test_")) or k in ("train_loss",)
                },
                "error": error,
                "path": result.path,
            }
        )
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

    It is a named actor (`ledger(run_name)`), and the Tune callback holds only its name:
    Tune saves its callbacks with the sweep, and a resumed sweep (a new driver, maybe a new
    cluster) must find the ledger of its own driver, not a handle to a dead one.
    """

    def __init__(self):
        self.groups = {}

    def add(self, trial_id, group):
        self.groups.setdefault(trial_id, []).append(group)

    def pop(self, trial_id):
        return self.groups.pop(trial_id, [])


def ledger_name(run_name: str) -> str:
    return f"fame-ray-placement-groups-{run_name}"


def ledger(run_name: str):
    """This driver's PlacementGroupLedger of the sweep `run_name` (created on first use)."""
    return PlacementGroupLedger.options(name=ledger_name(run_name), get_if_exists=True).remote()


class RecordPlacementGroup(WorkerGroupCallback):
    """Ray Train callback (an internal interface of Train V2, pinned by a test): put the
    placement group of the trial's worker group into the ledger."""

    def __init__(self, ledger, trial_id: str):
        self.ledger, self.trial_id = ledger, trial_id

    def after_worker_group_start(self, worker_group):
        group = worker_group.get_worker_group_state().placement_group_handle.placement_group
        ray.get(self.ledger.add.remote(self.trial_id, group))


class ReleasePlacementGroups(tune.Callback):
    """Tune callback: when a trial ends (completed, stopped early, failed) or fails and is about
    to be retried, free its groups."""

    def __init__(self, run_name: str):
        self.run_name = run_name

    def _release(self, trial):
        try:
            groups = ray.get(ray.get_actor(ledger_name(self.run_name)).pop.remote(trial.trial_id))
        except ValueError:  # no ledger in this driver: nothing was recorded
            return
        for group in groups:
            try:
                remove_placement_group(group)
            except Exception:  # noqa: BLE001 - already removed by Ray Train
                log.debug("placement group of trial %s already removed", trial.trial_id)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._release(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._release(trial)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._release(trial)
