"""`data transcode` on a local Ray instance: the copy keeps the layout and `data prepare` reads
it, the short side and keyframe interval are what was asked (read back with PyAV), a corrupt
video is listed and the others go on, an interrupted copy resumes, s3:// on moto's server, and
bad flags fail in one line. What the copy may read and write: links out of the root refused and
listed, permissions never wider than the source's, no resume from another source."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import av
import pytest
from typer.testing import CliRunner

from fame_ray import storage
from fame_ray.cli import app
from fame_ray.config import DataConfig
from fame_ray.data import catalog, synthetic, transcode
from fame_ray.data.transcode import EncodeSettings, bounds
from fame_ray.errors import UserError
from fame_ray.storage import Location

pytestmark = [pytest.mark.ray, pytest.mark.timeout(300), pytest.mark.usefixtures("s3_credentials")]

REPO = Path(__file__).resolve().parents[2]
FRAMES = 40
SPLIT_FILES = ["classInd.txt"] + [f"{kind}list0{n}.txt" for kind in ("train", "test") for n in (1, 2, 3)]


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> str:
    """Six 320x240 videos of 40 frames in the UCF101 layout (x264's default: one keyframe)."""
    root = tmp_path_factory.mktemp("original") / "UCF101"
    synthetic.write_dataset(
        str(root), layout="ucf101", num_classes=2, videos_per_class=3, frames=FRAMES, width=320, height=240, seed=0
    )
    return str(root)


def _copy(original: str, tmp_path: Path) -> str:
    return shutil.copytree(original, str(tmp_path / "UCF101"))


def _videos(root: str) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in Path(root, "UCF-101").rglob("*.avi"))


def _stream_facts(source) -> tuple[tuple[int, int], list[int], int, float]:
    """((width, height), indices of the keyframes, frames, frame rate) as PyAV reads the file."""
    with av.open(source) as container:
        stream = container.streams.video[0]
        packets = [p for p in container.demux(stream) if p.size]
        return (
            (stream.width, stream.height),
            [i for i, p in enumerate(packets) if p.is_keyframe],
            len(packets),
            float(stream.average_rate),
        )


def test_copy_applies_size_and_gop_skips_a_corrupt_video_and_prepare_reads_it(ray_local, original, tmp_path):
    root = _copy(original, tmp_path)
    corrupt = _videos(root)[1]
    Path(root, corrupt).write_bytes(os.urandom(4000))
    out = str(tmp_path / "UCF101-128")
    data = DataConfig(dataset="ucf101", data_root=root)
    result = transcode.run(data, data.location(), Location.parse(out), EncodeSettings(short_side=128, gop=8))

    assert result.transcoded == 5 and result.already_done == 0 and result.videos == 6
    assert [path for path, _ in result.skipped] == [corrupt] and result.skipped[0][1].startswith("unreadable")
    assert list(csv.DictReader(Path(result.skipped_file.uri).read_text().splitlines()))[0]["path"] == corrupt
    summary = json.loads(Path(out, ".fame-ray", "transcode.json").read_text())
    assert summary["settings"]["gop"] == 8 and summary["summary"]["skipped"][0]["path"] == corrupt
    assert 0 < result.bytes_after < result.bytes_before and 0 < result.ratio < 1
    for name in SPLIT_FILES:
        assert Path(out, "ucfTrainTestlist", name).read_bytes() == Path(root, "ucfTrainTestlist", name).read_bytes()
    assert not Path(out, corrupt).exists()
    for video in set(_videos(root)) - {corrupt}:
        size, keyframes, frames, rate = _stream_facts(os.path.join(out, video))
        # 320x240 -> short side 128, the aspect kept and both sides even: 170x128.
        assert size == (170, 128) and frames == FRAMES and rate == 25.0
        assert keyframes == list(range(0, FRAMES, 8)), keyframes
        assert _stream_facts(os.path.join(root, video))[1] == [0]

    prepared = catalog.prepare(DataConfig(dataset="ucf101", data_root=out), Location.parse(out))
    assert prepared.counts["train"] + prepared.counts["test"] == 5 and prepared.num_classes == 2
    assert [path for path, _ in prepared.skipped] == [os.path.join(out, corrupt)]


