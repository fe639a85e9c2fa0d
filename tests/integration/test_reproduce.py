"""`fame-ray reproduce --quick` through the CLI, its driver killed mid-stage and the command rerun.

The quick study (synthetic UCF101-layout data, the tiny backbone, a few steps, one split) is cut
down to the stages that carry its structure: the shared manifests, one pretraining, a finetune, a
retrieval and an optional Diving48 finetune without data (skipped); the linear probe (the same
code path as the finetune, `run_finetune --mode linear`) is left out to keep the test short. With
half a CPU per worker and for Ray Data, the finetune and the retrieval fit the 2 CPUs side by side.
The driver (`fame-ray reproduce`) is killed with SIGKILL, by its pid, once the pretraining is done
and the finetune stage has started beside the retrieval; the same command again must skip the
finished stages (their record untouched, the pretraining's checkpoint not rewritten), resume the
finetune and complete the table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from process_support import cli_env, kill_and_reap

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]
STAGE = "finetune-ucf101-split1-fame"


def command(out) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fame_ray.cli",
        "reproduce",
        "--quick",
        "--out",
        str(out),
        "--set",
        "finetune_on=[ucf101, diving48]",
        "--set",
        "linear_on=[]",
        # Half a CPU per worker and for Ray Data: the finetune and the retrieval fit the 2 CPUs side by
        # side, so the kill lands while two stages run at once, each in a thread of the driver.
        "--set",
        "downstream.train.cpus_per_worker=0.5",
        "--set",
        "downstream.data.data_cpus=0.5",
    ]


def stages_of(out) -> dict:
    """The stages of the study's record so far ({} before it is written)."""
    try:
        with open(out / "runs" / "study-quick" / "study-record.json") as handle:
            return json.load(handle)["stages"]
    except (OSError, ValueError, KeyError):
        return {}


def test_a_study_whose_driver_died_mid_stage_resumes_without_rerunning_finished_stages(tmp_path):
    out = tmp_path / "study"
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(command(out), stdout=log, stderr=subprocess.STDOUT, env=cli_env())
    try:
        deadline = time.time() + 240
        while time.time() < deadline and first.poll() is None:
            if stages_of(out).get(STAGE, {}).get("status") == "running":
                break
            time.sleep(0.2)
        time.sleep(3)  # into the stage: its sweep has started
        assert first.poll() is None, f"the study ended before it was killed:\n{(tmp_path / 'first.log').read_text()}"
    finally:
        kill_and_reap(first)
    before = stages_of(out)
    assert before[STAGE]["status"] == "running", before
    side_by_side = [
        line for line in (tmp_path / "first.log").read_text().splitlines() if "CPUs of the cluster)" in line
    ]
    assert any(STAGE in line for line in side_by_side) and any("retrieval-" in line for line in side_by_side), (
        side_by_side
    )
    finished = {key: entry for key, entry in before.items() if entry["status"] == "done"}
    assert {"manifests-ucf101-split1", "pretrain-fame"} <= set(finished), before
    checkpoints = out / "runs" / "study-quick" / "pretrain-fame"
    kept = {path: os.stat(checkpoints / path).st_mtime_ns for path in os.listdir(checkpoints)}

    second = subprocess.run(command(out), capture_output=True, text=True, timeout=400, env=cli_env())
    assert second.returncode == 0, second.stderr[-3000:]
    after = stages_of(out)
    for key, entry in finished.items():
        assert after[key] == entry, f"{key} ran again"
        assert f"stage {key}:" not in second.stdout
    assert f"stage {STAGE}: resuming" in second.stdout
    assert after[STAGE]["status"] == "done" and after[STAGE]["attempts"] == 2
    assert {path: os.stat(checkpoints / path).st_mtime_ns for path in os.listdir(checkpoints)} == kept
    assert after["finetune-diving48-split1-fame"]["status"] == "skipped"
    assert all(entry["status"] in ("done", "skipped") for entry in after.values()), after
    summary = json.loads((out / "study.json").read_text())
    rows = {(row["evaluation"], row["dataset"], row["metric"]): row for row in summary["rows"]}
    for key in (("finetune", "ucf101", "video_top1"), ("retrieval", "ucf101", "R@1")):
        assert rows[key]["official"] is not None and rows[key]["splits"] == [1], rows[key]
    assert rows[("finetune", "ucf101", "video_top1")]["paper"][0]["value"] == 88.6
    assert rows[("finetune", "diving48", "video_top1")]["official"] is None
    assert summary["sessions"] == 2
    assert (out / "study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| UCF101 finetune | video top-1 | fame |" in (out / "study.md").read_text()
