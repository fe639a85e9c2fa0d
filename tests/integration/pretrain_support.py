"""Helpers shared by the pretraining integration tests (small configs, a run in a thread)."""

from __future__ import annotations

import threading
import time

from fame_ray import checkpoints as ckpt
from fame_ray.bench.train import random_clip_dataset
from fame_ray.config import PretrainConfig, build, presets
from fame_ray.pretrain.driver import fit
from fame_ray.pretrain.plan import RunPlan, make_plan
from fame_ray.runtime import ResourcePlan
from fame_ray.storage import Location


def small_config(storage_path, run_name: str, **train) -> PretrainConfig:
    """The demo recipe shrunk to a few hundred ms per step on 2 CPUs."""
    values = {
        "data": {"frames_per_clip": 4, "crop_size": 32},
        "train": {"epochs": 100, "max_steps": 24, "checkpoint_every": 4, "log_every": 2, "max_failures": 3, **train},
        "storage": {"path": str(storage_path), "run_name": run_name},
    }
    return build(PretrainConfig, presets.demo_pretrain(), values)


def plan_for(cfg: PretrainConfig, num_videos: int) -> RunPlan:
    """The plan of a run over random clips (no manifest; the workers hold the CPUs they are given)."""
    resources = ResourcePlan(cfg.train.cpus_per_worker, 0.0)
    nowhere = cfg.storage.root() / "no-manifest"
    return make_plan(cfg, {"train": nowhere, "test": nowhere}, num_videos, resources, ckpt.git_sha())


def run_in_thread(cfg, num_videos: int = 64):
    """Start fit() in a thread; returns (thread, outcome dict, run plan)."""
    plan = plan_for(cfg, num_videos)
    dataset = random_clip_dataset(cfg, num_videos)
    outcome: dict = {}

    def target():
        try:
            outcome["result"] = fit(cfg, plan, dataset)
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome, plan


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def assert_checkpoints_sound(run: Location) -> list[ckpt.CheckpointInfo]:
    """Every checkpoint with meta.json loads and holds the step its name says."""
    found = ckpt.list_checkpoints(run)
    for info in found:
        if info.complete:
            state = ckpt.load_state(info.location)
            assert state["step"] == info.step == int(info.name.split("_")[1])
            assert {"model", "optimizer", "epoch", "step"} <= set(state) and "rng" not in state
            assert "queue" in state["model"] and "queue_ptr" in state["model"]
    return found
