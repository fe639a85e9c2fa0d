"""Checkpoint format, run listing, metrics files and the progress line (no Ray)."""

from __future__ import annotations

import json
import os

import pyarrow.fs as pafs
import pytest
import torch

from fame_ray import checkpoints as ckpt
from fame_ray.errors import UserError
from fame_ray.pretrain import progress
from fame_ray.pretrain.metrics import MetricsWriter
from fame_ray.storage import Location


def _write(run_dir, step, complete=True):
    state = {"model": {"w": torch.full((2,), float(step))}, "step": step, "epoch": 0, "rng": [{"torch": torch.get_rng_state()}]}
    local = ckpt.write_local(str(run_dir / "staging" / str(step)), state, {"train": {"epochs": 1}}, ckpt.make_meta(step, 0, {"loss": 1.0}, 1, "abc"))
    target = str(run_dir / ckpt.dir_name(step))
    if complete:
        ckpt.copy_directory(local, pafs.LocalFileSystem(), target)
    else:
        os.makedirs(target)
        with open(os.path.join(local, ckpt.STATE_FILE), "rb") as handle, open(os.path.join(target, ckpt.STATE_FILE), "wb") as out:
            out.write(handle.read()[:100])
    return target


def test_latest_complete_skips_checkpoints_without_meta(tmp_path):
    run_dir = tmp_path / "runs" / "r1"
    _write(run_dir, 10)
    _write(run_dir, 20)
    _write(run_dir, 30, complete=False)
    found = ckpt.list_checkpoints(Location.parse(str(run_dir)))
    assert [(info.step, info.complete) for info in found] == [(10, True), (20, True), (30, False)]
    latest = ckpt.latest_complete(Location.parse(str(run_dir)))
    assert latest.step == 20
    state = ckpt.load_state(latest.location)
    assert state["step"] == 20 and torch.equal(state["model"]["w"], torch.full((2,), 20.0))
    assert ckpt.read_meta(latest.location)["git_sha"] == "abc"
    assert ckpt.read_config(latest.location) == {"train": {"epochs": 1}}


def test_copy_directory_refuses_a_checkpoint_without_meta(tmp_path):
    local = tmp_path / "local"
    local.mkdir()
    (local / ckpt.STATE_FILE).write_bytes(b"x")
    with pytest.raises(FileNotFoundError):
        ckpt.copy_directory(str(local), pafs.LocalFileSystem(), str(tmp_path / "out"))
    assert not (tmp_path / "out" / ckpt.META_FILE).exists()


def test_dir_names_sort_by_step():
    names = [ckpt.dir_name(step) for step in (5, 40, 300)]
    assert names == sorted(names)


def test_runs_listing_and_unknown_run(tmp_path):
    root = tmp_path / "runs"
    _write(root / "alpha", 10)
    (root / "not-a-run").mkdir(parents=True)
    assert ckpt.run_names(Location.parse(str(root))) == ["alpha"]
    summary = ckpt.summarize(Location.parse(str(root)), "alpha")
    assert summary.last_step == 10 and summary.latest.step == 10
    with pytest.raises(UserError, match="no run named 'beta'"):
        ckpt.summarize(Location.parse(str(root)), "beta")


def test_metrics_writer_appends_and_truncates_on_resume(tmp_path):
    run = tmp_path / "run"
    writer = MetricsWriter(Location.parse(str(run)))
    for step in range(1, 6):
        writer.write(step, {"loss": 10.0 - step, "acc1": 0.1})
    writer.close()
    assert [r["step"] for r in ckpt.read_records(Location.parse(str(run)))] == [1, 2, 3, 4, 5]
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(run / "tensorboard"))
    resumed = MetricsWriter(Location.parse(str(run)), resume_step=3)
    resumed.write(4, {"loss": 0.5, "acc1": 0.9})
    resumed.close()
    lines = (run / ckpt.METRICS_FILE).read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4]
    assert json.loads(lines[-1])["loss"] == 0.5


def test_progress_line_and_timer():
    timer = progress.StepTimer()
    timer.data_ready()
    timer.step_done(16)
    summary = timer.summary(steps_left=10)
    assert 0 <= summary["data_wait"] <= 1 and summary["clips_per_s"] > 0
    line = progress.format_line(20, 80, 1, {"loss": 5.5, "acc1": 0.25, **summary})
    assert line.startswith("step 20/80 (25%) | epoch 1 | loss 5.500 | acc@1 0.250")
    assert progress.format_duration(3725) == "1h02m" and progress.format_duration(65) == "1m05s"
