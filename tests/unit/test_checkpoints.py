"""Checkpoint format, run listing, metrics files and the progress line (no Ray)."""

from __future__ import annotations

import json
import os
import pickle

import pyarrow.fs as pafs
import pytest
import torch

from fame_ray import checkpoints as ckpt
from fame_ray.errors import UserError
from fame_ray.pretrain import progress
from fame_ray.pretrain.metrics import MetricsWriter
from fame_ray.storage import Location


def _write(run_dir, step, complete=True):
    state = {
        "model": {"w": torch.full((2,), float(step))},
        "step": step,
        "epoch": 0,
        "rng": [{"torch": torch.get_rng_state()}],
    }
    local = ckpt.write_local(
        str(run_dir / "staging" / str(step)),
        state,
        {"train": {"epochs": 1}},
        ckpt.make_meta(step, 0, {"loss": 1.0}, 1, "abc"),
    )
    target = str(run_dir / ckpt.dir_name(step))
    if complete:
        ckpt.copy_directory(local, pafs.LocalFileSystem(), target)
    else:
        os.makedirs(target)
        with (
            open(os.path.join(local, ckpt.STATE_FILE), "rb") as handle,
            open(os.path.join(target, ckpt.STATE_FILE), "wb") as out,
        ):
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


BAD_META = {
    "empty": b"",
    "truncated": b'{"step": 30, "epo',
    "not an object": b"[30]",
    "no step": b'{"epoch": 1}',
    "text step": b'{"step": "abc"}',
    "boolean step": b'{"step": true}',
    "fractional step": b'{"step": 30.5}',
    "not utf-8": b"\xff\xfe\x00",
}


@pytest.mark.parametrize("content", BAD_META.values(), ids=BAD_META.keys())
def test_an_invalid_meta_json_marks_the_checkpoint_incomplete(tmp_path, caplog, content):
    run_dir = tmp_path / "runs" / "r1"
    _write(run_dir, 10)
    _write(run_dir, 20)
    broken = _write(run_dir, 30)
    with open(os.path.join(broken, ckpt.META_FILE), "wb") as handle:
        handle.write(content)
    with caplog.at_level("WARNING", logger=ckpt.__name__):
        found = ckpt.list_checkpoints(Location.parse(str(run_dir)))
    assert [(info.step, info.complete) for info in found] == [(10, True), (20, True), (30, False)]
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1 and "checkpoint_00000030" in warnings[0] and "\n" not in warnings[0], warnings
    assert ckpt.latest_complete(Location.parse(str(run_dir))).step == 20


def test_a_run_with_a_bad_meta_json_and_bad_metrics_still_summarizes(tmp_path):
    root = tmp_path / "runs"
    broken = _write(root / "alpha", 10)
    with open(os.path.join(broken, ckpt.META_FILE), "w") as handle:
        handle.write('{"step": "ten"}')
    (root / "alpha" / ckpt.METRICS_FILE).write_text('{"step": 4, "loss": 1.0}\n7\n{"step": "x"}\n')
    summary = ckpt.summarize(Location.parse(str(root)), "alpha")
    assert summary.latest is None and summary.checkpoints[0].complete is False
    assert summary.last_step == 4


def test_write_local_renames_each_file_into_place_meta_last(tmp_path, monkeypatch):
    renamed = []
    real_replace = os.replace

    def replace(source, target):
        renamed.append(os.path.basename(target))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    directory = ckpt.write_local(str(tmp_path / "c"), {"step": 1}, {"train": {}}, {"step": 1})
    assert renamed == [ckpt.STATE_FILE, ckpt.CONFIG_FILE, ckpt.META_FILE]
    assert sorted(os.listdir(directory)) == sorted(renamed)  # no temporary file left behind


