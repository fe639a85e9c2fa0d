"""The results table: results.json/.md of one run, and several runs side by side."""

import json
from pathlib import Path

import pytest

from fame_ray.errors import UserError
from fame_ray.eval import report as results
from fame_ray.storage import Location


def _record(run="finetune-ucf101-split1-r2plus1d_18", mode="finetune", metrics=None, recipe=None):
    trials = [
        {
            "trial": "a1",
            "status": "completed",
            "hyperparameters": {"lr": 0.025, "weight_decay": 1e-4, "dropout": 0.7, "epochs": 150},
            "epochs_run": 150,
            "metrics": {"video_top1": 81.2, "clip_top1": 74.0},
            "error": None,
        },
        {
            "trial": "b2",
            "status": "failed",
            "hyperparameters": {"lr": 0.1, "weight_decay": 1e-4, "dropout": 0.7, "epochs": 150},
            "epochs_run": 3,
            "metrics": {},
            "error": "RuntimeError: out of memory",
        },
    ]
    setting = {
        "dataset": "ucf101",
        "split": 1,
        "mode": mode,
        "backbone": "r2plus1d_18",
        "pretrained": "s3://b/runs/pretrain",
    }
    return results.new_record(
        "finetune",
        run,
        setting,
        recipe
        if recipe is not None
        else {"dataset": "ucf101", "epochs": 200, "schedule": "cosine", "mlp_head": True, "queue_size": 2048},
        metrics
        if metrics is not None
        else {"video_top1": 81.2, "video_top5": 95.5, "clip_top1": 74.0, "clip_top5": 92.1},
        best={"trial": "a1", "hyperparameters": trials[0]["hyperparameters"]},
        trials=trials,
        protocol={"eval_clips": 10},
    )


def test_percent_converts_fractions_and_keeps_counts():
    assert results.percent({"video_top1": 0.8125, "videos": 16, "clip_top1": float("nan")}) == {
        "video_top1": 81.25,
        "videos": 16,
        "clip_top1": None,
    }


def test_write_and_read_round_trip(tmp_path):
    record = _record()
    json_uri, md_uri = results.write(record, Location.parse(str(tmp_path / "run")))
    assert json.loads(Path(json_uri.uri).read_text())["metrics"]["video_top1"] == 81.2
    markdown = Path(md_uri.uri).read_text()
    assert "| ucf101 | 1 | finetune | r2plus1d_18 | s3://b/runs/pretrain | 81.2 | 95.5 | 74 | 92.1 |" in markdown
    assert "| schedule | cosine |" in markdown and "| mlp_head | yes |" in markdown
    assert "| b2 | failed |" in markdown and "out of memory" in markdown  # a failed trial is listed, not dropped
    root = Location.parse(str(tmp_path))
    assert results.read(str(tmp_path / "run"), root) == record
    assert results.read("run", root) == record
    assert results.read(json_uri.uri, root) == record


def test_missing_run_is_a_user_error(tmp_path):
    with pytest.raises(UserError):
        results.read(str(tmp_path / "nothing"), Location.parse(str(tmp_path)))


def test_record_without_recipe_says_so():
    markdown = results.render_markdown(_record(recipe={}))
    assert "not recorded" in markdown


def test_side_by_side_has_one_row_per_run_and_the_union_of_metrics():
    finetune = _record()
    retrieval = _record(run="retrieval-ucf101-split1-r2plus1d_18", mode="retrieval", metrics={"R@1": 64.6, "R@5": 80.1})
    table = results.side_by_side([finetune, retrieval]).splitlines()
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    assert header[:4] == ["run", "backbone", "pretrain data", "pretrain epochs"]
    assert header.index("video top-1 (%)") < header.index("R@1 (%)")
    assert len(table) == 4  # header, rule, two runs
    retrieval_row = [cell.strip() for cell in table[3].strip("|").split("|")]
    assert retrieval_row[header.index("R@1 (%)")] == "64.6"
    assert retrieval_row[header.index("video top-1 (%)")] == "–"


