"""`fame-ray synth` and `fame-ray data prepare`: help with examples, one-line errors with exit code 2."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from fame_ray.commands import data_prepare, synth
from fame_ray.errors import UserError


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("synth")(synth.synth)
    app.command("prepare")(data_prepare.prepare)
    return app


def test_help_shows_examples():
    runner = CliRunner()
    assert "fame-ray synth --layout kinetics400" in runner.invoke(_app(), ["synth", "--help"]).output
    assert "fame-ray data prepare --dataset csv" in runner.invoke(_app(), ["prepare", "--help"]).output


def test_synth_writes_a_dataset(tmp_path):
    result = CliRunner().invoke(_app(), ["synth", "--layout", "folder", "--out", str(tmp_path / "f"), "--classes", "2",
                                         "--videos-per-class", "2", "--frames", "4", "--size", "32x32"])
    assert result.exit_code == 0, result.output
    assert "wrote 4 videos" in result.output and len(list((tmp_path / "f").glob("*/*.mp4"))) == 4


@pytest.mark.parametrize("args, expected", [
    (["prepare", "--dataset", "ucf101", "--data-root", "/nonexistent/UCF101"], "data root /nonexistent/UCF101 does not exist"),
    (["prepare", "--dataset", "ucf-101", "--data-root", "/tmp"], "unknown dataset 'ucf-101'"),
    (["synth", "--out", "/tmp/x", "--size", "big"], "--size must be WIDTHxHEIGHT"),
])
def test_mistakes_raise_one_line_user_errors(args, expected):
    result = CliRunner().invoke(_app(), args)
    assert isinstance(result.exception, UserError)
    assert expected in result.exception.one_line() and "\n" not in result.exception.one_line()


def test_missing_split_file_names_it(tmp_path):
    (tmp_path / "ucfTrainTestlist").mkdir()
    (tmp_path / "ucfTrainTestlist" / "classInd.txt").write_text("1 Walk\r\n")
    (tmp_path / "UCF-101" / "Walk").mkdir(parents=True)
    result = CliRunner().invoke(_app(), ["prepare", "--dataset", "ucf101", "--data-root", str(tmp_path)])
    assert "trainlist01.txt" in result.exception.one_line()


def test_the_real_cli_exits_2_with_one_line_for_a_missing_root():
    try:
        importlib.import_module("fame_ray.cli")
    except ImportError as error:  # other commands not merged yet
        pytest.skip(f"fame_ray.cli does not import yet: {error}")
    env = dict(os.environ, FAME_RAY_DEBUG="")
    done = subprocess.run([sys.executable, "-m", "fame_ray.cli", "data", "prepare", "--dataset", "hmdb51", "--data-root", "/nonexistent/hmdb51"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: data root /nonexistent/hmdb51 does not exist") and "Traceback" not in done.stderr