def test_a_failed_state_write_leaves_no_file_under_the_real_name(tmp_path):
    directory = tmp_path / "c"
    unpicklable = {"step": 1, "model": {"w": torch.zeros(4096)}, "hook": lambda: None}
    with pytest.raises((pickle.PicklingError, AttributeError)):  # which one depends on the Python version
        ckpt.write_local(str(directory), unpicklable, {}, {"step": 1})
    assert os.listdir(directory) == []


def test_copy_directory_skips_temporary_files(tmp_path):
    local = ckpt.write_local(str(tmp_path / "local"), {"step": 1}, {}, {"step": 1})
    (tmp_path / "local" / ".state.pt.leftover").write_bytes(b"half")
    ckpt.copy_directory(local, pafs.LocalFileSystem(), str(tmp_path / "out"))
    assert sorted(os.listdir(tmp_path / "out")) == sorted([ckpt.STATE_FILE, ckpt.CONFIG_FILE, ckpt.META_FILE])


def test_prune_keeps_the_newest_complete_and_leaves_ray_its_own(tmp_path):
    """Checkpoints found only by scanning storage are pruned to train.keep_checkpoints; the ones
    Ray Train's snapshot names stay (Ray deletes those itself and fails when one is gone), and
    so does anything newer than the newest complete one (an upload in flight)."""
    run_dir = tmp_path / "runs" / "r1"
    for step in (10, 20, 30, 40, 50):
        _write(run_dir, step)
    _write(run_dir, 5, complete=False)  # a cut-off upload, older than everything kept
    _write(run_dir, 60, complete=False)  # an upload in flight
    (run_dir / ckpt.RAY_SNAPSHOT).write_text(
        json.dumps({"checkpoint_results": [{"checkpoint": {"path": str(run_dir / ckpt.dir_name(20))}}]})
    )
    run = Location.parse(str(run_dir))
    deleted = ckpt.prune(run, keep=2)
    assert deleted == [ckpt.dir_name(5), ckpt.dir_name(10), ckpt.dir_name(30)]
    assert [info.step for info in ckpt.list_checkpoints(run)] == [20, 40, 50, 60]
    assert ckpt.prune(run, keep=2) == []


def test_prune_in_a_run_leaves_what_ray_dropped_from_its_snapshot_to_ray(tmp_path):
    """Ray writes the snapshot that drops a checkpoint before it deletes it; a worker that pruned
    by the snapshot of the moment deleted it in between and Ray's own delete failed the run
    ("Path not found"). A worker prunes only what was unmanaged when it started."""
    run_dir = tmp_path / "runs" / "r1"
    for step in (2, 4, 6, 8):
        _write(run_dir, step)

    def snapshot(*steps):
        results = [{"checkpoint": {"path": str(run_dir / ckpt.dir_name(s))}} for s in steps]
        (run_dir / ckpt.RAY_SNAPSHOT).write_text(json.dumps({"checkpoint_results": results}))

    snapshot(4, 6)  # the worker group starts: Ray has 4 and 6; 2 is an orphan of a killed session
    run = Location.parse(str(run_dir))
    at_start = ckpt.unmanaged(run)
    assert at_start == {ckpt.dir_name(2), ckpt.dir_name(8)}
    snapshot(6, 8)  # Ray registered 8 and dropped 4 from its snapshot; it has not deleted 4 yet
    assert ckpt.prune(run, keep=2, candidates=at_start) == [ckpt.dir_name(2)]
    assert [info.step for info in ckpt.list_checkpoints(run)] == [4, 6, 8]
    assert ckpt.prune(run, keep=2) == [ckpt.dir_name(4)]  # outside a run: the snapshot of now


def test_prune_never_deletes_the_latest_complete_checkpoint(tmp_path):
    run_dir = tmp_path / "runs" / "r1"
    _write(run_dir, 10)
    _write(run_dir, 20)
    run = Location.parse(str(run_dir))
    assert ckpt.prune(run, keep=0) == [ckpt.dir_name(10)]
    assert ckpt.latest_complete(run).step == 20
    assert ckpt.prune(Location.parse(str(tmp_path / "nothing")), keep=1) == []


