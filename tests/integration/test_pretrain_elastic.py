"""Elastic training on a real local Ray cluster: the worker group grows when a node joins."""

from __future__ import annotations

import pytest
from pretrain_support import run_in_thread, small_config, wait_for

from fame_ray import checkpoints as ckpt

pytestmark = [pytest.mark.ray, pytest.mark.timeout(480)]

TARGET = 64


def test_worker_group_grows_when_a_node_joins(tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1, resources={"trainer_slot": 1})
        ray.init(address=cluster.address, log_to_driver=False)
        cfg = small_config(
            tmp_path,
            "elastic",
            max_steps=TARGET,
            checkpoint_every=8,
            num_workers=2,
            min_workers=1,
            cpus_per_worker=0.5,
            worker_resources={"trainer_slot": 1},
            elastic_resize_s=2.0,
        )
        thread, outcome, plan = run_in_thread(cfg)
        run_uri = plan.run
        wait_for(lambda: ckpt.latest_complete(run_uri) is not None, 300, "a first checkpoint with one worker")
        cluster.add_node(num_cpus=1, resources={"trainer_slot": 1})
        thread.join(timeout=400)
        assert not thread.is_alive(), "the elastic run did not finish"
        assert "error" not in outcome, outcome.get("error")
        assert outcome["result"].metrics["step"] == TARGET
        records = ckpt.read_records(run_uri)
        assert [r["step"] for r in records] == list(range(1, TARGET + 1))
        sizes = [r["world_size"] for r in records]
        assert sizes[0] == 1 and sizes[-1] == 2, f"world sizes seen: {sorted(set(sizes))}"
    finally:
        ray.shutdown()
        cluster.shutdown()
