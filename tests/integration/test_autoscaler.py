"""cluster/local.yaml on Ray's fake multinode provider, started cold like every cluster in
cluster/ (a head of 0 CPUs, worker groups at 0): a submitted pretrain and finetune ask the
autoscaler for their nodes, get them, and plan on them.

The head is a real `ray start --head --autoscaling-config <local.yaml>` with RAY_FAKE_CLUSTER=1
(tests/integration/cluster_head.py: loopback, token auth on, own temp dir, killed by its own
process group). The autoscaler inside it "launches" nodes as extra raylets on this machine.
Ray's own AutoscalingCluster helper is not used: it runs `ray stop --force`, which kills every
Ray on the machine, and reads an example YAML the wheel does not ship.

On 2 cores: the nodes are cpu_data and gpu_train nodes of 1 CPU each (GPU as a resource only).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cluster_head import free_port, start_head, stop_head

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]


def _start_autoscaling_head(tmp_path, head_cpus: int):
    port = free_port()
    config = yaml.safe_load((ROOT / "cluster" / "local.yaml").read_text())
    config["provider"]["gcs_address"] = f"127.0.0.1:{port}"
    config["available_node_types"]["ray.head.default"]["resources"] = {"CPU": head_cpus}
    config_path = tmp_path / "local.yaml"
    config_path.write_text(yaml.safe_dump(config))
    return start_head(
        num_cpus=head_cpus, port=port,
        extra_args=["--autoscaling-config", str(config_path), "--object-store-memory", str(200 * 1024**2)],
        extra_env={"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"},
    )  # fmt: skip


@pytest.fixture
def cold_head(tmp_path):
    """A head of 0 CPUs and every worker group at 0 nodes, like every cluster in cluster/."""
    head = _start_autoscaling_head(tmp_path, head_cpus=0)
    try:
        yield head
    finally:
        stop_head(head)


def monitor_log(head) -> str:
    logs = Path(head.temp_dir) / "session_latest" / "logs"
    return "".join(p.read_text(errors="replace") for p in logs.glob("monitor*"))


def _fame_ray(args: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "fame-ray"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def _alive_workers(head) -> int:
    probe = (
        "import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); print(sum(n['Alive'] for n in "
        "ray.nodes()) - 1)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, head.gcs_address],
        env=head.client_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return int(out.stdout.strip().splitlines()[-1])


def test_pretrain_and_finetune_on_a_cold_cluster_bring_their_nodes_and_plan_on_them(cold_head, tmp_path):
    """At submission the cluster shows 0 CPUs. Each job asks the autoscaler for its workers and
    its Ray Data CPUs, waits for the nodes, plans on them (as configured: 1 CPU for the worker,
    1 then 2 for Ray Data) and runs."""
    import os

    data, runs = tmp_path / "ucf", tmp_path / "runs"
    local = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    made = _fame_ray(
        [
            "synth",
            "--layout",
            "ucf101",
            "--out",
            str(data),
            "--classes",
            "2",
            "--videos-per-class",
            "4",
            "--frames",
            "16",
            "--size",
            "64x48",
        ],
        local,
        120,
    )
    assert made.returncode == 0, made.stderr[-2000:]
    prepared = _fame_ray(
        ["data", "prepare", "--dataset", "ucf101", "--data-root", str(data)], local, 180
    )  # a local instance, not the cluster
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    assert _alive_workers(cold_head) == 0
    sizes = [
        "--set",
        "train.num_workers=1",
        "--set",
        "train.cpus_per_worker=1",
        "--set",
        "data.data_cpus=1",
        "--set",
        "train.cluster_wait_s=240",
    ]
    common = ["--dataset", "ucf101", "--data-root", str(data), "--storage", str(runs), "--preset", "demo"]
    tiny = ["--set", "data.frames_per_clip=4", "--set", "data.crop_size=32", *sizes]
    client = {**cold_head.client_env(), "RAY_ADDRESS": cold_head.gcs_address}
    pretrain_args = [
        "--run-name",
        "cold",
        "--max-steps",
        "2",
        "--set",
        "train.global_batch=4",
        "--set",
        "train.readout=false",
        "--set",
        "train.readout_every=0",
    ]
    pretrain = _fame_ray(["pretrain", *common, *pretrain_args, *tiny], client, 330)
    assert pretrain.returncode == 0, pretrain.stderr[-4000:] + cold_head.log_tail()
    said = pretrain.stderr[-3000:]
    assert "asked the autoscaler" in pretrain.stderr and "has what it asked for" in pretrain.stderr, said
    assert "1 CPU each, 1 CPU for decoding" in pretrain.stderr, pretrain.stderr[-3000:]
    monitor = monitor_log(cold_head)
    assert "Adding" in monitor and "of type cpu_data" in monitor  # node types of cluster/local.yaml
    # The finetune asks for more than the nodes the pretraining brought (1 CPU for the worker, 2
    # for Ray Data): it too waits for the autoscaler.
    assert _alive_workers(cold_head) <= 2
    finetune_args = [
        "--run-name",
        "cold-ft",
        "--pretrained",
        str(runs / "cold"),
        "--arch",
        "tiny",
        "--set",
        "train.epochs=1",
    ]
    finetune = _fame_ray(["finetune", *common, *finetune_args, *tiny, "--set", "data.data_cpus=2"], client, 330)
    assert finetune.returncode == 0, finetune.stderr[-4000:] + cold_head.log_tail()
    said = finetune.stderr[-3000:]
    assert "asked the autoscaler" in finetune.stderr and "has what it asked for" in finetune.stderr, said
    assert "(2 for Ray Data)" in finetune.stderr, finetune.stderr[-3000:]
    assert (runs / "cold-ft" / "results.md").exists()
