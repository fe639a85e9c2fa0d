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
    result = CliRunner().invoke(
        _app(),
        [
            "synth",
            "--layout",
            "folder",
            "--out",
            str(tmp_path / "f"),
            "--classes",
            "2",
            "--videos-per-class",
            "2",
            "--frames",
            "4",
            "--size",
            "32x32",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "wrote 4 videos" in result.output and len(list((tmp_path / "f").glob("*/*.mp4"))) == 4


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["prepare", "--dataset", "ucf101", "--data-root", "/nonexistent/UCF101"],
            "data root /nonexistent/UCF101 does not exist",
        ),
        (["prepare", "--dataset", "ucf-101", "--data-root", "/tmp"], "unknown dataset 'ucf-101'"),
        (["synth", "--out", "/tmp/x", "--size", "big"], "--size must be WIDTHxHEIGHT"),
    ],
)
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
    importlib.import_module("fame_ray.cli")  # a CLI that does not import fails here, never skips
    env = dict(os.environ, FAME_RAY_DEBUG="")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fame_ray.cli",
            "data",
            "prepare",
            "--dataset",
            "hmdb51",
            "--data-root",
            "/nonexistent/hmdb51",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert (
        lines[-1].startswith("error: data root /nonexistent/hmdb51 does not exist") and "Traceback" not in done.stderr
    )


def _synth(out, *extra):
    return CliRunner().invoke(
        _app(),
        [
            "synth",
            "--layout",
            "folder",
            "--out",
            str(out),
            "--classes",
            "2",
            "--videos-per-class",
            "2",
            "--frames",
            "4",
            "--size",
            "32x32",
            *extra,
        ],
    )


def test_synth_refuses_a_folder_that_holds_other_files_unless_forced(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = _synth(out)
    assert isinstance(result.exception, UserError) and "--force" in result.exception.one_line()
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert _synth(out, "--force").exit_code == 0
    assert (out / "notes.txt").read_text() == "keep me"


def test_synth_writes_again_over_its_own_dataset(tmp_path):
    assert _synth(tmp_path / "again").exit_code == 0
    result = _synth(tmp_path / "again")
    assert result.exit_code == 0, result.output


def test_synth_refuses_a_file_and_a_remote_location(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    result = _synth(tmp_path / "file.txt")
    assert isinstance(result.exception, UserError) and "not a folder" in result.exception.one_line()
    result = _synth("s3://bucket/synth")
    assert isinstance(result.exception, UserError) and "local folder" in result.exception.one_line()


@pytest.mark.parametrize(
    "flag, value, named",
    [
        ("--size", "100000x100000", "--size"),
        ("--size", "4098x64", "--size"),
        ("--frames", "1000000", "--frames"),
        ("--classes", "100000", "--classes"),
        ("--videos-per-class", "1000000", "--videos-per-class"),
        ("--fps", "100000", "--fps"),
    ],
)
def test_synth_caps_sizes_before_writing_anything(tmp_path, flag, value, named):
    args = {"--size": "32x32", "--frames": "4", "--classes": "2", "--videos-per-class": "2", "--fps": "25", flag: value}
    flat = [item for pair in args.items() for item in pair]
    result = CliRunner().invoke(_app(), ["synth", "--layout", "folder", "--out", str(tmp_path / "big"), *flat])
    assert isinstance(result.exception, UserError) and named in result.exception.one_line()
    assert not (tmp_path / "big").exists()


def test_synth_caps_the_memory_one_video_needs(tmp_path):
    result = CliRunner().invoke(
        _app(), ["synth", "--out", str(tmp_path / "big"), "--size", "4096x4096", "--frames", "3000"]
    )
    assert isinstance(result.exception, UserError) and "GiB" in result.exception.one_line()
