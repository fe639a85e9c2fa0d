"""Finetune sweeps when things go wrong, on a real local Ray; faults are real process deaths.

A trial dies: the process of a Ray Tune trial (the actor that drives the trial's Ray Train run)
is killed with SIGKILL, by its pid, as a crash or an OOM kill would end it. The test finds the
process among its own descendants by the working directory Ray Tune gives every trial's
actor (`.../<run>/working_dirs/trial_<id>`), so it knows which trial it kills, and kills it as
soon as it appears: before its first report, so the outcome does not depend on timing and ASHA
never sees the dying trial. One trial dies once and must be retried and finish (with 2 DDP
workers); the other dies on both attempts and must be listed as failed, with its error.

The driver dies: `fame-ray finetune` is killed (SIGKILL, by its pid) once a trial has reported
an epoch; the same command again resumes the Tune experiment (Tuner.restore) and finishes
every trial of the first run (the same run name with other settings is refused: tests/unit/
test_sweep_resume.py).

Data: a tiny HMDB51-layout set (3 classes x 4 videos) and an official-layout FAME .pth of the
tiny MoCo model (query and key encoders, head, queue), so no pretraining is needed; the resumed
sweep also checks that `fame-ray finetune --pretrained official.pth` loads it as the official format.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from process_support import alive, cli_env, descendants, kill_and_reap
from weights_support import write_tiny_official_pth

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(420)]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """(data root, official .pth): 9 train / 3 test videos, weights of the tiny backbone."""
    from fame_ray.data.synthetic import write_dataset

    base = tmp_path_factory.mktemp("sweep-faults")
    root = write_dataset(str(base / "hmdb51"), layout="hmdb51", num_classes=3, videos_per_class=4, frames=32, seed=1)
    return root, write_tiny_official_pth(base / "fame_tiny.pth")


def finetune_args(inputs, storage, run_name: str) -> list[str]:
    """One trial of 3 epochs, 1 worker, on the demo preset."""
    root, weights = inputs
    return [
        "finetune",
        "--dataset",
        "hmdb51",
        "--data-root",
        root,
        "--pretrained",
        weights,
        "--arch",
        "tiny",
        "--preset",
        "demo",
        "--storage",
        str(storage),
        "--run-name",
        run_name,
        "--epochs",
        "3",
        "--set",
        "data.eval_clips=1",
        "--set",
        "train.global_batch=4",
    ]


def trial_processes(run_name: str) -> dict[int, str]:
    """pid -> trial id of every live Tune trial actor of sweep `run_name` below this process."""
    found = {}
    for pid in descendants(os.getpid()):
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        parent, name = os.path.split(cwd)
        if name.startswith("trial_") and parent.endswith(f"/{run_name}/working_dirs") and alive(pid):
            found[pid] = name.removeprefix("trial_")
    return found


def kill_trials(thread, run_name: str, deaths: dict[str, int]) -> dict[str, int]:
    """While the sweep runs in `thread`, kill the actor of every trial whose id ends in a key of
    `deaths` as soon as it appears, until it has died that many times; returns the kills."""
    killed, done = {}, set()
    while thread.is_alive():
        for pid, trial in trial_processes(run_name).items():
            wanted = next((count for suffix, count in deaths.items() if trial.endswith(suffix)), 0)
            if pid not in done and killed.get(trial, 0) < wanted:
                os.kill(pid, signal.SIGKILL)
                done.add(pid)
                killed[trial] = killed.get(trial, 0) + 1
        time.sleep(0.1)
    return killed


def test_a_trial_that_dies_once_is_retried_and_one_that_dies_twice_is_listed_as_failed(inputs, tmp_path, ray_fresh):
    import threading

    from fame_ray import config as C
    from fame_ray.config import presets
    from fame_ray.downstream.finetune import run_finetune

    root, weights = inputs
    # Two trials (an lr grid), each 2 DDP workers x 0.25 CPU + 0.5 CPU for Ray Data: both at once on 2 CPUs.
    cfg = C.build(
        C.FinetuneConfig,
        presets.demo_finetune(),
        None,
        {
            "data": {"dataset": "hmdb51", "data_root": root, "data_cpus": 0.5, "eval_clips": 1},
            "train": {"epochs": 2, "global_batch": 4, "num_workers": 2, "cpus_per_worker": 0.25},
            "model": {"arch": "tiny"},
            "pretrained": weights,
            "search_space": {"lr": [0.01, 0.02]},
            "storage": {"path": str(tmp_path / "runs"), "run_name": "faults"},
        },
    )
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(record=run_finetune(cfg)), daemon=True)
    thread.start()
    killed = kill_trials(thread, "faults", {"_00000": 1, "_00001": 2})
    thread.join()
    record = outcome["record"]
    trials = {t["trial"]: t for t in record["trials"]}
    assert killed, (
        "no trial actor was found by its working directory (<run>/working_dirs/trial_<id>): has Ray Tune moved it?"
    )
    assert sorted(killed.values()) == [1, 2] and set(killed) == set(trials), (killed, record["trials"])
    once, twice = (next(t for t in record["trials"] if t["trial"].endswith(suffix)) for suffix in ("_00000", "_00001"))
    assert once["status"] == "completed" and once["epochs_run"] == 2 and once["error"] is None, once
    assert once["workers"] == 2 and record["protocol"]["workers_per_trial"] == 2
    assert record["metrics"]["videos"] == 3, "validation over 2 workers lost test videos"
    # Killed while running, or (on a fast retry) before its actor got to start: either way the error says so.
    assert (
        twice["status"] == "failed"
        and twice["epochs_run"] == 0
        and any(word in twice["error"] for word in ("died", "never ran"))
    ), twice
    table = (tmp_path / "runs" / "faults" / "results.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith(f"| {twice['trial']} |"))
    assert "| failed |" in row and twice["error"][:40] in row, row


def results_of(run_dir) -> dict[str, list[dict]]:
    """Trial id -> the results Tune has stored for it so far (its result.json)."""
    found = {}
    for path in glob.glob(os.path.join(run_dir, "trial_*", "result.json")):
        with open(path) as handle:
            found[os.path.basename(os.path.dirname(path)).removeprefix("trial_")] = [
                json.loads(line) for line in handle if line.strip()
            ]
    return found


def test_a_sweep_whose_driver_died_is_resumed_by_the_same_command(inputs, tmp_path):
    storage, run_dir = tmp_path / "runs", tmp_path / "runs" / "resumed"
    command = [sys.executable, "-m", "fame_ray.cli", *finetune_args(inputs, storage, "resumed")]
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=cli_env())
    try:
        deadline = time.time() + 240
        while time.time() < deadline and first.poll() is None and not any(results_of(run_dir).values()):
            time.sleep(0.2)
        assert first.poll() is None, (
            f"the first run ended before it could be killed:\n{(tmp_path / 'first.log').read_text()[-3000:]}"
        )
    finally:
        kill_and_reap(first)
    before = results_of(run_dir)
    assert len(before) == 1 and 1 <= len(next(iter(before.values()))) < 3, (
        f"no trial was mid-run when the driver died: {before}"
    )
    assert not (run_dir / "results.json").exists()

    second = subprocess.run(command, capture_output=True, text=True, timeout=300, env=cli_env())
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming the sweep" in second.stderr
    record = json.loads((run_dir / "results.json").read_text())
    assert [t["trial"] for t in record["trials"]] == list(before), (
        "the second run started new trials instead of resuming"
    )
    assert record["trials"][0]["status"] == "completed" and record["trials"][0]["epochs_run"] == 3, record["trials"]
    # `--pretrained official.pth` through the CLI: the official layout recognised, the rest dropped.
    assert record["dataset"] == "hmdb51" and record["backbone"] == "tiny" and record["pretrain_recipe"] == {}
    assert record["load_report"]["format"] == "official" and record["load_report"]["dropped"] > 0
    assert "| hmdb51 | 1 | finetune | tiny |" in second.stdout
    # The resumed trial's Train run went on from its last epoch checkpoint, not from epoch 0.
    first_session = next(iter(before.values()))
    resumed = [
        r["epoch"]
        for r in results_of(run_dir)[record["trials"][0]["trial"]]
        if r["pid"] not in {f["pid"] for f in first_session}
    ]
    assert resumed and resumed[0] > max(r["epoch"] for r in first_session) and resumed[-1] == 2, (
        first_session,
        resumed,
    )
