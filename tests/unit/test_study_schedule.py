"""Which stages of a study run at once (fame_ray.study.schedule) and the driver loop that runs them
(`study.run._run_stages`), without Ray: the stages' real configs, a cluster given as numbers, and
stand-ins for the stage entry points that record when they ran."""

from __future__ import annotations

import threading
import time

import pytest

from fame_ray import config as C
from fame_ray.config import StudyConfig
from fame_ray.errors import ConfigError
from fame_ray.storage import Location
from fame_ray.study import record, run, schedule
from fame_ray.study.plan import plan_stages, study_settings

BIG = {"CPU": 64.0, "GPU": 0.0}
SMALL = {"CPU": 2.0, "GPU": 0.0}


def _study(tmp_path, **values) -> StudyConfig:
    base = {"pretrain_preset": "ucf101-r21d", "methods": ["fame", "moco"], "storage": {"path": str(tmp_path)}}
    return C.build(StudyConfig, StudyConfig(), C.merge(base, values))


def test_on_a_large_cluster_the_evaluations_of_a_method_run_together_after_its_pretraining(tmp_path):
    stages = plan_stages(_study(tmp_path))
    waves = schedule.waves(stages, BIG)
    keys = [stage.key for stage in stages]
    assert waves[0] == [k for k in keys if k.startswith("manifests-")]  # 7 manifests at once
    assert waves[1] == ["pretrain-fame"] and waves[2] == ["pretrain-moco"]  # each wants the whole cluster
    evaluations = [k for k in keys if k.startswith(("finetune-", "linear-", "retrieval-"))]
    assert sorted(k for wave in waves[3:] for k in wave) == sorted(evaluations)
    assert max(len(wave) for wave in waves[3:]) > 1, waves
    by_key = {stage.key: stage for stage in stages}
    for wave in waves:
        if len(wave) > 1:  # stages started together fit the cluster side by side
            assert sum(schedule.want(by_key[k], BIG)["CPU"] for k in wave) <= BIG["CPU"], wave
    position = {key: index for index, wave in enumerate(waves) for key in wave}
    assert all(position[need] < position[s.key] for s in stages for need in s.needs)  # needs end first


def test_one_at_a_time_when_asked_or_when_one_stage_fills_the_cluster(tmp_path):
    stages = plan_stages(_study(tmp_path))
    assert all(len(wave) == 1 for wave in schedule.waves(stages, BIG, limit=1))
    finetune = next(s for s in stages if s.kind == "finetune")
    # The official finetune's smallest trial (its worker and its Ray Data CPU) fills 2 CPUs.
    assert schedule.want(finetune, SMALL)["CPU"] == SMALL["CPU"]
    before = tuple(s.key for s in stages if s.kind in ("manifests", "pretrain"))
    on_small = schedule.waves([s for s in stages if s.kind == "finetune"], SMALL, done=before)
    assert len(on_small) == 14 and all(len(wave) == 1 for wave in on_small)


def test_stages_started_together_split_what_is_free_and_a_lone_stage_gets_all_of_it(tmp_path):
    stages = plan_stages(_study(tmp_path))
    finetunes = [s for s in stages if s.kind == "finetune"][:2]
    wants = [schedule.want(s, BIG)["CPU"] for s in finetunes]
    together = schedule.admit(finetunes, {}, BIG)
    assert [s.key for s, _ in together] == [s.key for s in finetunes]
    assert sum(budget["CPU"] for _, budget in together) == pytest.approx(BIG["CPU"])
    assert all(budget["CPU"] >= want for (_, budget), want in zip(together, wants))
    (stage, budget), *rest = schedule.admit(finetunes[:1], {}, BIG)
    assert not rest and budget["CPU"] == BIG["CPU"]
    # What running stages hold is not given again: only what they leave.
    running = {"pretrain-x": {"CPU": 64 - wants[0], "GPU": 0.0}}
    assert [s.key for s, _ in schedule.admit(finetunes, running, BIG)] == [finetunes[0].key]
    assert schedule.admit(finetunes, {"pretrain-x": dict(BIG)}, BIG) == []


