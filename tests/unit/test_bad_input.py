"""Every bad input through the real `fame-ray` console script: exit code 2, exactly one line on
stderr that starts with `error:`, no traceback, no secret echoed, and the command fails before
it starts Ray or writes anything.

The files the cases need (damaged checkpoints, a pickle that plants a folder, non-results JSON,
config files that are not mappings) are made once in one temporary folder.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

FAME_RAY = os.path.join(os.path.dirname(sys.executable), "fame-ray")
REPO = Path(__file__).resolve().parents[2]
SECRET = "secret-pw-in-a-url"


class _Planted:
    """Unpickling this would create a folder; the safe loader must refuse it."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.mkdir, (self.target,)


def _checkpoint(folder: Path, state, config: str | None = "model: {arch: tiny}\n", meta: str | None = '{"step": 3}'):
    import torch

    folder.mkdir(parents=True)
    if isinstance(state, bytes):
        (folder / "state.pt").write_bytes(state)
    else:
        torch.save(state, folder / "state.pt")
    if config is not None:
        (folder / "config.yaml").write_text(config)
    if meta is not None:
        (folder / "meta.json").write_text(meta)


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> Path:
    """One folder with every file the cases point at."""
    import torch

    root = tmp_path_factory.mktemp("bad-input")
    (root / "runs" / "damaged" / "checkpoint_00000004").mkdir(parents=True)
    (root / "runs" / "damaged" / "checkpoint_00000004" / "state.pt").write_bytes(b"x")
    (root / "runs" / "damaged" / "checkpoint_00000004" / "meta.json").write_text('{"step": "four"}')
    (root / "data").mkdir()
    _checkpoint(root / "no-meta", b"not read: refused before loading", config=None, meta=None)
    _checkpoint(root / "config-list", {"model": {}, "step": 3}, config="- tiny\n- r3d_18\n")
    _checkpoint(root / "state-list", [1, 2])
    torch.save({"state_dict": {"w": torch.zeros(1)}, "extra": _Planted(str(root / "planted"))}, root / "planted.pth")
    (root / "other.json").write_text(json.dumps({"a": 1}))
    (root / "results.json").write_text(json.dumps({"kind": "finetune", "run": "r", "metrics": {}}))
    (root / "empty.yaml").write_text("")
    (root / "list.yaml").write_text("- train\n- data\n")
    (root / "mine").mkdir()
    (root / "mine" / "notes.txt").write_text("keep me")
    (root / "file.txt").write_text("x")
    return root


