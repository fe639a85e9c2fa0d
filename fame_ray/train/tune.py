"""Ray Tune sweeps of downstream runs: search-space parsing and the Tuner launcher.

Search spaces are written on the command line (`--search lr=loguniform(1e-3,1e-1)`) or in
a YAML file (`lr: loguniform(1e-3, 1e-1)`, `dropout: [0.5, 0.7]`, `epochs: 30`), and are
parsed into a plain, YAML-safe form that the config keeps:
`{param: {"kind": grid|choice|uniform|loguniform|randint|value, "values": [...]}}`.
Only `to_tune_space` turns it into Ray Tune domains.

Each trial is a Ray Train run launched from inside a Tune function trainable (the Ray
2.60 Train V2 pattern: `TorchTrainer.fit()` in the trial, with
`ray.tune.integration.ray_train.TuneReportCallback` forwarding rank 0's reports to Tune).
"""

from __future__ import annotations

import difflib
import logging
import math
import re

import yaml

from fame_ray.errors import ConfigError

log = logging.getLogger(__name__)

# Searchable hyperparameters of a downstream run, and their value types.
SEARCHABLE = {"lr": float, "weight_decay": float, "dropout": float, "epochs": int}
KINDS = ("grid", "choice", "uniform", "loguniform", "randint", "value")
_CALL = re.compile(r"^\s*(\w+)\s*\((.*)\)\s*$")
# The Train driver inside a trial holds no CPU (it only waits on its workers); a Tune
# trial still needs a non-empty resource request, so it asks for 1 MiB of memory.
DRIVER_RESOURCES = {"cpu": 0, "memory": 2**20}


def _number(key: str, raw, kind: str):
    value = raw
    if isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            value = None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"search space '{key}': {raw!r} is not a number", "e.g. --search 'lr=loguniform(1e-3,1e-1)'")
    if SEARCHABLE[key] is int:
        if float(value) != int(value):
            raise ConfigError(f"search space '{key}': {raw!r} is not a whole number")
        return int(value)
    return float(value)


def _check_range(key: str, kind: str, values: list) -> None:
    usage = f"{kind}(low, high) with low < high"
    if kind in ("uniform", "loguniform", "randint"):
        if len(values) != 2 or not values[0] < values[1]:
            raise ConfigError(f"search space '{key}': {kind} needs two bounds, low < high; got {values}", usage)
        if kind == "loguniform" and values[0] <= 0:
            raise ConfigError(f"search space '{key}': loguniform bounds must be positive; got {values}", usage)
    elif not values:
        raise ConfigError(f"search space '{key}': {kind} needs at least one value")
    for value in values:
        if not _value_ok(key, value):
            raise ConfigError(f"search space '{key}': value {value} is out of range", "lr and epochs > 0, weight_decay >= 0, 0 <= dropout < 1")


def _value_ok(key: str, value) -> bool:
    if key == "dropout":
        return 0 <= value < 1
    if key == "weight_decay":
        return value >= 0
    return value > 0


def _check_key(key: str) -> str:
    key = key.strip()
    if key not in SEARCHABLE:
        close = difflib.get_close_matches(key, SEARCHABLE, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"searchable: {', '.join(SEARCHABLE)}"
        raise ConfigError(f"search space: unknown hyperparameter '{key}'", hint)
    return key


def parse_spec(key: str, spec) -> dict:
    """One hyperparameter's spec -> {"kind", "values"}.

    Accepted: 'loguniform(a,b)', 'uniform(a,b)', 'randint(a,b)', 'choice(a,b,...)',
    '[a, b, ...]' or a list (grid search), a number (fixed value), or the parsed form.
    """
    key = _check_key(key)
    if isinstance(spec, dict):
        return _parse_mapping(key, spec)
    if isinstance(spec, (list, tuple)):
        kind, raw_values = "grid", list(spec)
    elif isinstance(spec, str) and _CALL.match(spec):
        name, inner = _CALL.match(spec).groups()
        kind, raw_values = name.lower(), [v for v in inner.split(",") if v.strip()]
        if kind not in KINDS or kind in ("grid", "value"):
            raise ConfigError(f"search space '{key}': unknown distribution '{name}'", "use grid [a,b], choice(a,b), uniform(a,b), loguniform(a,b) or randint(a,b)")
    elif isinstance(spec, str) and spec.strip().startswith("["):
        try:
            raw_values = yaml.safe_load(spec)
        except yaml.YAMLError:
            raise ConfigError(f"search space '{key}': cannot parse {spec!r}", "a grid is written [a, b, c]") from None
        if not isinstance(raw_values, list):
            raise ConfigError(f"search space '{key}': cannot parse {spec!r}", "a grid is written [a, b, c]")
        kind = "grid"
    else:
        kind, raw_values = "value", [spec]
    values = [_number(key, raw, kind) for raw in raw_values]
    _check_range(key, kind, values)
    return {"kind": kind, "values": values}


def _parse_mapping(key: str, spec: dict) -> dict:
    if set(spec) == {"kind", "values"}:
        kind, raw_values = spec["kind"], spec["values"]
    elif len(spec) == 1:
        kind, raw_values = next(iter(spec.items()))
    else:
        raise ConfigError(f"search space '{key}': cannot parse {spec!r}", "e.g. {loguniform: [1e-3, 1e-1]}")
    if kind not in KINDS:
        raise ConfigError(f"search space '{key}': unknown distribution '{kind}'", f"one of {', '.join(KINDS)}")
    raw_values = raw_values if isinstance(raw_values, (list, tuple)) else [raw_values]
    values = [_number(key, raw, kind) for raw in raw_values]
    _check_range(key, kind, values)
    return {"kind": kind, "values": values}


def parse_search_flags(items: list[str]) -> dict:
    """`--search key=spec` strings -> parsed space (a later flag for a key wins)."""
    space = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"search space '{item}' is not of the form key=spec", "e.g. --search 'lr=loguniform(1e-3,1e-1)'")
        key, spec = item.split("=", 1)
        space[key.strip()] = parse_spec(key, spec.strip())
    return space


