"""Node loss on a real local multi-node Ray cluster: training resumes from a complete checkpoint.

ray.cluster_utils.Cluster starts a head and two worker nodes as processes on this machine.
Each worker node carries one `trainer_slot`, so the two training workers land on different
nodes; the test kills one of them mid-run (remove_node), adds a replacement node, and
checks that the run reaches its target step from a complete checkpoint with nothing corrupt.
"""

from __future__ import annotations

import pytest
from pretrain_support import assert_checkpoints_sound, run_in_thread, small_config, wait_for

from fame_ray import checkpoints as ckpt

pytestmark = [pytest.mark.ray, pytest.mark.timeout(480)]

TARGET = 24


def test_node_loss_mid_run_resumes_and_reaches_the_target(tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        trainer_nodes = [cluster.add_node(num_cpus=1, resources={"trainer_slot": 1}) for _ in range(2)]
        ray.init(address=cluster.address, log_to_driver=False)
        cfg = small_config(tmp_path, "node-loss", max_steps=TARGET, num_workers=2, cpus_per_worker=0.5, worker_resources={"trainer_slot": 1})
        thread, outcome, plan = run_in_thread(cfg)
        run_uri = plan.run
        wait_for(lambda: (ckpt.latest_complete(run_uri) or ckpt.CheckpointInfo("", run_uri, 0, True, {})).step >= 4, 300, "a first checkpoint")
        assert thread.is_alive(), f"the run ended before the node was killed: {outcome}"
        cluster.remove_node(trainer_nodes[0], allow_graceful=False)
        cluster.add_node(num_cpus=1, resources={"trainer_slot": 1})
        thread.join(timeout=360)
        assert not thread.is_alive(), "training did not finish after the node loss"
        assert "error" not in outcome, outcome.get("error")
        assert outcome["result"].metrics["step"] == TARGET
        found = assert_checkpoints_sound(run_uri)
        assert found[-1].step == TARGET and found[-1].complete
        records = ckpt.read_records(run_uri)
        assert [r["step"] for r in records] == list(range(1, TARGET + 1))
        assert max(r["start_step"] for r in records) >= 4, "no worker group restarted from a checkpoint"
    finally:
        ray.shutdown()
        cluster.shutdown()