def test_the_default_copy_keeps_the_frame_size_and_moves_only_the_keyframes(ray_local, original, tmp_path):
    """The official geometry: 320x240 frames stay 320x240; a keyframe every gop frames."""
    root = _copy(original, tmp_path)
    out = str(tmp_path / "UCF101-gop8")
    data = DataConfig(dataset="ucf101", data_root=root, split=1)
    result = transcode.run(data, data.location(), Location.parse(out), EncodeSettings(gop=8), split=1)
    assert result.transcoded > 0 and not result.skipped
    for video in [v for v in _videos(root) if Path(out, v).exists()]:
        size, keyframes, frames, _ = _stream_facts(os.path.join(out, video))
        assert size == (320, 240) and frames == FRAMES and keyframes == list(range(0, FRAMES, 8))


def test_an_interrupted_copy_resumes_and_a_split_limits_the_videos(ray_local, original, tmp_path):
    root = _copy(original, tmp_path)
    videos = _videos(root)
    out = tmp_path / "UCF101-128"
    # Split 1 leaves one training video out, and one of its test videos is missing from the root:
    # four are transcoded, the missing one is listed.
    trainlist = Path(root, "ucfTrainTestlist", "trainlist01.txt")
    left_out = trainlist.read_text().splitlines()[0].split()[0]
    trainlist.write_text("".join(line + "\r\n" for line in trainlist.read_text().splitlines()[1:]))
    gone = "UCF-101/" + Path(root, "ucfTrainTestlist", "testlist01.txt").read_text().split()[0]
    Path(root, gone).unlink()
    data = DataConfig(dataset="ucf101", data_root=root, split=1)
    lines = []
    first = transcode.run(
        data,
        data.location(),
        Location.parse(str(out)),
        EncodeSettings(),
        split=1,
        on_progress=lambda p: lines.append(p.line()),
    )
    assert first.transcoded == 4 and not (out / "UCF-101" / left_out).exists()
    assert [path for path, _ in first.skipped] == [gone] and first.skipped[0][1].startswith("missing file")
    assert lines[0].startswith("1/5 videos (1 skipped), 0.00 videos/s") and lines[-1].startswith(
        "5/5 videos (1 skipped)"
    )

    # An interruption: one video never finished (only its temporary file, half written, is there).
    lost = next(v for v in videos if (out / v).exists())
    (out / lost).unlink()
    partial = out / os.path.dirname(lost) / f".{os.path.basename(lost)}.k3x9q2ab"
    partial.write_bytes((Path(root) / lost).read_bytes()[:3000])
    before = {v: (out / v).stat().st_mtime_ns for v in videos if (out / v).exists()}

    second = transcode.run(data, data.location(), Location.parse(str(out)), EncodeSettings())
    assert second.already_done == 3 and second.transcoded == 2 and not second.skipped
    assert not partial.exists() and all((out / v).stat().st_mtime_ns == t for v, t in before.items())
    assert _stream_facts(str(out / lost))[2] == FRAMES and (out / "UCF-101" / left_out).exists()
    assert json.loads((out / ".fame-ray" / "transcode.json").read_text())["complete"] is True

    with pytest.raises(UserError, match="holds a copy made with H.264 short side 128, a keyframe every 16"):
        transcode.run(data, data.location(), Location.parse(str(out)), EncodeSettings(gop=8))
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not a copy")
    with pytest.raises(UserError, match="holds files and no transcode record"):
        transcode.run(data, data.location(), Location.parse(str(foreign)), EncodeSettings())


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_links_out_of_the_root_are_refused_and_no_permission_is_widened(ray_local, original, tmp_path):
    """Links to a file or a folder outside the root, and one to a folder inside it, are listed as
    skipped, never read; a link to a file inside the root is read; a 0600 video stays 0600 and a
    0700 class folder 0700. About 15 s on 2 cores."""
    root = _copy(original, tmp_path)
    videos = _videos(root)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(Path(root, videos[0]), outside / "private.avi")
    class_folder = Path(root, os.path.dirname(videos[0]))
    (class_folder / "leak.avi").symlink_to(outside / "private.avi")
    (class_folder / "more").symlink_to(outside)
    (class_folder / "again").symlink_to(class_folder)  # inside the root, but a walk would go round
    (class_folder / "alias.avi").symlink_to(Path(root, videos[1]))
    (Path(root) / "notes.txt").symlink_to("/etc/hostname")
    os.chmod(Path(root, videos[0]), 0o600)
    os.chmod(class_folder, 0o700)
    out = tmp_path / "UCF101-128"
    data = DataConfig(dataset="ucf101", data_root=root)
    result = transcode.run(data, data.location(), Location.parse(str(out)), EncodeSettings())

    folder = os.path.dirname(videos[0])
    assert dict(result.skipped) == {
        f"{folder}/leak.avi": "a symbolic link that leaves the data root (not read)",
        f"{folder}/more": "a symbolic link that leaves the data root (not read)",
        f"{folder}/again": "a symbolic link to a folder (not followed)",
        "notes.txt": "a symbolic link that leaves the data root (not read)",
    }
    assert result.transcoded == len(videos) + 1 and (out / folder / "alias.avi").is_file()
    assert not (out / folder / "leak.avi").exists() and not (out / folder / "more").exists()
    assert not (out / "notes.txt").exists()
    mask = bounds.umask()
    assert _mode(out / videos[0]) == 0o600 & ~mask and _mode(out / folder) == 0o700 & ~mask
    assert _mode(out / videos[-1]) == _mode(Path(root, videos[-1])) & ~mask
    split_file = Path("ucfTrainTestlist", "classInd.txt")
    assert _mode(out / split_file) == _mode(Path(root, split_file)) & ~mask


