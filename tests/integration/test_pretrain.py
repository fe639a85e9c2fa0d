"""`fame-ray pretrain` end to end on the real pipeline (synthetic UCF101-layout videos), resume by
running again with the same run name, `runs list/show`, and bad input exiting 2 before Ray."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fame_ray import checkpoints as ckpt
from fame_ray.config import PretrainConfig, build, presets
from fame_ray.pretrain.driver import run_pretrain
from fame_ray.storage import Location

FAME_RAY = os.path.join(os.path.dirname(sys.executable), "fame-ray")


def _config(synth_root, storage_path, max_steps: int) -> PretrainConfig:
    return build(
        PretrainConfig,
        presets.demo_pretrain(),
        {
            "data": {
                "dataset": "ucf101",
                "data_root": synth_root,
                "manifest_dir": str(storage_path / "manifests"),
                "frames_per_clip": 4,
                "crop_size": 32,
            },
            "train": {
                "global_batch": 8,
                "max_steps": max_steps,
                "checkpoint_every": 2,
                "log_every": 1,
                "keep_checkpoints": 2,
            },
            "storage": {"path": str(storage_path / "runs"), "run_name": "demo"},
        },
    )


@pytest.mark.ray
@pytest.mark.timeout(420)
def test_pretrain_then_resume_with_the_same_name(synth_root, tmp_path, ray_local):
    result = run_pretrain(_config(synth_root, tmp_path, max_steps=3))
    assert result.metrics["step"] == 3
    run_uri = Location.parse(str(tmp_path / "runs" / "demo"))
    first = ckpt.latest_complete(run_uri)
    assert first.step == 3
    assert ckpt.read_config(first.location)["data"]["crop_size"] == 32
    assert len(ckpt.read_meta(first.location)["git_sha"]) > 0

    result = run_pretrain(_config(synth_root, tmp_path, max_steps=5))
    assert result.metrics["step"] == 5
    records = ckpt.read_records(run_uri)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    assert {r["start_step"] for r in records if r["step"] > 3} == {3}
    assert all(0 <= r["data_wait"] <= 1 and r["world_size"] == 2 for r in records)
    # The in-run read-out (train.readout_every, 40 in the demo preset): at the last step of each
    # session, beside the read-out of the encoder this session started from.
    readouts = {r["step"]: (r["readout"], r["readout_start"]) for r in records if "readout" in r}
    assert sorted(readouts) == [3, 5] and all(0 <= v <= 1 for pair in readouts.values() for v in pair), readouts
    kept = [info for info in ckpt.list_checkpoints(run_uri) if info.complete]
    assert [info.step for info in kept] == [4, 5]  # keep_checkpoints=2

    # The latest checkpoint's meta.json cut off to nothing (the one Ray Train registered, too):
    # it counts as incomplete, and the run resumes from the one before.
    (tmp_path / "runs" / "demo" / ckpt.dir_name(5) / ckpt.META_FILE).write_bytes(b"")
    result = run_pretrain(_config(synth_root, tmp_path, max_steps=6))
    assert result.metrics["step"] == 6
    assert {r["start_step"] for r in ckpt.read_records(run_uri) if r["step"] > 4} == {4}

    shown = subprocess.run(
        [FAME_RAY, "runs", "show", "demo", "--storage", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert "last step 6" in shown.stdout and "checkpoint_00000006" in shown.stdout and "INCOMPLETE" in shown.stdout
    # Live telemetry kept: per-clip stage times in every record, the stream's stats per epoch, and the summary.
    assert all(record["decode_ms"] > 0 and "mask_ms" in record for record in records)
    assert ckpt.data_stats(run_uri) and "data stream stats per epoch" in shown.stdout
    last = (tmp_path / "runs" / "demo" / ckpt.DATA_STATS_DIR / ckpt.data_stats(run_uri)[-1]).read_text()
    assert "steps 5-6: 2 of 2 delivered" in last and "the worker waited for data" in last, last
    assert "time: over the last" in shown.stdout and "per clip on the data side: decode" in shown.stdout
    listed = subprocess.run(
        [FAME_RAY, "runs", "list", "--storage", str(tmp_path / "runs")], capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0 and "demo" in listed.stdout


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_background_erasing_as_released_pretrains_end_to_end(synth_root, tmp_path, ray_local):
    """`--method be` on the real pipeline: three views per video (anchor, positive, the other
    clip as a negative), BE's one-way loss, two steps and a checkpoint whose backbone loads."""
    from fame_ray.models.loading import load_pretrained_backbone

    cfg = build(PretrainConfig, _config(synth_root, tmp_path, max_steps=2), {"method": "be"})
    result = run_pretrain(cfg)
    assert result.metrics["step"] == 2
    run = Location.parse(str(tmp_path / "runs" / "demo"))
    records = ckpt.read_records(run)
    assert [r["step"] for r in records] == [1, 2] and all(r["loss"] > 0 for r in records)
    latest = ckpt.latest_complete(run)
    saved = ckpt.read_config(latest.location)
    assert saved["method"] == "be" and isinstance(saved["train"]["micro_batch"], int)  # auto, resolved
    backbone, _ = load_pretrained_backbone(run, "tiny")
    assert backbone.feature_dim == 128


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--arch", "resnet50"], "unknown arch"),
        (["--batch", "1", "--workers", "2"], "smaller than the number of workers"),
        (["--set", "moco.queue_size=100"], "queue_size (100) must be divisible"),
        (["--resume", "no-such-run"], "no run named 'no-such-run'"),
        (["--workers", "2-x"], "--workers '2-x'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, flags, message):
    done = subprocess.run(
        [FAME_RAY, "pretrain", "--storage", str(tmp_path), *flags], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr


@pytest.mark.timeout(300)
def test_a_batch_that_cannot_fit_the_nodes_memory_is_refused_before_ray_train_starts(tmp_path):
    """I3D, 512 clips of 64x224x224 on one CPU worker: the estimate (fame_ray.models.memory) is far
    beyond any node's memory; the command connects to Ray, reads the nodes' memory and exits 2
    with one line, before any data is prepared or Ray Train starts."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "FAME_RAY_DEBUG")}
    env.update({"PYTHONPATH": repo, "FAME_RAY_DATA": str(tmp_path / "data")})
    flags = [
        "--arch",
        "i3d",
        "--batch",
        "512",
        "--workers",
        "1",
        "--set",
        "data.frames_per_clip=64",
        "--set",
        "data.crop_size=224",
        "--set",
        "moco.queue_size=1024",
    ]
    done = subprocess.run(
        [FAME_RAY, "pretrain", "--storage", str(tmp_path / "runs"), *flags],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1, done.stderr[-3000:]
    # train.micro_batch auto: refused only because even one clip at a time cannot fit (the whole
    # per-worker batch's inputs are decoded at once whatever the micro batch).
    assert (
        "pretrain needs ~" in errors[0]
        and "GB per worker (i3d, 64x224x224) even one clip at a time, but nodes have" in errors[0]
    ), errors[0]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "runs" / "pretrain-synthetic-i3d").exists() and not (tmp_path / "data").exists()
