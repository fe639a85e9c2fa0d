"""Downstream end to end on a local Ray: pretrain a tiny model a few steps, then a Tune sweep
of two finetune trials, a linear probe, retrieval and the side-by-side report (UCF101
layout); and `fame-ray finetune` on an HMDB51-layout set from an official-layout .pth.

Learnable classes: the UCF101-layout set is written with `scene_bias=True`, which ties each
class to a background hue, so a tiny model learns it in a few dozen steps (measured: 88-100%
video top-1 after 6 epochs of 4 steps; motion alone needs more videos than a fast test can
decode). Chance is 25% (4 classes); the test requires more than ACCURACY_FLOOR.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fame_ray import config as C
from fame_ray.config import presets
from fame_ray.data import manifest
from fame_ray.storage import Location

pytestmark = [pytest.mark.ray, pytest.mark.slow]

# 4 classes, 8 test videos: chance is 25% video top-1; the finetuned tiny model must get at
# least half right (at chance, 4 or more of 8 happens 11% of the time; training makes it the rule).
ACCURACY_FLOOR = 50.0
# Per trial: 1 worker x 0.5 CPU + 0.5 CPU for Ray Data, so both trials fit on 2 CPUs at once.
SMALL = {"cpus_per_worker": 0.5}


@pytest.fixture(scope="module")
def local_ray():
    """A private local Ray instance (address='local' never joins another cluster)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    # with the dashboard: its State API lets Ray Train V2 free the placement groups of
    # runs whose Tune trial ASHA stopped (without it they leak and starve later runs)
    ray.init(address="local", num_cpus=2, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def learnable_root(tmp_path_factory):
    """4 classes x 6 videos in the UCF101 layout, background hue tied to the class."""
    from fame_ray.data.synthetic import write_dataset

    out = tmp_path_factory.mktemp("learnable") / "UCF101"
    return write_dataset(
        str(out), layout="ucf101", num_classes=4, videos_per_class=6, frames=40, scene_bias=True, seed=0
    )


@pytest.fixture(scope="module")
def pretrained(learnable_root, tmp_path_factory, local_ray):
    """A fame-ray pretraining run of the tiny model: a few MoCo + FAME steps."""
    from fame_ray.pretrain.driver import run_pretrain

    runs = tmp_path_factory.mktemp("runs")
    cfg = C.build(
        C.PretrainConfig,
        presets.demo_pretrain(),
        None,
        {
            "data": {"dataset": "ucf101", "data_root": learnable_root},
            "train": {"num_workers": 1, "max_steps": 2, "epochs": 1, "global_batch": 8, "checkpoint_every": 2},
            "moco": {"queue_size": 64},
            "storage": {"path": str(runs), "run_name": "pretrain-tiny"},
        },
    )
    run_pretrain(cfg)
    return str(runs / "pretrain-tiny"), str(runs)


def _finetune_config(data_root, pretrained_run, runs, **values):
    base = {
        "data": {"dataset": "ucf101", "data_root": data_root, "data_cpus": 0.5, "eval_clips": 2},
        "train": {"epochs": 6, "global_batch": 4, **SMALL},
        "storage": {"path": runs},
        "pretrained": pretrained_run,
        "optim": {"milestones": [4]},
        "dropout": 0.3,
    }
    return C.build(C.FinetuneConfig, presets.demo_finetune(), None, C.merge(base, values))


def test_finetune_sweep_linear_probe_retrieval_and_report(learnable_root, pretrained):
    from fame_ray.downstream.features import run_retrieval
    from fame_ray.downstream.finetune import run_finetune
    from fame_ray.eval import report as results

    pretrained_run, runs = pretrained
    sweep = _finetune_config(
        learnable_root, pretrained_run, runs, storage={"run_name": "ft"}, search_space={"lr": [0.01, 0.02]}
    )
    record = run_finetune(sweep)

    assert len(record["trials"]) == 2 and all(t["status"] != "failed" for t in record["trials"]), record["trials"]
    assert {t["hyperparameters"]["lr"] for t in record["trials"]} == {0.01, 0.02}
    assert record["best"]["hyperparameters"]["lr"] in (0.01, 0.02)
    metrics = record["metrics"]
    for key in ("clip_top1", "clip_top5", "video_top1", "video_top5"):
        assert 0.0 <= metrics[key] <= 100.0
    assert metrics["videos"] == 8 and metrics["clips"] == 16  # every test video, eval_clips=2 each
    assert metrics["video_top1"] >= ACCURACY_FLOOR, record["trials"]
    assert record["pretrain_recipe"]["arch"] == "tiny" and record["pretrain_recipe"]["queue_size"] == 64
    stored = json.loads(Path(os.path.join(runs, "ft", "results.json")).read_text())
    assert stored["metrics"]["video_top1"] == metrics["video_top1"]
    # Chosen on the validation split (held out of the 16 training videos, per class), tested apart.
    validation = record["validation"]
    assert validation["split"] == "validation" and validation["videos"] + validation["train_videos"] == 16
    # One of each class's 4 training videos (its two groups of 2 are too large for a 10% share).
    assert validation["videos"] == 4 and record["trials"][0]["metrics"]["videos"] == 4
    official = record["numbers"]["official"]["metrics"]
    assert official["video_top1"] >= metrics["video_top1"] and official["epoch"] in (0, 5)
    assert record["numbers"]["held_out"]["metrics"]["epoch"] == 5  # the last epoch, always tested
    markdown = Path(os.path.join(runs, "ft", "results.md")).read_text()
    assert "| test, trial chosen on the validation split, its last test (epoch " in markdown
    assert ") | ucf101 | 1 | finetune | tiny |" in markdown
    assert "| test, official protocol (eval.py): best of the test epochs" in markdown
    held = Location.parse(os.path.join(runs, "ft", "holdout", "val.parquet"))
    val_paths = set(manifest.read(held).to_pydict()["path"])
    train_paths = set(
        manifest.read(Location.parse(os.path.join(runs, "ft", "holdout", "train.parquet")))["path"].to_pylist()
    )
    assert len(val_paths) == validation["videos"] and not val_paths & train_paths

    linear = run_finetune(
        _finetune_config(
            learnable_root, pretrained_run, runs, mode="linear", storage={"run_name": "lin"}, train={"epochs": 2}
        )
    )
    assert linear["mode"] == "linear" and linear["trials"][0]["status"] == "completed"
    assert linear["metrics"]["videos"] == 8 and linear["metrics"]["video_top1"] > 25.0, linear["trials"]  # chance 25%

    retrieval = run_retrieval(_finetune_config(learnable_root, pretrained_run, runs, storage={"run_name": "ret"}))
    assert retrieval["metrics"]["queries"] == 8 and retrieval["metrics"]["gallery"] == 16
    recalls = [retrieval["metrics"][f"R@{k}"] for k in (1, 5, 10, 20, 50)]
    assert recalls == sorted(recalls) and recalls[-1] == 100.0  # R@k grows with k; 50 > gallery size

    table = results.side_by_side(
        [results.read(os.path.join(runs, name), Location.parse(runs)) for name in ("ft", "lin", "ret")]
    )
    assert len(table.splitlines()) == 5 and "R@1 (%)" in table and "video top-1 (%)" in table


def test_cli_finetune_from_an_official_fame_state_dict_on_hmdb51_layout(tmp_path):
    """`fame-ray finetune --pretrained official.pth`: keys module.encoder_q.* loaded strictly."""
    import subprocess
    import sys

    import torch

    from fame_ray.data.synthetic import write_dataset
    from fame_ray.models import build_backbone

    root = write_dataset(
        str(tmp_path / "hmdb51"), layout="hmdb51", num_classes=3, videos_per_class=4, frames=32, seed=1
    )
    backbone = build_backbone("tiny")
    state = {f"module.encoder_q.{k}": v for k, v in backbone.state_dict().items()}
    state.update({f"module.encoder_k.{k}": v.clone() for k, v in backbone.state_dict().items()})
    state.update(
        {
            "module.encoder_q.fc.0.weight": torch.zeros(128, 128),
            "module.queue": torch.zeros(128, 64),
            "module.queue_ptr": torch.zeros(1, dtype=torch.long),
        }
    )
    pth = tmp_path / "checkpoint_0199.pth.tar"
    torch.save({"epoch": 200, "arch": "tiny", "state_dict": state}, pth)

    args = [
        "finetune",
        "--dataset",
        "hmdb51",
        "--data-root",
        root,
        "--pretrained",
        str(pth),
        "--arch",
        "tiny",
        "--preset",
        "demo",
        "--epochs",
        "1",
        "--storage",
        str(tmp_path / "runs"),
        "--run-name",
        "official",
        "--set",
        "data.eval_clips=1",
        "--set",
        "train.global_batch=4",
    ]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    result = subprocess.run(
        [sys.executable, "-m", "fame_ray.cli", *args], capture_output=True, text=True, timeout=600, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "runs" / "official" / "results.json").read_text())
    assert record["dataset"] == "hmdb51" and record["backbone"] == "tiny" and record["pretrain_recipe"] == {}
    assert record["load_report"]["format"] == "official" and record["load_report"]["dropped"] > 0
    assert record["trials"][0]["status"] == "completed" and record["metrics"]["videos"] > 0
    assert "| hmdb51 | 1 | finetune | tiny |" in result.stdout