@pytest.mark.parametrize("content", [None, b"", b'{"step": "x"}', b'{"step": 7}'])
def test_the_step_of_a_ray_checkpoint_is_none_when_its_meta_is_gone_or_damaged(tmp_path, content):
    import ray.train

    directory = tmp_path / "checkpoint_00000007"
    directory.mkdir()
    if content is not None:
        (directory / ckpt.META_FILE).write_bytes(content)
    step = ckpt.ray_checkpoint_step(ray.train.Checkpoint(path=str(directory), filesystem=pafs.LocalFileSystem()))
    assert step == (7 if content == b'{"step": 7}' else None)


def test_a_checkpoint_with_a_cuda_generator_state_from_an_older_version_loads_on_cpu(tmp_path):
    """Older checkpoints stored each rank's random state, a CUDA generator's among them (16
    bytes); restoring it on a CPU-only machine crashed. Nothing reads it any more."""
    run_dir = tmp_path / "runs" / "r1"
    state = {
        "model": {"w": torch.ones(2)},
        "step": 3,
        "epoch": 0,
        "rng": [{"torch": torch.get_rng_state(), "cuda": torch.zeros(16, dtype=torch.uint8)}],
    }
    local = ckpt.write_local(
        str(tmp_path / "staging"), state, {"train": {"epochs": 1}}, ckpt.make_meta(3, 0, {}, 1, "abc")
    )
    ckpt.copy_directory(local, pafs.LocalFileSystem(), str(run_dir / ckpt.dir_name(3)))
    loaded = ckpt.load_state(ckpt.latest_complete(Location.parse(str(run_dir))).location)
    assert loaded["step"] == 3 and torch.equal(loaded["model"]["w"], torch.ones(2))


def test_stage_report_names_the_bottleneck_and_the_costliest_stage():
    records = [
        {"step": i, "data_wait": 0.6, "step_time_s": 0.5, "decode_ms": 20.0, "crop_ms": 2.0, "mask_ms": 3.0}
        for i in range(1, 80)
    ]
    text = progress.stage_report(records)
    assert (
        "data wait 60%" in text
        and "the data side" in text
        and "decode 20.0 ms" in text
        and "(decode dominates)" in text
    )
    busy = progress.stage_report([{"step": 1, "data_wait": 0.05, "step_time_s": 1.0}])
    assert "bottleneck: the training step" in busy and "per clip" not in busy
    assert progress.stage_report([]) == "" and progress.stage_report([{"step": 1, "data_wait": "x"}]) == ""


def test_progress_line_shows_the_stage_times_when_the_rows_carry_them():
    base = {"loss": 1.0, "acc1": 0.5, "clips_per_s": 10.0, "data_wait": 0.1, "eta_s": 5}
    assert "ms/clip" not in progress.format_line(1, 2, 0, base)
    line = progress.format_line(1, 2, 0, {**base, "decode_ms": 7.74, "crop_ms": 1.44, "mask_ms": 2.96})
    assert line.endswith("| ms/clip decode 7.7 crop 1.4 fame 3.0")
    unmasked = progress.format_line(1, 2, 0, {**base, "decode_ms": 7.74, "crop_ms": 1.44, "mask_ms": 0.0})
    assert unmasked.endswith("| ms/clip decode 7.7 crop 1.4")  # moco, be, dclr: no FAME mask


def test_the_progress_line_shows_the_read_out_when_there_is_one():
    metrics = {"loss": 5.0, "acc1": 0.2, "clips_per_s": 40.0, "data_wait": 0.1, "eta_s": 60}
    assert "read-out" not in progress.format_line(10, 100, 0, metrics)
    assert progress.format_line(20, 100, 0, {**metrics, "readout": 0.625}).endswith("eta 1m00s | read-out 0.625")
