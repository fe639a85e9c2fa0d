"""Resuming a finetune sweep (no Ray started): when a run directory holds a sweep to pick up,
and which settings may differ between the run that started it and the one that resumes it."""

from __future__ import annotations

import json

import pytest

from fame_ray import config as C
from fame_ray.config import presets
from fame_ray.downstream import finetune, sweep
from fame_ray.errors import UserError
from fame_ray.storage import Location


def _config(tmp_path, **values):
    base = {
        "data": {"dataset": "hmdb51", "data_root": str(tmp_path / "data")},
        "storage": {"path": str(tmp_path / "runs"), "run_name": "sweep"},
    }
    return C.build(C.FinetuneConfig, presets.demo_finetune(), None, C.merge(base, values))


def test_a_sweep_can_be_resumed_only_once_tune_saved_its_state(tmp_path):
    run = Location.parse(str(tmp_path / "run"))
    assert not sweep.can_resume(run)
    run.make_dirs()
    (tmp_path / "run" / "tuner.pkl").write_bytes(b"tuner")
    assert not sweep.can_resume(run), "a driver that died before Tune saved any state left nothing to resume"
    (tmp_path / "run" / "experiment_state-2026-01-01_00-00-00.json").write_text("{}")
    assert sweep.can_resume(run)


def test_where_a_sweep_runs_may_change_what_it_computes_may_not(tmp_path):
    started = sweep.signature(C.to_dict(_config(tmp_path)))
    moved = sweep.signature(
        C.to_dict(
            _config(
                tmp_path,
                storage={"path": str(tmp_path / "elsewhere"), "s3_endpoint": "http://127.0.0.1:9000"},
                train={"cpus_per_worker": 3.0},
                data={"data_cpus": 2.0},
                max_concurrent=4,
            )
        )
    )
    assert sweep.signature_differences(started, moved) == []
    changed = sweep.signature(
        C.to_dict(_config(tmp_path, train={"epochs": 9}, search_space={"lr": {"kind": "grid", "values": [0.1, 0.2]}}))
    )
    assert sweep.signature_differences(started, changed) == ["search_space.lr", "train.epochs"]


def test_resumable_saves_a_new_sweeps_settings_and_refuses_other_ones(tmp_path):
    cfg = _config(tmp_path)
    run = cfg.storage.root() / cfg.run_name()
    assert finetune.resumable(cfg, run) is False
    saved = json.loads((tmp_path / "runs" / "sweep" / finetune.SWEEP_FILE).read_text())
    assert "storage" not in saved and saved["train"]["epochs"] == cfg.train.epochs
    (tmp_path / "runs" / "sweep" / "tuner.pkl").write_bytes(b"tuner")
    (tmp_path / "runs" / "sweep" / "experiment_state-x.json").write_text("{}")
    assert finetune.resumable(cfg, run) is True
    with pytest.raises(UserError, match=r"is a sweep with other settings \(dropout, optim.lr\)"):
        finetune.resumable(_config(tmp_path, dropout=0.1, optim={"lr": 0.5}), run)
    (tmp_path / "runs" / "sweep" / finetune.SWEEP_FILE).write_text("{cut off")
    assert finetune.resumable(_config(tmp_path, dropout=0.1), run) is True, (
        "a damaged sweep.json cannot be compared: resume, with a warning"
    )
