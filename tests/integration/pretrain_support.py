"""Helpers shared by the pretraining integration tests (small configs, a run in a thread)."""

from __future__ import annotations

import threading
import time

from fame_ray import config as config_lib
from fame_ray.train import checkpoint as ckpt
from fame_ray.train.bench import random_clip_dataset
from fame_ray.train.pretrain import fit, loop_config_for


def small_config(storage_path, run_name: str, **train) -> config_lib.PretrainConfig:
    """The demo recipe shrunk to a few hundred ms per step on 2 CPUs."""
    values = config_lib.demo_pretrain()
    values["data"].update(frames_per_clip=4, crop_size=32)
    values["train"].update({"epochs": 100, "max_steps": 24, "checkpoint_every": 4, "log_every": 2, "max_failures": 3, **train})
    values["storage"] = {"path": str(storage_path), "run_name": run_name}
    return config_lib.build(config_lib.PretrainConfig, values)


def run_in_thread(cfg, num_videos: int = 64):
    """Start fit() in a thread; returns (thread, outcome dict, loop config)."""
    loop_config = loop_config_for(cfg, num_videos)
    dataset = random_clip_dataset(cfg, num_videos)
    outcome: dict = {}

    def target():
        try:
            outcome["result"] = fit(cfg, loop_config, dataset, cfg.train.cpus_per_worker)
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome, loop_config


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def assert_checkpoints_sound(run_uri: str) -> list[ckpt.CheckpointInfo]:
    """Every checkpoint with meta.json loads and holds the step its name says."""
    found = ckpt.list_checkpoints(run_uri)
    for info in found:
        if info.complete:
            state = ckpt.load_state(info.uri)
            assert state["step"] == info.step == int(info.name.split("_")[1])
            assert {"model", "optimizer", "rng", "epoch"} <= set(state)
            assert "queue" in state["model"] and "queue_ptr" in state["model"]
    return found