def test_a_copy_resumes_only_from_the_source_it_was_made_from(ray_local, original, tmp_path):
    """One video (a few seconds): the copy records its source; another root, or the same root
    holding other videos, is refused before anything is written."""
    root = Path(_copy(original, tmp_path))
    for video in _videos(str(root))[1:]:
        (root / video).unlink()
    out = tmp_path / "copy"
    data = DataConfig(dataset="ucf101", data_root=str(root))
    first = transcode.run(data, data.location(), Location.parse(str(out)), EncodeSettings())
    assert first.transcoded == 1
    recorded = json.loads((out / ".fame-ray" / "transcode.json").read_text())
    assert recorded["source"] == os.path.realpath(root) and recorded["source_fingerprint"]["videos"] == 1
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}

    other = Path(shutil.copytree(root, tmp_path / "other" / "UCF101"))
    other_data = DataConfig(dataset="ucf101", data_root=str(other))
    expected = f"is a copy of {os.path.realpath(root)}, not of {os.path.realpath(other)}"
    with pytest.raises(UserError, match=re.escape(expected)):
        transcode.run(other_data, other_data.location(), Location.parse(str(out)), EncodeSettings())
    video = root / _videos(str(root))[0]
    video.write_bytes(video.read_bytes() + b"\0" * 10)  # the same name, other bytes
    with pytest.raises(UserError, match="when it held other videos"):
        transcode.run(data, data.location(), Location.parse(str(out)), EncodeSettings())
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before


def _upload(local_root: str, uri: str, endpoint: str) -> None:
    client = storage.boto3_client(endpoint)
    bucket, prefix = uri[len("s3://") :].split("/", 1)
    for folder, _, files in os.walk(local_root):
        for name in files:
            path = os.path.join(folder, name)
            client.upload_file(path, bucket, f"{prefix}/{os.path.relpath(path, local_root)}")