# (id, command line as a shell would split it, {root} for the folder; text the error line holds; extra environment)
CASES = [
    ("storage-ftp", "pretrain --storage ftp://host/runs", "--storage: 'ftp://' locations are not supported", {}),
    ("storage-gs", "pretrain --storage gs://bucket/runs", "--storage: 'gs://'", {}),
    ("storage-upper-S3", "pretrain --storage S3://bucket/runs", "--storage: 'S3://'", {}),
    ("storage-file", "pretrain --storage file:///tmp/runs", "--storage: 'file://'", {}),
    (
        "data-root-ftp",
        "pretrain --storage {root}/runs --dataset ucf101 --data-root ftp://host/ucf",
        "--data-root: 'ftp://'",
        {},
    ),
    ("csv-ftp", "data prepare --dataset csv --csv ftp://host/list.csv", "--csv: 'ftp://'", {}),
    (
        "prepare-out-ftp",
        "data prepare --dataset ucf101 --data-root {root}/data --out ftp://host/manifests",
        "--out of data prepare): 'ftp://'",
        {},
    ),
    ("pretrained-ftp", "finetune --storage {root}/runs --pretrained ftp://host/w.pth", "--pretrained: 'ftp://'", {}),
    ("endpoint-not-a-url", "pretrain --storage {root}/runs --s3-endpoint not-a-url", "is not an http(s) URL", {}),
    (
        "endpoint-unclosed-bracket",
        "pretrain --storage {root}/runs --s3-endpoint http://[::1",
        "is not an http(s) URL",
        {},
    ),
    (
        "endpoint-credentials",
        f"pretrain --storage {{root}}/runs --s3-endpoint http://user:{SECRET}@127.0.0.1:9000",
        "carries credentials",
        {},
    ),
    (
        "endpoint-env-credentials",
        "runs list --storage {root}/runs",
        "carries credentials",
        {"AWS_ENDPOINT_URL": f"http://user:{SECRET}@127.0.0.1:9000"},
    ),
    (
        "run-name-parent",
        "pretrain --storage {root}/runs --run-name ../../X",
        "--run-name '../../X' is not a plain run name",
        {},
    ),
    ("run-name-absolute", "pretrain --storage {root}/runs --run-name /tmp/elsewhere", "is not a plain run name", {}),
    ("resume-parent", "pretrain --storage {root}/runs --resume ../X", "--resume '../X' is not a plain run name", {}),
    (
        "finetune-run-name",
        "finetune --storage {root}/runs --run-name ..",
        "--run-name '..' is not a plain run name",
        {},
    ),
    (
        "crop-scale-one-value",
        "pretrain --storage {root}/runs --set data.crop_scale=[0.5]",
        "data.crop_scale must be two numbers",
        {},
    ),
    (
        "worker-resources-text",
        "pretrain --storage {root}/runs --set 'train.worker_resources={{CPU: abc}}'",
        "train.worker_resources['CPU'] must be a number",
        {},
    ),
    ("set-not-yaml", "pretrain --storage {root}/runs --set train.epochs=[1", "not valid YAML", {}),
    ("config-dev-null", "pretrain --storage {root}/runs --config /dev/null", "is not a regular file", {}),
    ("config-empty", "pretrain --storage {root}/runs --config {root}/empty.yaml", "is empty", {}),
    ("config-list", "pretrain --storage {root}/runs --config {root}/list.yaml", "must hold a mapping", {}),
    ("config-missing", "pretrain --storage {root}/runs --config {root}/missing.yaml", "does not exist", {}),
    ("report-not-results", "report {root}/other.json", "is not a fame-ray results file", {}),
    ("report-out-missing-folder", "report {root}/results.json --out {root}/missing/table.md", "does not exist", {}),
    (
        "pretrained-no-meta",
        "finetune --storage {root}/runs --pretrained {root}/no-meta",
        "is an incomplete checkpoint",
        {},
    ),
    (
        "pretrained-config-list",
        "finetune --storage {root}/runs --pretrained {root}/config-list",
        "config.yaml is not a fame-ray config",
        {},
    ),
    (
        "pretrained-state-list",
        "finetune --storage {root}/runs --pretrained {root}/state-list",
        "holds no fame-ray model state",
        {},
    ),
    (
        "pretrained-python-objects",
        "finetune --storage {root}/runs --pretrained {root}/planted.pth --arch tiny",
        "saved with tensors only",
        {},
    ),
    ("synth-foreign-folder", "synth --out {root}/mine", "pass --force", {}),
    ("synth-out-file", "synth --out {root}/file.txt", "is not a folder", {}),
    ("synth-size", "synth --out {root}/big --size 100000x100000", "--size 100000x100000 is larger than", {}),
    ("synth-frames", "synth --out {root}/big --frames 1000000", "--frames 1000000 is more than", {}),
    ("synth-classes", "synth --out {root}/big --classes 100000", "--classes 100000 is more than", {}),
    (
        "synth-videos",
        "synth --out {root}/big --videos-per-class 1000000",
        "--videos-per-class 1000000 is more than",
        {},
    ),
    ("preview-out-missing-folder", "data preview --out {root}/missing/fame.png", "does not exist", {}),
    ("bench-out-missing-folder", "bench data --out {root}/missing/bench.json", "does not exist", {}),
]


def fame_ray(place: Path, command: str, extra_env: dict) -> subprocess.CompletedProcess:
    """Run the console script on this checkout's code, in `place`, with a clean environment."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FAME_RAY_DEBUG", "RAY_ADDRESS", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")
    }
    env.update({"PYTHONPATH": str(REPO), "FAME_RAY_DATA": str(place / "data"), **extra_env})
    arguments = [part.format(root=place) for part in shlex.split(command)]
    return subprocess.run([FAME_RAY, *arguments], cwd=place, env=env, capture_output=True, text=True, timeout=90)


@pytest.mark.parametrize("command, expected, extra_env", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_one_line_and_exit_2(place, command, expected, extra_env):
    before = sorted(str(p) for p in place.parent.rglob("*"))
    done = fame_ray(place, command, extra_env)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-3000:]
    assert expected in lines[0], lines[0]
    assert "Traceback" not in done.stdout + done.stderr and SECRET not in done.stdout + done.stderr
    # Refused before anything was written (next to the folder too: '../../X' must not appear).
    assert sorted(str(p) for p in place.parent.rglob("*")) == before
    assert not (place / "planted").exists()


def test_runs_show_lists_a_checkpoint_with_a_damaged_meta_as_incomplete(place):
    done = fame_ray(place, "runs show damaged --storage {root}/runs", {})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "checkpoint_00000004" in done.stdout and "INCOMPLETE" in done.stdout
    assert "resume point: none" in done.stdout
    warnings = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and "WARNING" in warnings[0] and "meta.json" in warnings[0], done.stderr
