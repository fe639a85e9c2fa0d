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
