"""Bad input to `fame-ray finetune` / `retrieve` / `report`: one line, exit code 2, before any
trial starts (so these run in seconds, without a Ray cluster)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from weights_support import write_tiny_official_pth


def fame_ray(*args: str, env: dict | None = None, cwd: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fame_ray.cli", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def tiny_official_pth(tmp_path_factory):
    """A state dict in the official FAME layout (module.encoder_q.* + head, key encoder, queue)."""
    return write_tiny_official_pth(tmp_path_factory.mktemp("official") / "checkpoint_0199.pth.tar")


def test_unknown_dataset_lists_the_known_ones(tmp_path):
    line = assert_one_line_error(
        fame_ray("finetune", "--dataset", "kinetics700", "--pretrained", "x.pth"),
        "unknown dataset 'kinetics700'",
        "ucf101",
        "hmdb51",
        "diving48",
    )
    assert "synthetic" in line


def test_missing_dataset_says_where_to_get_it(tmp_path, tiny_official_pth):
    result = fame_ray(
        "finetune",
        "--dataset",
        "hmdb51",
        "--pretrained",
        tiny_official_pth,
        "--arch",
        "tiny",
        env={"FAME_RAY_DATA": str(tmp_path)},
    )
    assert_one_line_error(result, f"hmdb51 not found at {tmp_path}/hmdb51", "serre-lab.clps.brown.edu", "README.md")
    result = fame_ray(
        "retrieve",
        "--dataset",
        "ucf101",
        "--pretrained",
        tiny_official_pth,
        "--arch",
        "tiny",
        env={"FAME_RAY_DATA": str(tmp_path)},
    )
    assert_one_line_error(result, "UCF101", "crcv.ucf.edu")


def test_missing_checkpoint(synth_root, tmp_path):
    result = fame_ray(
        "finetune",
        "--dataset",
        "ucf101",
        "--data-root",
        synth_root,
        "--pretrained",
        str(tmp_path / "nope.pth"),
        "--storage",
        str(tmp_path),
    )
    assert_one_line_error(result, "nope.pth does not exist")


def test_checkpoint_of_another_arch(synth_root, tmp_path, tiny_official_pth):
    result = fame_ray(
        "finetune",
        "--dataset",
        "ucf101",
        "--data-root",
        synth_root,
        "--pretrained",
        tiny_official_pth,
        "--arch",
        "r3d_18",
        "--storage",
        str(tmp_path),
    )
    assert_one_line_error(result, "r3d_18", "another architecture")


def test_class_count_not_matching_the_split_files(synth_root, tmp_path, tiny_official_pth):
    import shutil

    broken = tmp_path / "UCF101"
    shutil.copytree(synth_root, broken, ignore=shutil.ignore_patterns(".fame-ray"))
    class_index = broken / "ucfTrainTestlist" / "classInd.txt"
    lines = class_index.read_text().splitlines()
    class_index.write_text("\n".join(lines[:-1]) + "\n")  # classInd now lists one class fewer than the split files
    result = fame_ray(
        "finetune",
        "--dataset",
        "ucf101",
        "--data-root",
        str(broken),
        "--pretrained",
        tiny_official_pth,
        "--arch",
        "tiny",
        "--storage",
        str(tmp_path / "runs"),
    )
    assert_one_line_error(result, "not in classInd.txt")
    assert not (tmp_path / "runs").exists()  # nothing was launched


@pytest.mark.parametrize(
    "spec, needle",
    [
        ("lr=loguniform(0,1)", "loguniform bounds must be positive"),
        ("lr=gaussian(1,2)", "unknown distribution 'gaussian'"),
        ("learning_rate=0.1", "unknown hyperparameter 'learning_rate'"),
        ("dropout=[0.5, 2]", "out of range"),
    ],
)
def test_search_space_that_does_not_parse(synth_root, tmp_path, tiny_official_pth, spec, needle):
    result = fame_ray(
        "finetune",
        "--dataset",
        "ucf101",
        "--data-root",
        synth_root,
        "--pretrained",
        tiny_official_pth,
        "--search",
        spec,
    )
    assert_one_line_error(result, needle)


def test_search_file_that_does_not_parse(tmp_path, tiny_official_pth):
    space = tmp_path / "space.yaml"
    space.write_text("lr: [0.1, fast]\n")
    assert_one_line_error(
        fame_ray("finetune", "--pretrained", tiny_official_pth, "--search-file", str(space)), "'fast' is not a number"
    )


@pytest.mark.timeout(300)
def test_a_batch_that_cannot_fit_the_nodes_memory_is_refused_before_any_trial(synth_root, tmp_path, tiny_official_pth):
    """8192 clips of 16x112x112 on one CPU worker: past any node's memory (fame_ray.models.memory);
    refused once Ray is up and its nodes' memory known, before the sweep starts. The default
    micro batch (auto) would split the batch, but its inputs alone do not fit: the error says so
    and names the settings that would."""
    result = fame_ray(
        "finetune",
        "--dataset",
        "ucf101",
        "--data-root",
        synth_root,
        "--pretrained",
        tiny_official_pth,
        "--arch",
        "tiny",
        "--storage",
        str(tmp_path / "runs"),
        "--set",
        "train.global_batch=8192",
        env={"RAY_ADDRESS": ""},
    )
    assert_one_line_error(
        result,
        "finetune needs ~",
        "GB per worker (tiny, 16x112x112) even one clip at a time, but nodes have",
        "lower data.crop_size or data.frames_per_clip, spread the batch over more workers",
    )

    assert not (tmp_path / "runs" / "finetune-ucf101-split1-tiny").exists()  # no trial, no results


def test_report_of_a_missing_run(tmp_path):
    assert_one_line_error(fame_ray("report", str(tmp_path / "no-such-run")), "no results found")


def test_report_prints_runs_side_by_side(tmp_path):
    from fame_ray.eval import report as results
    from fame_ray.storage import Location

    setting = {"dataset": "ucf101", "split": 1, "backbone": "r2plus1d_18", "pretrained": "s3://b/pre"}
    recipe = {"dataset": "kinetics400", "epochs": 200, "schedule": "cosine", "mlp_head": True, "queue_size": 65536}
    results.write(
        results.new_record(
            "finetune", "ft", {**setting, "mode": "finetune"}, recipe, {"video_top1": 84.8, "clip_top1": 80.0}
        ),
        Location.parse(str(tmp_path / "ft")),
    )
    results.write(
        results.new_record("retrieval", "ret", {**setting, "mode": "retrieval"}, recipe, {"R@1": 64.6}),
        Location.parse(str(tmp_path / "ret")),
    )
    result = fame_ray("report", "ft", "ret", "--storage", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4 and "video top-1 (%)" in lines[0] and "R@1 (%)" in lines[0]
    assert "| ft | r2plus1d_18 | kinetics400 | 200 | cosine | yes | 65536 | ucf101 | 1 | finetune | 84.8 |" in lines[2]
