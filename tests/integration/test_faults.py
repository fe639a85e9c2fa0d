"""Node loss on a real local multi-node Ray cluster: training resumes from a complete checkpoint.

ray.cluster_utils.Cluster starts a head and two worker nodes as processes on this machine.
Each worker node carries one `trainer_slot`, so the two training workers land on different
nodes; the test kills one of them mid-run (remove_node), adds a replacement node, and
checks that the run reaches its target step from a complete checkpoint with nothing corrupt.
"""

from __future__ import annotations

import threading
import time

import pytest

from fame_ray import config as config_lib
from fame_ray.train import checkpoint as ckpt
from fame_ray.train import metrics as run_metrics
from fame_ray.train.bench import random_clip_dataset
from fame_ray.train.pretrain import fit, loop_config_for

pytestmark = [pytest.mark.ray, pytest.mark.timeout(480)]

TARGET = 24


def small_config(storage_path, run_name: str, **train) -> config_lib.PretrainConfig:
    """The demo recipe shrunk to a few hundred ms per step on 2 CPUs."""
    values = config_lib.demo_pretrain()
    values["data"].update(frames_per_clip=4, crop_size=32)
    values["train"].update({"max_steps": TARGET, "checkpoint_every": 4, "log_every": 2, "max_failures": 3, **train})
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


def test_node_loss_mid_run_resumes_and_reaches_the_target(tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        trainer_nodes = [cluster.add_node(num_cpus=1, resources={"trainer_slot": 1}) for _ in range(2)]
        ray.init(address=cluster.address, log_to_driver=False)
        cfg = small_config(tmp_path, "node-loss", num_workers=2, cpus_per_worker=0.5, worker_resources={"trainer_slot": 1})
        thread, outcome, loop_config = run_in_thread(cfg)
        run_uri = loop_config["run_uri"]
        wait_for(lambda: (ckpt.latest_complete(run_uri) or ckpt.CheckpointInfo("", "", 0, True, {})).step >= 4, 300, "a first checkpoint")
        assert thread.is_alive(), f"the run ended before the node was killed: {outcome}"
        cluster.remove_node(trainer_nodes[0], allow_graceful=False)
        cluster.add_node(num_cpus=1, resources={"trainer_slot": 1})
        thread.join(timeout=360)
        assert not thread.is_alive(), "training did not finish after the node loss"
        assert "error" not in outcome, outcome.get("error")
        assert outcome["result"].metrics["step"] == TARGET
        found = assert_checkpoints_sound(run_uri)
        assert found[-1].step == TARGET and found[-1].complete
        records = run_metrics.read_records(run_uri)
        assert [r["step"] for r in records] == list(range(1, TARGET + 1))
        assert max(r["start_step"] for r in records) >= 4, "no worker group restarted from a checkpoint"
    finally:
        ray.shutdown()
        cluster.shutdown()