def _keys(endpoint: str, prefix: str) -> dict[str, int]:
    pages = (
        storage.boto3_client(endpoint).get_paginator("list_objects_v2").paginate(Bucket="fame-ray-test", Prefix=prefix)
    )
    return {item["Key"][len(prefix) :]: item["Size"] for page in pages for item in page.get("Contents", [])}


def test_s3_to_s3_through_the_command_and_a_rerun_on_s3_resumes(ray_local, original, s3_server, bucket, caplog):
    _upload(original, f"{bucket}/UCF101", s3_server)
    caplog.set_level(logging.INFO, logger="werkzeug")  # moto's server logs every request it serves
    args = [
        "data",
        "transcode",
        "--dataset",
        "ucf101",
        "--data-root",
        f"{bucket}/UCF101",
        "--out",
        f"{bucket}/UCF101-128",
        "--short-side",
        "128",
        "--gop",
        "16",
        "--s3-endpoint",
        s3_server,
    ]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output + repr(first.exception)
    assert "6/6 videos (0 skipped)" in first.output and "videos/s, ETA" in first.output
    assert "size before" in first.output and "x smaller" in first.output

    # Exactly the layout, the synthetic marker and the record: no temporary object anywhere.
    expected = set(_videos(original)) | {f"ucfTrainTestlist/{name}" for name in SPLIT_FILES}
    expected |= {synthetic.MARKER, ".fame-ray/transcode.json", ".fame-ray/transcode_skipped.csv"}
    assert set(_keys(s3_server, "UCF101-128/")) == expected
    # Each file of the copy is one PUT of the finished bytes, never a multipart upload.
    requests = [record.getMessage() for record in caplog.records if record.name == "werkzeug"]
    assert sum("PUT /fame-ray-test/UCF101-128/UCF-101/" in r for r in requests) == 6
    assert not any("UCF101-128" in r and "uploads" in r.lower() for r in requests), [
        r for r in requests if "uploads" in r.lower()
    ]
    video = Location.parse(f"{bucket}/UCF101-128/{_videos(original)[0]}", s3_server).read_bytes()
    size, keyframes, frames, _ = _stream_facts(io.BytesIO(video))
    assert size == (170, 128) and keyframes == [0, 16, 32] and frames == FRAMES

    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "transcoded 0 videos, 6 done before, 0 skipped" in again.output, again.output


def _fame_ray(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("FAME_RAY_DEBUG", "RAY_ADDRESS", "AWS_ENDPOINT_URL")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "fame_ray.cli", "data", "transcode", *arguments],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--short-side", "100"], "--short-side must be 0 (keep the frame size) or an even number from 112"),
        (["--short-side", "128", "--crop-size", "224"], "--short-side 128 is below the 256 that 224-pixel crops need"),
        (
            ["--config", str(REPO / "jobs" / "pretrain-k400-i3d.yaml"), "--short-side", "128"],
            "--short-side 128 is below the 256",
        ),
        (["--gop", "0"], "--gop must be from 1"),
        (["--data-root", "{tmp}/missing"], "data root {tmp}/missing does not exist"),
        (["--out", "{tmp}/UCF101/copy"], "overlaps the data root"),
        (["--out", "{tmp}/link/copy"], "overlaps the data root {tmp}/UCF101 (resolved:"),
    ],
)
def test_bad_flags_fail_in_one_line_with_exit_2(original, tmp_path, flags, expected):
    root = _copy(original, tmp_path)
    (tmp_path / "link").symlink_to(root)
    base = {"--dataset": "ucf101", "--data-root": root, "--out": str(tmp_path / "copy")}
    given = [flag.format(tmp=tmp_path) for flag in flags]
    for name in list(base):
        if name in given or (name == "--dataset" and "--config" in given):
            base.pop(name)
    done = _fame_ray(*[part for pair in base.items() for part in pair], *given, cwd=tmp_path)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]
    assert expected.format(tmp=tmp_path) in lines[0] and "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "copy").exists() and not Path(root, "copy").exists()
