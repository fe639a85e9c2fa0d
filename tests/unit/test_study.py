"""The study of `fame-ray reproduce` without Ray: its config, its stages, its record (resume and
refusal), the progress view and the table beside the paper's figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fame_ray import config as C
from fame_ray.config import StudyConfig, presets
from fame_ray.errors import UserError
from fame_ray.storage import Location
from fame_ray.study import progress, record, references
from fame_ray.study.plan import plan_stages, study_location, study_settings
from fame_ray.study.report import markdown, mean_std, summarize, table


def _quick(tmp_path, **values) -> StudyConfig:
    base = {"storage": {"path": str(tmp_path / "runs"), "run_name": "study-quick"}}
    return C.build(StudyConfig, presets.quick_study(str(tmp_path / "data")), None, C.merge(base, values))


def test_the_full_study_plans_three_splits_of_ucf101_and_hmdb51_and_one_of_diving48(tmp_path):
    study = C.build(
        StudyConfig,
        StudyConfig(),
        {"pretrain_preset": "ucf101-r21d", "methods": ["fame", "moco"], "storage": {"path": str(tmp_path)}},
    )
    keys = [stage.key for stage in plan_stages(study)]
    assert keys.count("finetune-ucf101-split3-moco") == 1 and "finetune-diving48-split2-fame" not in keys
    evaluations = [k for k in keys if k.startswith(("finetune-", "linear-", "retrieval-"))]
    # Per method: finetune 3 + 3 + 1, linear 3 + 3, retrieval 3 + 3.
    assert len(evaluations) == 2 * 19
    # Manifests are shared by the methods: one per dataset and split, first.
    manifests = [k for k in keys if k.startswith("manifests-")]
    assert len(manifests) == 7 and keys[: len(manifests)] == manifests
    assert keys.index("pretrain-moco") < keys.index("finetune-ucf101-split1-moco")


def test_stages_are_built_from_the_presets_with_the_study_values_on_top(tmp_path):
    stages = {s.key: s for s in plan_stages(_quick(tmp_path, linear={"optim": {"lr": 10.0}}))}
    linear = stages["linear-ucf101-split1-fame"].config
    assert (linear.mode, linear.preset, linear.optim.lr, linear.optim.weight_decay) == ("linear", "demo-linear", 10, 0)
    finetune = stages["finetune-hmdb51-split1-fame"]
    assert finetune.config.data.data_root == str(tmp_path / "data" / "hmdb51") and finetune.arch == "tiny"
    assert finetune.config.pretrained == str(tmp_path / "runs" / "study-quick" / "pretrain-fame")
    assert finetune.config.storage.path == str(tmp_path / "runs" / "study-quick")
    assert finetune.needs == ("manifests-hmdb51-split1", "pretrain-fame")
    assert stages["finetune-diving48-split1-fame"].optional
    pretrain = stages["pretrain-fame"].config
    assert (pretrain.method, pretrain.data.dataset, pretrain.train.max_steps) == ("fame", "ucf101", 8)


def test_a_study_file_names_its_job_files_relative_to_itself(tmp_path):
    (tmp_path / "pretrain.yaml").write_text("data: {dataset: ucf101}\nmodel: {arch: r2plus1d_18}\n")
    (tmp_path / "finetune.yaml").write_text("optim: {lr: 0.5}\nsamples: 2\n")
    study = C.build(
        StudyConfig,
        StudyConfig(),
        {"pretrain_config": "pretrain.yaml", "finetune_config": "finetune.yaml", "storage": {"path": str(tmp_path)}},
    )
    stages = {s.key: s for s in plan_stages(study, base_dir=str(tmp_path))}
    assert stages["pretrain-fame"].config.model.arch == "r2plus1d_18"
    assert stages["finetune-hmdb51-split2-fame"].config.optim.lr == 0.5
    assert stages["linear-hmdb51-split2-fame"].config.optim.lr == 30, "the probe keeps its own recipe"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"methods": ["fame", "simclr"]}, "unknown method(s) simclr"),
        ({"splits": [1, 4]}, "distinct official splits"),
        ({"finetune_on": ["kinetics400"]}, "unknown evaluation dataset 'kinetics400'"),
        ({"paper": "other"}, "study paper must be one of"),
        ({"pretrained": "w.pth", "methods": ["fame", "moco"]}, "--pretrained gives one encoder"),
        ({"pretrain_preset": "nope"}, "unknown preset 'nope'"),
    ],
)
def test_bad_study_settings_are_refused_in_one_line(tmp_path, values, message):
    with pytest.raises(UserError) as error:
        plan_stages(_quick(tmp_path, **values))
    assert message in error.value.one_line() and "\n" not in error.value.one_line()


def test_the_record_resumes_the_same_settings_and_refuses_others(tmp_path):
    study = _quick(tmp_path)
    stages = plan_stages(study)
    folder = study_location(study)
    settings = study_settings(study, stages)
    saved = record.open_record(folder, settings, [s.key for s in stages], "study-quick")
    assert record.start(saved, "pretrain-fame", now=10.0) is False
    record.save(saved, folder)
    again = record.open_record(folder, settings, [s.key for s in stages], "study-quick")
    assert record.start(again, "pretrain-fame", now=20.0) is True, "a stage left running resumes"
    record.finish(again, "pretrain-fame", now=25.0)
    entry = again["stages"]["pretrain-fame"]
    assert (entry["status"], entry["attempts"], entry["wall_s"]) == ("done", 2, 5.0)
    # The study moved to another storage: the same settings. Another recipe: refused, naming it.
    moved = _quick(tmp_path, storage={"path": str(tmp_path / "elsewhere")})
    assert study_settings(moved, plan_stages(moved)) == settings
    other = _quick(tmp_path, downstream={"train": {"epochs": 3}})
    with pytest.raises(UserError) as error:
        record.open_record(folder, study_settings(other, plan_stages(other)), [], "study-quick")
    assert "other settings" in error.value.message and "train.epochs" in error.value.message


def test_the_progress_view_counts_stages_and_estimates_the_rest(tmp_path):
    stages = plan_stages(_quick(tmp_path))
    state = record.new_record("study-quick", {}, [s.key for s in stages], now=0.0)
    assert progress.eta(stages, state, now=0.0) is None, "no estimate before a stage of each kind ended"
    for key, wall in (("manifests-ucf101-split1", 2.0), ("pretrain-fame", 60.0), ("finetune-ucf101-split1-fame", 30)):
        record.start(state, key, now=0.0)
        record.finish(state, key, now=wall)
    record.start(state, "finetune-hmdb51-split1-fame", now=100.0)
    # Left: 2 manifests (2 s each), finetunes hmdb51 (running 10 s of 30) and diving48 (30),
    # linear and retrieval (the mean of the training stages: 45 s each).
    assert progress.eta(stages, state, now=110.0) == pytest.approx(4 + 20 + 30 + 45 + 45)
    text = progress.view(stages, state, now=110.0)
    assert text.startswith("study study-quick: 3 done, 1 running, 5 left, 0 skipped; ETA 2.4 min")


def _results(official: float, held_out: float) -> dict:
    return {
        "kind": "finetune",
        "run": "r",
        "metrics": {"video_top1": held_out},
        "numbers": {
            "official": {"metrics": {"video_top1": official}},
            "held_out": {"metrics": {"video_top1": held_out}},
        },
    }


def test_the_table_gives_mean_and_std_over_splits_beside_the_paper(tmp_path):
    study = C.build(StudyConfig, StudyConfig(), {"pretrain_preset": "k400-i3d", "storage": {"path": str(tmp_path)}})
    stages = plan_stages(study)
    found = {f"finetune-ucf101-split{n}-fame": _results(v, v - 2) for n, v in ((1, 87.0), (2, 88.0), (3, 89.0))}
    found["retrieval-ucf101-split1-fame"] = {"kind": "retrieval", "run": "x", "metrics": {"R@1": 60.0, "R@5": 75.0}}
    summary = summarize(study, stages, found, {"finetune-diving48-split1-fame": "not found"}, {"study": "s"})
    row = next(r for r in summary["rows"] if (r["evaluation"], r["dataset"]) == ("finetune", "ucf101"))
    assert row["official"]["mean"] == 88.0 and row["official"]["std"] == pytest.approx(0.82, abs=0.01)
    assert row["held_out"]["mean"] == 86.0 and row["difference"] == -0.6
    assert [p["value"] for p in row["paper"]] == [88.6, 88.9]
    text = table(summary)
    row_text = "| UCF101 finetune | video top-1 | fame | 88.0 ± 0.8 (3 splits) | 86.0 ± 0.8 (3 splits) | 88.6 / 88.9 |"
    assert row_text in text
    assert "| UCF101 retrieval | R@1 | fame | 60.0 ± 0.0 (1 of 3 splits) | – | 64.6 |" in text
    assert "as this study" in summary["comparable"]
    assert "finetune-diving48-split1-fame: not found" in markdown(summary)
    json.dumps(summary)  # study.json is plain data


def test_the_paper_figures_are_those_of_named_sources_only():
    figures = [f for setting in references.PAPER.values() for f in setting.figures]
    assert {(f.dataset, f.task, f.value) for f in figures} == {
        ("ucf101", "finetune", 88.6),
        ("ucf101", "finetune", 88.9),
        ("hmdb51", "finetune", 61.1),
        ("diving48", "finetune", 72.9),
        ("ucf101", "retrieval", 64.6),
        ("ucf101", "finetune", 81.2),
    }
    assert all(f.source in (references.FAME_PAPER, references.OFFICIAL_README) for f in figures)
    assert references.figures_for("k400-i3d", "moco", "finetune", "ucf101", "video_top1") == []
    assert mean_std([None, float("nan")]) is None


def test_the_study_folder_is_the_storage_and_the_name(tmp_path):
    study = _quick(tmp_path, storage={"path": str(tmp_path / "s"), "run_name": "mine"})
    assert study_location(study) == Location.parse(str(tmp_path / "s" / "mine"))


def test_a_missing_dataset_or_split_file_stops_the_study_before_any_stage(tmp_path):
    from fame_ray.study.run import check_inputs

    study = _quick(tmp_path)
    with pytest.raises(UserError) as error:
        check_inputs(study, plan_stages(study))
    assert "manifests-ucf101-split1: data root" in error.value.message and "data_roots.ucf101" in error.value.hint
    lists = tmp_path / "data" / "UCF101" / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n")
    (tmp_path / "data" / "UCF101" / "UCF-101" / "ApplyEyeMakeup").mkdir(parents=True)
    with pytest.raises(UserError) as error:
        check_inputs(study, plan_stages(study))
    assert "split file trainlist01.txt" in error.value.one_line() and "\n" not in error.value.one_line()
    assert not (tmp_path / "runs").exists(), "nothing written before the inputs are checked"


@pytest.mark.parametrize(
    "job, arch, pretrain_data, crop, stages",
    [
        ("reproduce-k400-i3d.yaml", "i3d", "kinetics400", 224, 28),
        ("reproduce-ucf101-r21d.yaml", "r2plus1d_18", "ucf101", 112, 25),
    ],
)
def test_the_study_jobs_plan_the_official_protocols(job, arch, pretrain_data, crop, stages):
    jobs = Path(__file__).resolve().parents[2] / "jobs"
    study = C.build(StudyConfig, StudyConfig(), C.load_yaml(jobs / job))
    planned = {s.key: s for s in plan_stages(study, base_dir=str(jobs))}
    assert len(planned) == stages
    pretrain = planned["pretrain-fame"].config
    assert (pretrain.model.arch, pretrain.data.dataset, pretrain.train.epochs) == (arch, pretrain_data, 200)
    finetune = planned["finetune-hmdb51-split3-fame"].config
    assert (finetune.model.arch, finetune.data.crop_size, finetune.train.epochs, finetune.optim.lr) == (
        arch,
        crop,
        150,
        0.025,
    )
    linear = planned["linear-ucf101-split2-fame"].config
    assert (linear.mode, linear.train.epochs, linear.optim.lr, linear.data.crop_size) == ("linear", 100, 30, crop)


def test_the_dry_run_lists_every_stage_and_writes_nothing(tmp_path):
    from typer.testing import CliRunner

    from fame_ray.cli import app

    out = tmp_path / "quick"
    result = CliRunner().invoke(app, ["reproduce", "--quick", "--out", str(out), "--methods", "fame,moco", "--dry-run"])
    assert result.exit_code == 0, result.output
    for stage in (
        "manifests-ucf101-split1",
        "pretrain-moco",
        "linear-ucf101-split1-fame",
        "retrieval-ucf101-split1-moco",
    ):
        assert f"| {stage} |" in result.output
    assert "## Protocol: linear" in result.output and "SGD lr 30" in result.output
    assert "1 worker(s), at least 1 CPU per trial; 1 trial(s)" in result.output
    assert "inputs: the study would stop here" in result.output, "the quick data is written by a run, not a dry run"
    assert not out.exists()


def test_the_real_cli_refuses_an_unknown_method_in_one_line_before_any_stage(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fame_ray.cli",
            "reproduce",
            "--quick",
            "--out",
            str(tmp_path / "q"),
            "--methods",
            "simclr",
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, FAME_RAY_DEBUG=""),
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: unknown method(s) simclr") and "Traceback" not in done.stderr
    assert not (tmp_path / "q").exists()