def test_cells_escape_pipes():
    assert results.fmt("a|b") == "a\\|b"
    assert results.fmt(0.0001) == "0.0001" and results.fmt(None) == "–"
    assert (
        results.fmt({"lr": "loguniform(0.001, 0.1)", "dropout": "[0.5, 0.7]"})
        == "lr: loguniform(0.001, 0.1); dropout: [0.5, 0.7]"
    )


NOT_RESULTS = {
    "another object": b'{"a": 1}',
    "a list": b"[1, 2]",
    "metrics not a mapping": json.dumps({"kind": "finetune", "run": "r", "metrics": [1]}).encode(),
    "recipe not a mapping": json.dumps(
        {"kind": "finetune", "run": "r", "metrics": {}, "pretrain_recipe": "x"}
    ).encode(),
    "broken JSON": b'{"kind": "finetune", "run',
    "not text": b"\xff\xfe\x00\x01",
}


@pytest.mark.parametrize("content", NOT_RESULTS.values(), ids=NOT_RESULTS.keys())
def test_a_json_file_that_is_not_a_results_file_is_one_line(tmp_path, content):
    path = tmp_path / "other.json"
    path.write_bytes(content)
    with pytest.raises(UserError) as error:
        results.read(str(path), Location.parse(str(tmp_path)))
    line = error.value.one_line()
    assert "not a fame-ray results file" in line and "\n" not in line


def _trial(name: str, val: float, test: float, best: float, best_epoch: int) -> dict:
    """A trial as sweep.trial_records gives it: its last report's val_*, test_* and test_best_*."""
    return {
        "trial": name,
        "status": "completed",
        "hyperparameters": {"lr": 0.025, "weight_decay": 1e-4, "dropout": 0.7, "epochs": 30},
        "epochs_run": 30,
        "metrics": {
            "val_video_top1": val,
            "val_videos": 95,
            "test_video_top1": test,
            "test_epoch": 29,
            "test_videos": 378,
            "test_best_video_top1": best,
            "test_best_epoch": best_epoch,
            "train_loss": 1.0,
        },
        "error": None,
        "path": "/x",
    }


def test_results_md_shows_the_held_out_and_the_official_number():
    """The trial is chosen on the validation split (a: 0.8 beats b: 0.7, although b tests
    better); results.md gives a's last-epoch test (unbiased) and a's best test epoch (the
    official protocol's number), each labelled."""
    from fame_ray.config import FinetuneConfig, build, presets
    from fame_ray.downstream import finetune

    cfg = build(FinetuneConfig, presets.recipe_finetune(), {"pretrained": "x"})
    info = {
        "class_names": ["a"] * 101,
        "validation": {"split": "validation", "note": "95 of the 950 training videos (10.0%)"},
        "recipe": {},
        "checkpoint_dir": "x",
        "load_report": None,
    }
    trials = [_trial("a", 0.8, 0.60, 0.65, 10), _trial("b", 0.7, 0.75, 0.78, 20)]
    record = finetune._record(cfg, info, {}, {"max_concurrent": 1}, trials, 1.0)
    assert record["best"]["trial"] == "a" and record["metrics"]["video_top1"] == 60.0
    assert record["numbers"]["official"]["metrics"]["video_top1"] == 65.0
    text = results.render_markdown(record)
    rows = [line for line in text.splitlines() if line.startswith("| test, ")]
    assert len(rows) == 2
    assert (
        rows[0].startswith("| test, trial chosen on the validation split, its last test (epoch 29) |")
        and "| 60 |" in rows[0]
    )
    assert "official protocol (eval.py): best of the test epochs" in rows[1] and "epoch 10" in rows[1]
    assert "| 65 |" in rows[1]
    assert "unbiased result: the trial was chosen on the validation split" in text
    assert "95 of the 950 training videos" in text
    # Without a validation split the text says both numbers are test-selected.
    info["validation"] = {"split": "test", "note": "val_fraction 0"}
    again = results.render_markdown(finetune._record(cfg, info, {}, {"max_concurrent": 1}, trials, 1.0))
    assert "neither test number is unbiased" in again and "chosen on the test split" in again
