"""`fame-ray pretrain --method dclr` through the CLI on the real pipeline (synthetic UCF101-layout
videos): the pipeline's rows carry DCLR's static frames, two DDP workers train in micro batches
after the queue warm-up, the driver is killed with SIGKILL (by its pid) after a checkpoint, and the
same command on one worker resumes at the checkpointed step (a resize at resume, as an elastic run
makes when a node is gone) and finishes; the checkpoint's query backbone then loads for finetuning
exactly like a FAME one."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pretrain_support import wait_for
from process_support import cli_env, kill_and_reap

from fame_ray import checkpoints as ckpt
from fame_ray.storage import Location

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]
STEPS = 6


def command(synth_root, tmp_path, workers: int = 2) -> list[str]:
    settings = {
        "data.manifest_dir": str(tmp_path / "manifests"),
        "data.frames_per_clip": 4,
        "data.crop_size": 32,
        "train.checkpoint_every": 1,
        "train.log_every": 1,
        "train.micro_batch": 2,
        "train.readout_every": 0,
        "dclr.warmup_steps": 1,
        "dclr.queue_size": 64,
    }
    flags = [item for key, value in settings.items() for item in ("--set", f"{key}={value}")]
    return [
        sys.executable,
        "-m",
        "fame_ray.cli",
        "pretrain",
        "--preset",
        "demo",
        "--method",
        "dclr",
        "--dataset",
        "ucf101",
        "--data-root",
        synth_root,
        "--workers",
        str(workers),
        "--batch",
        "8",
        "--max-steps",
        str(STEPS),
        "--storage",
        str(tmp_path / "runs"),
        "--run-name",
        "dclr",
        *flags,
    ]


def test_dclr_pretrains_resumes_after_its_driver_is_killed_and_its_backbone_loads(synth_root, tmp_path):
    from fame_ray.models.loading import load_pretrained_backbone

    run = Location.parse(str(tmp_path / "runs" / "dclr"))
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(command(synth_root, tmp_path), stdout=log, stderr=subprocess.STDOUT, env=cli_env())
    try:
        wait_for(lambda: first.poll() is not None or ckpt.latest_complete(run) is not None, 300, "a first checkpoint")
        assert first.poll() is None, f"the run ended before it was killed:\n{(tmp_path / 'first.log').read_text()}"
    finally:
        kill_and_reap(first)
    killed_at = ckpt.latest_complete(run).step
    assert killed_at < STEPS

    # Resumed on one worker: the run resizes at its checkpoint (DCLR's queues and the sampler's
    # order carry over), as an elastic run does when a node is gone.
    second = subprocess.run(
        command(synth_root, tmp_path, workers=1), capture_output=True, text=True, timeout=420, env=cli_env()
    )
    assert second.returncode == 0, second.stderr[-3000:]
    records = ckpt.read_records(run)
    resumed = [r for r in records if r["start_step"] > 0]
    assert resumed and min(r["step"] for r in resumed) == resumed[0]["start_step"] + 1, resumed
    assert sorted({r["step"] for r in records}) == list(range(1, STEPS + 1))  # no step lost across the kill
    assert all(r["loss"] > 0 and 0 <= r["acc1"] <= 1 for r in records), records
    assert {r["world_size"] for r in records if r["start_step"] == 0} == {2}
    assert {r["world_size"] for r in resumed} == {1}
    state = ckpt.load_state(ckpt.latest_complete(run).location)
    assert state["step"] == STEPS and "queues" in state["model"], sorted(state["model"])[:5]
    saved = ckpt.read_config(ckpt.latest_complete(run).location)
    assert saved["method"] == "dclr" and saved["train"]["micro_batch"] == 2
    backbone, report = load_pretrained_backbone(run, "tiny")
    assert backbone.feature_dim == 128 and report["format"] == "fame-ray", report