def load_search_file(path: str) -> dict:
    """A YAML file mapping hyperparameters to specs (optionally under `search_space:`)."""
    from fame_ray.config import load_yaml

    values = load_yaml(path)
    values = values.get("search_space", values)
    if not isinstance(values, dict):
        raise ConfigError(f"search file {path} must map hyperparameters to specs")
    return normalise_space(values)


def normalise_space(space: dict) -> dict:
    """Any accepted form (strings, lists, mappings) -> the parsed form; validates it."""
    return {key.strip(): parse_spec(key, spec) for key, spec in (space or {}).items()}


def max_value(space: dict, key: str, default):
    """The largest value a hyperparameter can take in the space (e.g. epochs for ASHA's max_t)."""
    entry = space.get(key)
    if not entry:
        return default
    return max(entry["values"])


def grid_size(space: dict) -> int:
    """Trials one sample of the space makes (the product of the grid sizes)."""
    return math.prod(len(e["values"]) for e in space.values() if e["kind"] == "grid")


def to_tune_space(space: dict, fixed: dict) -> dict:
    """Parsed space + fixed defaults -> a Ray Tune `param_space` over SEARCHABLE keys."""
    from ray import tune

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


def describe_space(space: dict) -> dict:
    """Readable specs for the results table, e.g. {'lr': 'loguniform(0.001, 0.1)'}."""
    out = {}
    for key, entry in space.items():
        values = ", ".join(f"{v:g}" for v in entry["values"])
        out[key] = {"grid": f"[{values}]", "value": values}.get(entry["kind"], f"{entry['kind']}({values})")
    return out


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
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

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


def placement_group_ledger():
    """Ray: a small actor that remembers which placement groups each trial's Train run holds.

    Ray Train V2 frees the placement group of a run whose controller died (a Tune trial
    stopped by ASHA) through a cleaner that finds the cluster via the State API; with
    several Ray instances on one machine that lookup fails and the group leaks, starving
    later trials. The ledger (filled by `RecordPlacementGroup` in the Train controller)
    lets `ReleasePlacementGroups` (a Tune callback on the driver) free them itself.
    """
    import ray

    @ray.remote(num_cpus=0)
    class PlacementGroupLedger:
        def __init__(self):
            self.groups = {}

        def add(self, trial_id, group):
            self.groups.setdefault(trial_id, []).append(group)

        def pop(self, trial_id):
            return self.groups.pop(trial_id, [])

    return PlacementGroupLedger.remote()


def record_placement_group_callback(ledger, trial_id: str):
    """A Ray Train (internal WorkerGroupCallback) callback: report the run's placement group."""
    import ray
    from ray.train.v2._internal.execution.callback import WorkerGroupCallback

    class RecordPlacementGroup(WorkerGroupCallback):
        def after_worker_group_start(self, worker_group):
            group = worker_group.get_worker_group_state().placement_group_handle.placement_group
            ray.get(ledger.add.remote(trial_id, group))

    return RecordPlacementGroup()


def release_placement_groups_callback(ledger):
    """A Tune callback: when a trial ends (completed, stopped early, failed), free its groups."""
    import ray
    from ray import tune
    from ray.util.placement_group import remove_placement_group

    class ReleasePlacementGroups(tune.Callback):
        def _release(self, trial):
            for group in ray.get(ledger.pop.remote(trial.trial_id)):
                try:
                    remove_placement_group(group)
                except Exception:  # noqa: BLE001 - already removed by Ray Train
                    log.debug("placement group of trial %s already removed", trial.trial_id)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._release(trial)

        def on_trial_error(self, iteration, trials, trial, **info):
            self._release(trial)

    return ReleasePlacementGroups()
