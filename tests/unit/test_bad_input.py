"""Every bad input through the real `fame-ray` console script: exit code 2, exactly one line on
stderr that starts with `error:`, no traceback, no secret echoed, and the command fails before
it starts Ray or writes anything (every file that was there is unchanged). Then the damaged
run files that must not break the output (`ROBUST`): exit 0, the good runs listed, the damaged
one named, text from the files escaped before it reaches the terminal.

The files the cases need (damaged checkpoints, a pickle that plants a folder, non-results JSON,
config files that are not mappings, damaged annotations, runs with odd files) are made once in
one temporary folder. About 2 s a case on 2 cores (most of it the interpreter and the imports).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

FAME_RAY = os.path.join(os.path.dirname(sys.executable), "fame-ray")
REPO = Path(__file__).resolve().parents[2]
SECRET = "secret-pw-in-a-url"
ESC = "\x1b"
DEEP = "[" * 5000  # nested far past Python's recursion limit


def _closed_port() -> int:
    """A loopback port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CLOSED_PORT = _closed_port()


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
    (root / "fame.png").write_bytes(b"a picture someone else made")
    (root / "run").mkdir()
    (root / "run" / "results.json").write_text(json.dumps({"kind": "finetune", "run": "r", "metrics": {}}))
    (root / "link-to-data").symlink_to(root / "data")
    (root / "search-int.yaml").write_text("1: [0.1]\n")
    _damaged_annotations(root)
    _odd_runs(root / "listing")
    return root


def _damaged_annotations(root: Path) -> None:
    """A Diving48 root whose train JSON breaks on line 3, one with a label that is no number, and
    a Kinetics root whose train.csv has a start time that is no number on line 3."""
    good = json.dumps([{"vid_name": "a", "label": 0}])
    (root / "diving-json").mkdir()
    (root / "diving-json" / "Diving48_V2_train.json").write_text('[\n {"vid_name": "a", "label": 0},\n {"vid_name": ]')
    (root / "diving-json" / "Diving48_V2_test.json").write_text(good)
    (root / "diving-label").mkdir()
    (root / "diving-label" / "Diving48_V2_train.json").write_text(json.dumps([{"vid_name": "a", "label": "abc"}]))
    (root / "diving-label" / "Diving48_V2_test.json").write_text(good)
    (root / "k400-time").mkdir()
    header = "label,youtube_id,time_start,time_end,split\n"
    (root / "k400-time" / "train.csv").write_text(header + "walking,aaa,0,10,train\nwalking,bbb,abc,10,train\n")
    (root / "k400-time" / "validate.csv").write_text(header + "walking,ccc,0,10,val\n")


