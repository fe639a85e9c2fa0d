"""Dataset fingerprints (no Ray, no probing): what a manifest was built from, and what changes it.

Each case changes a tiny dataset the way a user's copy changes (a video deleted, replaced,
re-encoded in place, a split file edited, a listed file gone from a csv list) and checks that
the fingerprint says so; writing manifests into the dataset's own .fame-ray/ changes nothing.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fame_ray import storage
from fame_ray.config import DataConfig
from fame_ray.data import catalog, manifest
from fame_ray.data.catalog import fingerprint
from fame_ray.data.synthetic import write_dataset
from fame_ray.errors import UserError
from fame_ray.storage import Location

TINY = {"num_classes": 2, "videos_per_class": 3, "frames": 4, "width": 32, "height": 32}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    return write_dataset(str(tmp_path_factory.mktemp("fingerprint") / "UCF101"), "ucf101", **TINY)


@pytest.fixture
def root(written, tmp_path):
    return shutil.copytree(written, str(tmp_path / "UCF101"))


def _stamp(root: str, **data) -> dict:
    config = DataConfig(dataset=data.pop("dataset", "ucf101"), data_root=root, **data)
    return catalog.scan(config, config.location())[1]


def _a_video(root: str) -> str:
    first = Path(os.path.join(root, "ucfTrainTestlist", "testlist01.txt")).read_text().split()[0]
    return os.path.join(root, "UCF-101", first)


def test_an_unchanged_dataset_keeps_its_fingerprint_whatever_is_written_into_dot_fame_ray(root):
    before = _stamp(root)
    assert before["videos"] == 6 and before["absent"] == 0 and before["bytes"] > 0 and before["newest_mtime_ns"] > 0
    os.makedirs(os.path.join(root, ".fame-ray"))
    with open(os.path.join(root, ".fame-ray", "ucf101_split1_train.parquet"), "wb") as handle:
        handle.write(b"a manifest")
    assert fingerprint.differences(before, _stamp(root)) == []


def test_a_deleted_video_is_seen(root):
    before = _stamp(root)
    os.remove(_a_video(root))
    changes = fingerprint.differences(before, _stamp(root))
    assert "6 -> 5 videos found" in changes and any("split/annotation" in change for change in changes), changes


def test_a_video_rewritten_in_place_is_seen_by_its_size_and_time(root):
    before = _stamp(root)
    video = _a_video(root)
    with open(video, "ab") as handle:
        handle.write(b"\0" * 10)
    os.utime(video, ns=(before["newest_mtime_ns"] + 10**9, before["newest_mtime_ns"] + 10**9))
    changes = fingerprint.differences(before, _stamp(root))
    assert any("bytes of video" in change for change in changes) and any(
        "newest video change" in change for change in changes
    ), changes
    assert not any("split/annotation" in change for change in changes)


def test_an_edited_split_file_is_seen_with_the_same_videos(root):
    before = _stamp(root)
    lists = os.path.join(root, "ucfTrainTestlist")
    moved = Path(os.path.join(lists, "testlist01.txt")).read_text().split()[0]
    with open(os.path.join(lists, "testlist01.txt")) as handle:
        kept = [line for line in handle.read().splitlines() if line.strip() and line.split()[0] != moved]
    with open(os.path.join(lists, "testlist01.txt"), "w") as handle:
        handle.write("\n".join(kept) + "\n")
    classes = {
        line.split()[1]: line.split()[0]
        for line in Path(os.path.join(lists, "classInd.txt")).read_text().splitlines()
        if line.strip()
    }
    with open(os.path.join(lists, "trainlist01.txt"), "a") as handle:
        handle.write(f"{moved} {classes[moved.split('/')[0]]}\n")
    changes = fingerprint.differences(before, _stamp(root))
    assert changes == ["the split/annotation files list other videos, labels or classes"], changes


def test_a_csv_list_notices_a_listed_file_that_went_away(root, tmp_path):
    videos = sorted(
        os.path.join(folder, name) for folder, _, names in os.walk(os.path.join(root, "UCF-101")) for name in names
    )
    listing = tmp_path / "videos.csv"
    listing.write_text(
        "path,label\n" + "".join(f"{path},{os.path.basename(os.path.dirname(path))}\n" for path in videos)
    )
    before = _stamp("", dataset="csv", csv_path=str(listing))
    os.remove(videos[0])
    after = _stamp("", dataset="csv", csv_path=str(listing))
    assert (before["videos"], before["absent"], after["videos"], after["absent"]) == (6, 0, 5, 1)
    assert "0 -> 1 listed videos absent" in fingerprint.differences(before, after)


def test_an_s3_root_is_fingerprinted_from_its_listing(written, s3_server, bucket):
    client = storage.boto3_client(s3_server)
    for folder, _, names in os.walk(written):
        for name in names:
            path = os.path.join(folder, name)
            client.upload_file(path, "fame-ray-test", f"UCF101/{os.path.relpath(path, written)}")
    data = DataConfig(dataset="ucf101", data_root=f"{bucket}/UCF101")
    before = catalog.scan(data, data.location(s3_server))[1]
    assert before["videos"] == 6 and before["bytes"] == _stamp(written)["bytes"]
    assert fingerprint.differences(before, catalog.scan(data, data.location(s3_server))[1]) == []
    first = Path(os.path.join(written, "ucfTrainTestlist", "testlist01.txt")).read_text().split()[0]
    client.delete_object(Bucket="fame-ray-test", Key=f"UCF101/UCF-101/{first}")
    assert "6 -> 5 videos found" in fingerprint.differences(before, catalog.scan(data, data.location(s3_server))[1])


def test_the_fingerprint_travels_in_the_manifest_schema(tmp_path):
    stamp = {
        "version": fingerprint.VERSION,
        "videos": 1,
        "absent": 0,
        "bytes": 5,
        "newest_mtime_ns": 7,
        "listing_sha256": "ab",
    }
    table = pa.Table.from_pylist([], schema=manifest.SCHEMA)
    with_stamp, without = Location.parse(str(tmp_path / "a.parquet")), Location.parse(str(tmp_path / "b.parquet"))
    manifest.write(table, with_stamp, stamp)
    manifest.write(table, without)
    assert manifest.read_fingerprint(with_stamp) == stamp and manifest.read(with_stamp).num_rows == 0
    assert manifest.read_fingerprint(without) is None
    assert manifest.read_fingerprint(Location.parse(str(tmp_path / "missing.parquet"))) is None
    assert fingerprint.differences(None, stamp) == [
        "the manifest holds no dataset fingerprint (built by an older fame-ray)"
    ]


def test_a_manifest_from_before_the_decoder_column_is_stale_and_refused(tmp_path):
    """Manifests written before the `decoder` column: their fingerprint is of version 1, so
    `catalog.ensure` rebuilds them; read directly, they are refused with the fix."""
    old = manifest.SCHEMA.remove(manifest.SCHEMA.get_field_index("decoder"))
    row = {"path": "/v.avi", "label": 0, "label_name": "a", "split": "train", "num_frames": 9, "fps": 25.0}
    row |= {"height": 8, "width": 8, "start_frame": 0, "end_frame": 9}
    location = Location.parse(str(tmp_path / "old.parquet"))
    pq.write_table(pa.Table.from_pylist([row], schema=old), location.path)
    stored = {"version": 1, "videos": 1, "absent": 0, "bytes": 5, "newest_mtime_ns": 7, "listing_sha256": "ab"}
    now = {**stored, "version": fingerprint.VERSION}
    assert fingerprint.differences(stored, now) == [f"fingerprint format 1 -> {fingerprint.VERSION}"]
    with pytest.raises(UserError, match="names no decoder") as raised:
        manifest.read(location)
    assert "fame-ray data prepare" in raised.value.hint
