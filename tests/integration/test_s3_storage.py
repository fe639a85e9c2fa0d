"""Checkpoints on an S3-speaking server (moto, loopback): objects, resume, and an outage.

The resumed run talks to a second moto server in this process that serves the same buckets
(moto keeps its state per process); stopping it mid-run cuts the run off from storage while
the fixture's server stays up to inspect what was left behind.
"""

from __future__ import annotations

import socket

import pytest
from pretrain_support import run_in_thread, small_config, wait_for

from fame_ray import checkpoints as ckpt
from fame_ray import storage
from fame_ray.errors import UserError
from fame_ray.pretrain.driver import preflight

pytestmark = [pytest.mark.ray, pytest.mark.timeout(540)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ray_s3(bucket):
    """A local Ray instance started after the S3 env (AWS_* and AWS_ENDPOINT_URL) is set."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield bucket
    ray.shutdown()


def _objects(endpoint: str, prefix: str) -> list[str]:
    client = storage.boto3_client(endpoint)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket="fame-ray-test", Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def _run(cfg):
    thread, outcome, plan = run_in_thread(cfg)
    thread.join(timeout=400)
    assert not thread.is_alive()
    return outcome, plan


def test_checkpoints_are_objects_a_second_run_resumes_and_an_outage_fails_loudly(ray_s3, s3_server):
    from moto.server import ThreadedMotoServer

    root = f"{ray_s3}/runs"
    cfg = small_config(root, "s3-run", num_workers=2, cpus_per_worker=0.5, max_steps=8)
    cfg.storage.s3_endpoint = s3_server
    outcome, plan = _run(cfg)
    assert "error" not in outcome, outcome.get("error")
    run = plan.run
    keys = _objects(s3_server, "runs/s3-run/")
    for step in (4, 8):
        for name in (ckpt.STATE_FILE, ckpt.CONFIG_FILE, ckpt.META_FILE):
            assert f"runs/s3-run/{ckpt.dir_name(step)}/{name}" in keys
    assert "runs/s3-run/metrics.jsonl" in keys
    assert any(key.startswith("runs/s3-run/tensorboard/events.out.tfevents") for key in keys)

    # The second run goes through another server on the same (per-process) moto state, so
    # stopping that server is a storage outage for the run only.
    outage = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port())
    outage.start()
    host, port = outage.get_host_and_port()
    try:
        longer = small_config(root, "s3-run", num_workers=2, cpus_per_worker=0.5, max_steps=400, max_failures=0)
        longer.storage.s3_endpoint = f"http://{host}:{port}"
        thread, outcome, _ = run_in_thread(longer)
        wait_for(lambda: ckpt.latest_complete(run).step >= 12, 300, "a checkpoint of the resumed run")
        outage.stop()
        thread.join(timeout=300)
        assert not thread.is_alive(), "the run did not stop when storage went away"
        assert "error" in outcome, "a run that cannot write its checkpoints must fail"
    finally:
        outage.stop()
    records = ckpt.read_records(run)
    assert [r["step"] for r in records[:12]] == list(range(1, 13))
    assert {r["start_step"] for r in records if r["step"] > 8} == {8}
    found = ckpt.list_checkpoints(run)
    assert found[-1].step < 400
    for info in found:
        if info.complete:
            assert ckpt.load_state(info.location)["step"] == info.step
        else:
            names = [key.rsplit("/", 1)[-1] for key in _objects(s3_server, f"runs/s3-run/{info.name}/")]
            assert ckpt.META_FILE not in names


def test_missing_bucket_and_unreachable_endpoint_fail_before_workers(s3_server, tmp_path):
    cfg = small_config("s3://no-such-bucket/runs", "x")
    cfg.storage.s3_endpoint = s3_server
    with pytest.raises(UserError, match="does not exist"):
        preflight(cfg)
    cfg.storage.s3_endpoint = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(UserError, match="cannot reach the S3 endpoint"):
        preflight(cfg)


def test_finetune_and_retrieve_keep_their_runs_on_s3(ray_s3, s3_server, tmp_path):
    """--storage s3://... for the downstream commands: the Tune sweep's state, each trial's Ray
    Train checkpoints and results.json/.md are objects in the bucket; the pretrained weights
    are read from the bucket too; the report reads the results back from there."""
    import torch

    from fame_ray import config as C
    from fame_ray.config import presets
    from fame_ray.data.synthetic import write_dataset
    from fame_ray.downstream.features import run_retrieval
    from fame_ray.downstream.finetune import run_finetune
    from fame_ray.eval import report as results
    from fame_ray.models import build_backbone
    from fame_ray.storage import Location

    data_root = write_dataset(
        str(tmp_path / "hmdb51"), layout="hmdb51", num_classes=3, videos_per_class=4, frames=32, seed=1
    )
    weights = tmp_path / "fame_tiny.pth"
    torch.save(
        {
            "epoch": 1,
            "arch": "tiny",
            "state_dict": {f"module.encoder_q.{k}": v for k, v in build_backbone("tiny").state_dict().items()},
        },
        weights,
    )
    storage.boto3_client(s3_server).upload_file(str(weights), "fame-ray-test", "weights/fame_tiny.pth")

    def config(run_name):
        return C.build(
            C.FinetuneConfig,
            presets.demo_finetune(),
            None,
            {
                "data": {"dataset": "hmdb51", "data_root": data_root, "data_cpus": 0.5, "eval_clips": 1},
                "train": {"epochs": 1, "global_batch": 4, "cpus_per_worker": 0.5},
                "model": {"arch": "tiny"},
                "pretrained": f"{ray_s3}/weights/fame_tiny.pth",
                "storage": {"path": f"{ray_s3}/runs", "s3_endpoint": s3_server, "run_name": run_name},
            },
        )

    finetuned = run_finetune(config("ft"))
    assert finetuned["run_dir"] == f"{ray_s3}/runs/ft" and finetuned["trials"][0]["status"] == "completed", finetuned[
        "trials"
    ]
    keys = _objects(s3_server, "runs/ft/")
    assert {"runs/ft/results.json", "runs/ft/results.md", "runs/ft/sweep.json", "runs/ft/tuner.pkl"} <= set(keys)
    assert any(key.startswith("runs/ft/experiment_state-") for key in keys), keys
    trial = finetuned["trials"][0]["trial"]
    assert any(
        key.startswith(f"runs/ft/train/trial_{trial}/checkpoint_") and key.endswith("/finetune_state.pt")
        for key in keys
    ), keys

    retrieved = run_retrieval(config("ret"))
    assert (
        retrieved["run_dir"] == f"{ray_s3}/runs/ret"
        and retrieved["metrics"]["queries"] == 3
        and retrieved["metrics"]["gallery"] == 9
    )
    root = Location.parse(f"{ray_s3}/runs", s3_server)
    stored = [results.read(name, root) for name in ("ft", "ret")]
    assert stored[0]["metrics"] == finetuned["metrics"] and stored[1]["metrics"] == retrieved["metrics"]
    assert "| hmdb51 | 1 | retrieval | tiny |" in (root / "ret" / "results.md").read_text()
