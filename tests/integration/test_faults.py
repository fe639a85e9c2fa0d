"""Node loss and preemption on a real local multi-node Ray cluster: training resumes from a
complete checkpoint, on preemption from one written at the step the SIGTERM found.

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
        cfg = small_config(
            tmp_path,
            "node-loss",
            max_steps=TARGET,
            num_workers=2,
            cpus_per_worker=0.5,
            worker_resources={"trainer_slot": 1},
        )
        thread, outcome, plan = run_in_thread(cfg)
        run_uri = plan.run
        wait_for(
            lambda: (ckpt.latest_complete(run_uri) or ckpt.CheckpointInfo("", run_uri, 0, True, {})).step >= 4,
            300,
            "a first checkpoint",
        )
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
        assert len([info for info in found if info.complete]) <= cfg.train.keep_checkpoints, (
            "storage kept more than train.keep_checkpoints"
        )
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_sigterm_to_a_node_guard_checkpoints_the_current_step_and_the_run_resumes_there(tmp_path):
    """A preempted node: `fame-ray node guard` gets SIGTERM and drains its node with a deadline;
    Ray Train reports the preemption, the workers write a checkpoint at the step they are at
    (periodic checkpoints are off), and after the deadline the run restarts on the remaining
    and a replacement node from that very step."""
    import signal
    import subprocess
    import sys

    import ray
    from ray.cluster_utils import Cluster

    # The run must still be going when the node goes: between the SIGTERM and the node's removal
    # (the preemption checkpoint, then the rest of --grace) it takes about 4 s, a dozen steps here.
    target = 80
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    guard = None
    try:
        trainer_nodes = [cluster.add_node(num_cpus=1, resources={"trainer_slot": 1}) for _ in range(2)]
        ray.init(address=cluster.address, log_to_driver=False)
        cfg = small_config(
            tmp_path,
            "sigterm",
            max_steps=target,
            checkpoint_every=target,
            log_every=2,
            num_workers=2,
            cpus_per_worker=0.5,
            worker_resources={"trainer_slot": 1},
        )
        thread, outcome, plan = run_in_thread(cfg)
        guard = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fame_ray.cli",
                "node",
                "guard",
                "--address",
                cluster.address,
                "--node-id",
                trainer_nodes[0].node_id,
                "--grace",
                "4",
            ]
        )
        wait_for(lambda: any(r["step"] >= 6 for r in ckpt.read_records(plan.run)), 300, "the run to reach step 6")
        guard.send_signal(signal.SIGTERM)
        wait_for(lambda: ckpt.latest_complete(plan.run) is not None, 120, "a checkpoint on preemption")
        saved = ckpt.latest_complete(plan.run).step
        assert 6 <= saved < target and saved % 2 == 0, saved
        assert guard.wait(timeout=60) == 0
        cluster.remove_node(trainer_nodes[0], allow_graceful=False)  # the node goes at its deadline
        cluster.add_node(num_cpus=1, resources={"trainer_slot": 1})
        thread.join(timeout=360)
        assert not thread.is_alive(), "training did not finish after the preemption"
        assert "error" not in outcome, outcome.get("error")
        assert outcome["result"].metrics["step"] == target
        records = ckpt.read_records(plan.run)
        assert [r["step"] for r in records] == list(range(1, target + 1))
        assert max(r["start_step"] for r in records) == saved, "the run did not resume from the preemption checkpoint"
        found = assert_checkpoints_sound(plan.run)
        assert [info.step for info in found if info.complete] == [saved, target]
    finally:
        if guard is not None and guard.poll() is None:
            guard.kill()
        ray.shutdown()
        cluster.shutdown()