def _stand_in(log: list, fail: str = ""):
    lock = threading.Lock()

    def run_stage(stage, verbose=False, budget=None):
        with lock:
            log.append(("start", stage.key, time.monotonic(), threading.current_thread().name, budget))
        time.sleep(0.05 if stage.kind == "manifests" else 0.3)
        with lock:
            log.append(("end", stage.key, time.monotonic(), threading.current_thread().name, budget))
        if stage.key == fail:
            raise RuntimeError(f"{stage.key} broke")
        return None if stage.kind in ("manifests", "pretrain") else f"/results/{stage.key}.json"

    return run_stage


def _small_study(tmp_path, **values):
    study = _study(tmp_path, methods=["fame"], splits=[1], finetune_on=["ucf101", "hmdb51"], **values)
    study = C.build(StudyConfig, study, {"linear_on": [], "retrieval_on": ["ucf101"], "optional": []})
    stages = plan_stages(study)
    folder = Location.parse(str(tmp_path / "study"))
    folder.make_dirs()
    saved = record.open_record(folder, study_settings(study, stages), [s.key for s in stages], "study")
    return study, stages, folder, saved


def test_the_driver_runs_ready_stages_side_by_side_and_records_each(tmp_path, monkeypatch):
    study, stages, folder, saved = _small_study(tmp_path)
    log: list = []
    monkeypatch.setattr(run, "run_stage", _stand_in(log))
    monkeypatch.setattr(run, "_cluster", lambda: dict(BIG))
    said: list[str] = []
    run._run_stages(study, stages, saved, folder, said.append, False)
    assert all(entry["status"] == "done" for entry in record.read(folder)["stages"].values())
    times = {(kind, key): at for kind, key, at, _, _ in log}
    threads = {key: name for kind, key, _, name, _ in log if kind == "start"}
    evaluations = [s.key for s in stages if s.kind in ("finetune", "retrieval")]
    assert len(evaluations) == 3
    # Every evaluation starts after the pretraining ended, and they overlap one another.
    assert all(times[("start", key)] >= times[("end", "pretrain-fame")] for key in evaluations)
    assert max(times[("start", key)] for key in evaluations) < min(times[("end", key)] for key in evaluations)
    assert threads["pretrain-fame"] == threading.main_thread().name  # alone: in the main thread
    assert all(threads[key].startswith("stage") for key in evaluations)
    assert any("CPUs of the cluster" in line for line in said)


def test_a_failed_stage_is_raised_after_the_others_end_and_stays_running_for_the_rerun(tmp_path, monkeypatch):
    study, stages, folder, saved = _small_study(tmp_path)
    broken = "finetune-hmdb51-split1-fame"
    log: list = []
    monkeypatch.setattr(run, "run_stage", _stand_in(log, fail=broken))
    monkeypatch.setattr(run, "_cluster", lambda: dict(BIG))
    with pytest.raises(RuntimeError, match="broke"):
        run._run_stages(study, stages, saved, folder, lambda line: None, False)
    statuses = {key: entry["status"] for key, entry in record.read(folder)["stages"].items()}
    assert statuses[broken] == "running"
    assert statuses["finetune-ucf101-split1-fame"] == statuses["retrieval-ucf101-split1-fame"] == "done"
    # The rerun runs only what is not done.
    log.clear()
    monkeypatch.setattr(run, "run_stage", _stand_in(log))
    run._run_stages(study, stages, record.read(folder), folder, lambda line: None, False)
    assert [key for kind, key, *_ in log if kind == "start"] == [broken]


def test_concurrent_stages_is_checked(tmp_path):
    with pytest.raises(ConfigError, match="concurrent_stages"):
        _study(tmp_path, concurrent_stages=-1)
    assert all(len(wave) == 1 for wave in schedule.waves(plan_stages(_study(tmp_path)), BIG, limit=1))
