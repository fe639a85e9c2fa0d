"""The Ray Train V2 internals that `RecordPlacementGroup` (fame_ray/downstream/sweep.py) relies on.

A finetune sweep frees the placement group of every trial Ray Tune stops (ASHA), fails or
finishes through a ledger that `RecordPlacementGroup` fills from inside each trial's Train run.
That callback uses interfaces Ray does not promise to keep (`ray.train.v2._internal`):

    WorkerGroupCallback.after_worker_group_start(worker_group)
    worker_group.get_worker_group_state().placement_group_handle.placement_group

plus the path by which a RunConfig callback reaches the worker group. If a Ray upgrade renames
or reshapes any of them, the callback would silently stop recording (or fail every trial); these
tests fail first, naming the file to update. They read Ray's classes and source; no Ray starts.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing

import pytest

ray = pytest.importorskip("ray")

from ray.train.v2._internal.execution import callback as callback_module  # noqa: E402
from ray.train.v2._internal.execution.controller import controller as controller_module  # noqa: E402
from ray.train.v2._internal.execution.worker_group import placement_group_handle as handle_module  # noqa: E402
from ray.train.v2._internal.execution.worker_group import state as state_module  # noqa: E402
from ray.train.v2._internal.execution.worker_group import worker_group as worker_group_module  # noqa: E402

from fame_ray.downstream.sweep import RecordPlacementGroup  # noqa: E402

FIX = (
    "update RecordPlacementGroup in fame_ray/downstream/sweep.py to the new interface "
    "(or drop it and the ledger if Ray now frees the placement groups of stopped trials itself)"
)


def require(condition: bool, what: str) -> None:
    """Fail with one message that says what changed in Ray and which file to update."""
    if not condition:
        pytest.fail(f"Ray {ray.__version__}: {what}; {FIX}", pytrace=False)


def test_worker_group_callback_still_has_after_worker_group_start():
    base = getattr(callback_module, "WorkerGroupCallback", None)
    require(base is not None, "ray.train.v2._internal.execution.callback.WorkerGroupCallback is gone")
    hook = getattr(base, "after_worker_group_start", None)
    require(callable(hook), "WorkerGroupCallback.after_worker_group_start is gone")
    require(
        list(inspect.signature(hook).parameters) == ["self", "worker_group"],
        f"WorkerGroupCallback.after_worker_group_start{inspect.signature(hook)} no longer takes (self, worker_group)",
    )
    require(
        issubclass(RecordPlacementGroup, base) and "after_worker_group_start" in vars(RecordPlacementGroup),
        "RecordPlacementGroup no longer overrides WorkerGroupCallback.after_worker_group_start",
    )


def test_a_run_config_callback_reaches_the_worker_group():
    """RunConfig callbacks that are not UserCallbacks go to the controller, which hands the
    WorkerGroupCallbacks among them to the worker group, which calls the hook with itself."""
    import ray.train
    from ray.train.torch import TorchTrainer

    recorder = RecordPlacementGroup(ledger=None, trial_id="pinned")
    trainer = TorchTrainer(
        lambda: None,
        scaling_config=ray.train.ScalingConfig(num_workers=1),
        run_config=ray.train.RunConfig(name="pinned", storage_path="/nonexistent-never-written", callbacks=[recorder]),
    )
    require(
        recorder in trainer._create_default_callbacks(),
        "TorchTrainer no longer passes RunConfig callbacks that are not UserCallbacks to its controller",
    )
    controller_source = inspect.getsource(controller_module.TrainController.__init__)
    require(
        "WorkerGroupCallback" in controller_source,
        "TrainController no longer hands WorkerGroupCallbacks to the worker group",
    )
    group_source = inspect.getsource(worker_group_module.WorkerGroup)
    require(
        "callback.after_worker_group_start(self)" in group_source,
        "WorkerGroup no longer calls callback.after_worker_group_start(self) once its workers are up",
    )


def test_worker_group_state_still_carries_the_placement_group_handle():
    group_class = worker_group_module.WorkerGroup
    getter = getattr(group_class, "get_worker_group_state", None)
    require(callable(getter), "WorkerGroup.get_worker_group_state is gone")
    require(
        list(inspect.signature(getter).parameters) == ["self"],
        f"WorkerGroup.get_worker_group_state{inspect.signature(getter)} now takes arguments",
    )
    returned = typing.get_type_hints(getter).get("return")
    require(
        returned is state_module.WorkerGroupState,
        f"WorkerGroup.get_worker_group_state now returns {returned}, not WorkerGroupState",
    )
    fields = (
        {field.name for field in dataclasses.fields(state_module.WorkerGroupState)}
        if dataclasses.is_dataclass(state_module.WorkerGroupState)
        else set()
    )
    require(
        "placement_group_handle" in fields,
        f"WorkerGroupState has no placement_group_handle field any more (fields: {sorted(fields)})",
    )


def test_the_placement_group_handle_still_exposes_the_placement_group():
    handle_base = getattr(handle_module, "PlacementGroupHandle", None)
    require(
        handle_base is not None and isinstance(inspect.getattr_static(handle_base, "placement_group", None), property),
        "PlacementGroupHandle.placement_group is no longer a property",
    )
    group = object()  # stands for a PlacementGroup: the default handle only wraps it
    require(
        handle_module.DefaultPlacementGroupHandle(group).placement_group is group,
        "DefaultPlacementGroupHandle(pg).placement_group no longer returns the placement group it wraps",
    )
    source = inspect.getsource(RecordPlacementGroup.after_worker_group_start)
    require(
        "get_worker_group_state().placement_group_handle.placement_group" in source,
        "RecordPlacementGroup reads the placement group some other way than this test pins: update the test with it",
    )