def _odd_runs(root: Path) -> None:
    """Runs whose files are odd or damaged: a metrics file nested too deep, one that is a
    folder, escape sequences in a run name and its metrics, a git SHA that is not text and a
    step too large for a float."""
    for name in ("good", "deep", "broken", f"esc{ESC}[31mred", "odd"):
        (root / name).mkdir(parents=True)
    (root / "good" / "metrics.jsonl").write_text('{"step": 2, "loss": 1.5}\n')
    (root / "deep" / "metrics.jsonl").write_text(DEEP + "]" * 5000 + "\n" + '{"step": 1, "loss": 2.5}\n')
    (root / "broken" / "metrics.jsonl").mkdir()
    (root / f"esc{ESC}[31mred" / "metrics.jsonl").write_text(json.dumps({"step": 3, "loss": f"{ESC}[2J"}) + "\n")
    huge = json.dumps({"step": 10**4000, "data_wait": 10**4000, "decode_ms": 1e308}) + "\n"
    (root / "odd" / "metrics.jsonl").write_text(json.dumps({"step": 1, "data_wait": 0.5}) + "\n" + huge)
    checkpoint = root / "odd" / "checkpoint_00000001"
    checkpoint.mkdir()
    (checkpoint / "state.pt").write_bytes(b"x")
    (checkpoint / "meta.json").write_text(json.dumps({"step": 1, "git_sha": {"not": ["text", ESC]}}))


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
    # Issue 23: a credential never echoed, nothing overwritten, every location checked alike.
    ("report-s3-credentials", f"report s3://KEY:{SECRET}@bucket/run", "RUN argument: an s3:// location carries", {}),
    ("report-ftp", "report ftp://host/run", "RUN argument: 'ftp://' locations are not supported", {}),
    ("report-out-exists", "report {root}/results.json --out {root}/file.txt", "already exists (pass --force", {}),
    (
        "report-out-is-its-input",
        "report {root}/run --out {root}/run/results.json",
        "--out {root}/run/results.json already exists",
        {},
    ),
    (
        "report-out-is-its-input-forced",
        "report {root}/run --out {root}/run/results.json --force",
        "is one of the results files this report reads",
        {},
    ),
    ("preview-out-exists", "data preview --out {root}/fame.png", "already exists (pass --force", {}),
    ("preview-out-extension", "data preview --out {root}/fame.xyz", "Pillow writes no '.xyz' pictures", {}),
    ("bench-out-exists", "bench data --out {root}/file.txt", "already exists (pass --force", {}),
    ("bench-root-credentials", f"bench data --root s3://K:{SECRET}@b/x --out {{root}}/b.json", "carries", {}),
    ("synth-out-s3-credentials", f"synth --out s3://K:{SECRET}@b/x", "--out: an s3:// location carries", {}),
    (
        "transcode-out-file",
        "data transcode --dataset ucf101 --data-root {root}/data --out {root}/file.txt",
        "--out {root}/file.txt is a file, not a folder",
        {},
    ),
    (
        "transcode-out-through-a-link",
        "data transcode --dataset ucf101 --data-root {root}/data --out {root}/link-to-data/copy",
        "overlaps the data root {root}/data (resolved:",
        {},
    ),
    (
        "experiment-out-foreign",
        "experiment background-bias --out {root}/mine --quick",
        "holds files this experiment did not write (e.g. notes.txt)",
        {},
    ),
    ("experiment-out-file", "experiment background-bias --out {root}/file.txt", "is a file, not a folder", {}),
    ("guard-grace-nan", "node guard --grace nan", "--grace nan must be a number of seconds above 0", {}),
    ("guard-grace-inf", "node guard --grace inf", "--grace inf must be a number of seconds above 0", {}),
    ("guard-node-id", "node guard --node-id zz --address 127.0.0.1:{port}", "--node-id zz is not a Ray node id", {}),
    (
        "guard-no-ray",
        "node guard --address 127.0.0.1:{port}",
        "no Ray cluster answers at 127.0.0.1:{port} (ConnectionRefusedError)",
        {},
    ),
    ("runs-list-missing-root", "runs list --storage {root}/nowhere", "the storage root {root}/nowhere does not", {}),
    ("runs-show-missing-root", "runs show good --storage {root}/nowhere", "does not exist", {}),
    (
        "diving48-json",
        "data prepare --dataset diving48 --data-root {root}/diving-json",
        "diving-json/Diving48_V2_train.json, line 3: not valid JSON",
        {},
    ),
    (
        "diving48-label",
        "data prepare --dataset diving48 --data-root {root}/diving-label",
        "Diving48_V2_train.json, item 1: label 'abc' is not a whole number",
        {},
    ),
    (
        "kinetics-time",
        "data prepare --dataset kinetics400 --data-root {root}/k400-time",
        "k400-time/train.csv, line 3: time_start 'abc' is not a time in seconds",
        {},
    ),
    ("lr-inf", "pretrain --storage {root}/runs --set optim.lr=inf", "optim.lr must be a finite number, got inf", {}),
    ("lr-nan", "pretrain --storage {root}/runs --set optim.lr=.nan", "optim.lr must be a finite number, got nan", {}),
    (
        "decode-timeout-inf",
        "pretrain --storage {root}/runs --set data.decode_timeout_s=1e999",
        "data.decode_timeout_s must be a finite number",
        {},
    ),
    ("crop-scale-inf", "pretrain --storage {root}/runs --set 'data.crop_scale=[0.2, .inf]'", "finite number", {}),
    ("milestone-inf", "pretrain --storage {root}/runs --set 'optim.milestones=[.inf]'", "has a bad value", {}),
    ("set-yaml-date", "pretrain --storage {root}/runs --set train.epochs=2001-13-45", "not valid YAML (month", {}),
    ("set-yaml-tag", "pretrain --storage {root}/runs --set 'train.epochs=!!int abc'", "not valid YAML", {}),
    ("set-yaml-deep", f"pretrain --storage {{root}}/runs --set train.epochs={DEEP}", "not valid YAML", {}),
    (
        "set-yaml-inside-a-value",
        "pretrain --storage {root}/runs --set 'train.worker_resources=\"{{a: [1\"'",
        "config key 'train.worker_resources' has a bad value",
        {},
    ),
    (
        "set-unknown-key-long",
        "pretrain --storage {root}/runs --set train." + "x" * 20000 + "=1",
        "unknown config key 'train.xxxx",
        {},
    ),
    (
        "search-integer-key",
        "finetune --storage {root}/runs --search-file {root}/search-int.yaml",
        "search space: unknown hyperparameter '1'",
        {},
    ),
    ("debug-0-is-off", "report {root}/other.json", "is not a fame-ray results file", {"FAME_RAY_DEBUG": "0"}),
]


