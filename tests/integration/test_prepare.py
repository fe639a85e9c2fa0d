"""prepare on a local Ray instance: probing, a corrupt video in the report, preparing only when asked, S3 roots."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fame_ray import storage
from fame_ray.cli import app
from fame_ray.config import DataConfig
from fame_ray.data import catalog, manifest, ready, synthetic
from fame_ray.data.clips import decode, pipeline, sampling
from fame_ray.errors import UserError
from fame_ray.storage import Location

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("s3_credentials")]


def test_prepare_probes_and_reports_a_corrupt_video(ray_local, synth_root, tmp_path):
    root = shutil.copytree(synth_root, str(tmp_path / "UCF101"), ignore=shutil.ignore_patterns(".fame-ray"))
    first_train = Path(os.path.join(root, "ucfTrainTestlist", "trainlist01.txt")).read_text().split()[0]
    corrupt = os.path.join(root, "UCF-101", first_train)
    with open(corrupt, "wb") as handle:
        handle.write(os.urandom(5000))
    data = DataConfig(dataset="ucf101", data_root=root)
    result = catalog.prepare(data, data.location())
    assert result.counts["train"] == 15 and result.counts["test"] == 8 and result.num_classes == 4
    assert result.skipped == [(corrupt, result.skipped[0][1])] and "unreadable" in result.skipped[0][1]
    with open(result.report.uri) as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["path"] == corrupt and rows[0]["subset"] == "train"
    assert result.incomplete == []  # the synthetic videos hold every frame their headers promise
    table = manifest.read(result.manifests["train"]).to_pylist()
    assert {row["num_frames"] for row in table} == {40} and {(row["height"], row["width"]) for row in table} == {
        (120, 160)
    }
    assert all(row["fps"] == 25 and row["end_frame"] == 40 and os.path.isfile(row["path"]) for row in table)
    # The synthetic videos (H.264 in AVI, one keyframe each) are read right by decord: its fast path.
    assert {row["decoder"] for row in table} == {manifest.DECORD}
    assert {row["label_name"] for row in table} == set(json.loads(Path(result.classes_file.uri).read_text()))
    assert result.manifests["train"].parent.uri == os.path.join(root, ".fame-ray")


def test_a_dataset_is_prepared_only_when_a_command_asks_for_it(ray_local, tmp_path, monkeypatch):
    monkeypatch.setattr(
        synthetic.writer, "DEFAULT", dict(synthetic.DEFAULT, num_classes=3, videos_per_class=3, frames=20)
    )
    data = DataConfig(dataset="synthetic", data_root=str(tmp_path / "synthetic"))
    source = data.location()
    located = catalog.locate(data, source)
    assert located["train"].name == "synthetic_split1_train.parquet" and not (tmp_path / "synthetic").exists(), (
        "locating writes nothing"
    )
    with pytest.raises(UserError, match="has no manifests in .* yet") as refused:
        catalog.class_names(data, source)
    assert "run `fame-ray data prepare --dataset synthetic`" in refused.value.one_line()
    assert not (tmp_path / "synthetic").exists()

    train = ready.manifests(data, source)["train"]
    assert train == located["train"] and synthetic.is_complete(data.data_root)
    assert manifest.read(train).num_rows + manifest.read(located["test"]).num_rows == 9
    assert catalog.class_names(data, source) == ["Horizontal", "Vertical", "Circle"]


def _upload(local_root: str, uri: str, endpoint: str) -> None:
    client = storage.boto3_client(endpoint)
    bucket, prefix = uri[len("s3://") :].split("/", 1)
    for folder, folders, files in os.walk(local_root):
        folders[:] = [f for f in folders if f != ".fame-ray"]  # manifests of other tests
        for name in files:
            path = os.path.join(folder, name)
            client.upload_file(path, bucket, f"{prefix}/{os.path.relpath(path, local_root)}")


def test_prepare_from_an_s3_root(ray_local, synth_root, s3_server, bucket):
    root = f"{bucket}/UCF101"
    _upload(synth_root, root, s3_server)
    data = DataConfig(dataset="ucf101", data_root=root, split=2)
    source = data.location(s3_server)
    result = catalog.prepare(data, source)
    assert result.counts["train"] + result.counts["test"] == 24 and not result.skipped
    assert result.manifests["test"].uri == f"{root}/.fame-ray/ucf101_split2_test.parquet"
    rows = manifest.read(catalog.ensure(data, source)["test"]).to_pylist()
    assert rows and all(row["path"].startswith(f"{root}/UCF-101/") and row["num_frames"] == 40 for row in rows)


def test_manifests_of_a_changed_dataset_are_rebuilt_and_current_ones_are_kept(ray_local, synth_root, tmp_path, caplog):
    root = shutil.copytree(synth_root, str(tmp_path / "UCF101"), ignore=shutil.ignore_patterns(".fame-ray"))
    data = DataConfig(dataset="ucf101", data_root=root)
    source = data.location()
    test_manifest = catalog.ensure(data, source)["test"]
    assert manifest.read(test_manifest).num_rows == 8 and manifest.read_fingerprint(test_manifest)["videos"] == 24
    written_at = os.stat(test_manifest.uri).st_mtime_ns
    assert (
        catalog.ensure(data, source)["test"] == test_manifest and os.stat(test_manifest.uri).st_mtime_ns == written_at
    )

    gone = manifest.read(test_manifest).column("path").to_pylist()[0]
    os.remove(gone)
    with caplog.at_level("WARNING", logger="fame_ray.data.catalog"):
        rebuilt = catalog.ensure(data, source)["test"]
    rows = manifest.read(rebuilt).column("path").to_pylist()
    assert len(rows) == 7 and gone not in rows, "a video deleted since the manifest was built is still in it"
    assert "changed since its manifests" in caplog.text and "24 -> 23 videos found" in caplog.text
    assert manifest.read_fingerprint(rebuilt)["videos"] == 23

    # A manifest written before fingerprints existed (no schema metadata) is rebuilt once.
    manifest.write(manifest.read(rebuilt), rebuilt)
    assert manifest.read_fingerprint(rebuilt) is None
    catalog.ensure(data, source)
    assert manifest.read_fingerprint(rebuilt)["videos"] == 23


def test_prepare_lists_the_files_that_lie_and_every_index_of_the_manifests_names_its_frame(ray_local, tmp_path):
    """A folder dataset holding the two files that lie about their frames (tests/stamped.py):
    the edit-list MP4 (150 frames in the file, 144 shown) is in the report with the reason and
    the fix; the AVI cut inside its 161st packet (its header says 200) is kept with the 160
    frames that are whole (decoded with PyAV), and listed with the reason and the fix too. Beside
    them an H.264 AVI with a keyframe every 24 frames (what older `data transcode` copies of
    UCF101 hold: decoded with PyAV), MPEG-4 Part 2 AVI, H.264 High with B-frames in MP4 and VP9
    WebM (decord). Through the command a user runs; every frame of clips of every manifest row,
    decoded by the decoder the row names, carries its index."""
    import stamped

    root = tmp_path / "lying"
    writers = {
        "train/walk/cut.mp4": stamped.write_edit_list,
        "train/walk/partial.avi": stamped.write_truncated_avi,
        "train/run/whole.avi": lambda path: stamped.write(stamped.SPECS["avi_mpeg4"], path),
        "train/run/gop24.avi": lambda path: stamped.write(stamped.SPECS["avi_h264"], path),
        "test/walk/whole.mp4": lambda path: stamped.write(stamped.SPECS["mp4_h264_high_bframes"], path),
        "test/run/whole.webm": lambda path: stamped.write(stamped.SPECS["webm_vp9"], path),
    }
    shown = {}
    for name, writer in writers.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        shown[str(path)] = writer(str(path))
    printed = CliRunner().invoke(app, ["data", "prepare", "--dataset", "folder", "--data-root", str(root)])
    assert printed.exit_code == 0, printed.output
    cut, partial = str(root / "train" / "walk" / "cut.mp4"), str(root / "train" / "walk" / "partial.avi")
    assert "skipped 1 videos" in printed.output and "kept 1 videos with fewer frames than they claim" in printed.output
    assert f"    {cut}: an edit list hides 6 of its 150 frames" in printed.output
    assert f"    {partial}: kept with its 160 whole frames of 200 (its header promises 200" in printed.output
    data = DataConfig(dataset="folder", data_root=str(root), frames_per_clip=16, temporal_stride=2)
    manifests = catalog.locate(data, data.location())
    for report, path, subset, reason in (
        ("skipped", cut, "train", "an edit list hides 6 of its 150 frames"),
        ("incomplete", partial, "train", "kept with its 160 whole frames of 200 (its header promises 200 frames"),
    ):
        with open(manifests["train"].parent.uri + f"/folder_split1_{report}.csv") as handle:
            (row,) = list(csv.DictReader(handle))
        assert (row["path"], row["subset"]) == (path, subset) and row["reason"].startswith(reason), row
        assert "`fame-ray data transcode`" in row["reason"]
    tables = {subset: manifest.read(manifests[subset]).to_pylist() for subset in ("train", "test")}
    assert {subset: len(table) for subset, table in tables.items()} == {"train": 3, "test": 2}
    rows = {row["path"]: row for table in tables.values() for row in table}
    assert (rows[partial]["num_frames"], rows[partial]["end_frame"]) == (160, 160)
    assert {path for path, row in rows.items() if row["decoder"] == manifest.PYAV} == {
        str(root / "train" / "run" / "gop24.avi"),
        partial,
    }
    assert pipeline.videos_of(manifests["train"])["decoder"] == [row["decoder"] for row in tables["train"]]
    for path, row in rows.items():
        assert row["num_frames"] == len(shown[path])
        usable = range(row["start_frame"], row["end_frame"])
        offsets = sampling.uniform_offsets(len(usable), data.clip_span, 5)
        clips = decode.decode_clips(Location.parse(path), usable, offsets, data, row["decoder"])
        for offset, clip in zip(offsets, clips):
            indices = sampling.clip_indices(usable.start, usable.stop, offset, 16, 2)
            assert [stamped.read_stamp(frame) for frame in clip] == [shown[path][i] for i in indices], (
                f"{path} {offset}"
            )