def fame_ray(place: Path, command: str, extra_env: dict) -> subprocess.CompletedProcess:
    """Run the console script on this checkout's code, in `place`, with a clean environment."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FAME_RAY_DEBUG", "RAY_ADDRESS", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")
    }
    env.update({"PYTHONPATH": str(REPO), "FAME_RAY_DATA": str(place / "data"), **extra_env})
    arguments = [part.format(root=place, port=CLOSED_PORT) for part in shlex.split(command)]
    return subprocess.run([FAME_RAY, *arguments], cwd=place, env=env, capture_output=True, text=True, timeout=90)


@pytest.mark.parametrize("command, expected, extra_env", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_one_line_and_exit_2(place, command, expected, extra_env):
    before = _contents(place.parent)
    done = fame_ray(place, command, extra_env)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-3000:]
    assert expected.format(root=place, port=CLOSED_PORT) in lines[0], lines[0]
    assert len(lines[0]) < 1000 and ESC not in lines[0], lines[0][:3000]  # a user's text is cut and escaped
    assert "Traceback" not in done.stdout + done.stderr and SECRET not in done.stdout + done.stderr
    # Refused before anything was written (next to the folder too: '../../X' must not appear), and
    # every file that was there holds what it held.
    assert _contents(place.parent) == before
    assert not (place / "planted").exists()


def _contents(folder: Path) -> dict[str, str]:
    """Every path below `folder` (links not followed) -> a hash of its bytes ('' for folders and links)."""
    found = {}
    for path in folder.rglob("*"):
        regular = path.is_file() and not path.is_symlink()
        found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest() if regular else ""
    return found


def test_runs_show_lists_a_checkpoint_with_a_damaged_meta_as_incomplete(place):
    done = fame_ray(place, "runs show damaged --storage {root}/runs", {})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "checkpoint_00000004" in done.stdout and "INCOMPLETE" in done.stdout
    assert "resume point: none" in done.stdout
    warnings = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(warnings) == 1 and "WARNING" in warnings[0] and "meta.json" in warnings[0], done.stderr


# (id, command line, exit code, text stdout must hold): damaged run files that must not break the
# output. Stdout never carries a raw escape character; stderr has no traceback.
ROBUST = [
    (
        "runs-list-skips-a-damaged-run",
        "runs list --storage {root}/listing",
        0,
        ["good ", "broken", "skipped: its files cannot be read (OSError", "deep "],
    ),
    ("runs-list-escapes-a-run-name", "runs list --storage {root}/listing", 0, ["esc\\x1b[31mred", "loss=\\x1b[2J"]),
    ("runs-show-odd-meta", "runs show odd --storage {root}/listing", 0, ["git {'not': ['text', '\\x1b']}", "1000000"]),
    ("runs-show-deep-metrics", "runs show deep --storage {root}/listing", 0, ["last step 1; latest metrics: loss=2.5"]),
]


@pytest.mark.parametrize("command, code, shown", [case[1:] for case in ROBUST], ids=[case[0] for case in ROBUST])
def test_damaged_run_files_do_not_break_the_output(place, command, code, shown):
    before = _contents(place.parent)
    done = fame_ray(place, command, {})
    assert done.returncode == code, done.stderr[-3000:]
    for text in shown:
        assert text in done.stdout, done.stdout[-3000:]
    assert ESC not in done.stdout and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert _contents(place.parent) == before
