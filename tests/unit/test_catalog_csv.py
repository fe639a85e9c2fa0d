"""The csv list reader and the hash split (no Ray)."""

from __future__ import annotations

import pytest

from fame_ray.data.catalog.generic import read_csv
from fame_ray.data.catalog.listing import hash_split
from fame_ray.errors import UserError
from fame_ray.storage import Location


def test_hash_split_is_deterministic_and_about_80_20():
    keys = [f"class_{i % 7}/video_{i}.mp4" for i in range(2000)]
    splits = [hash_split(k) for k in keys]
    assert splits == [hash_split(k) for k in keys]
    assert 0.17 < splits.count("test") / len(keys) < 0.23


def test_csv_names_relative_absolute_and_s3_paths(tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "videos.csv").write_text(
        "path,label\nclips/a.mp4,walk\n/data/b.avi,run\ns3://bucket/c.mp4,walk\n../d.mp4,jump\n"
    )
    listing = read_csv(Location.parse(str(lists / "videos.csv")), 1)
    found = {(e.path, e.label) for e in listing.subsets["train"] + listing.subsets["test"]}
    assert listing.classes == ["jump", "run", "walk"]
    assert found == {
        (str(lists / "clips" / "a.mp4"), 2),
        ("/data/b.avi", 1),
        ("s3://bucket/c.mp4", 2),
        (str(tmp_path / "d.mp4"), 0),
    }
    assert "names" in listing.variant and "hash" in listing.variant


def test_csv_indices_and_split_column(tmp_path):
    path = tmp_path / "list.csv"
    path.write_text("path,label,split\na.mp4,0,train\nb.mp4,2,val\nc.mp4,1,test\n")
    listing = read_csv(Location.parse(str(path)), 1)
    assert listing.classes == ["0", "1", "2"]
    assert [e.label for e in listing.subsets["train"]] == [0]
    assert [(e.label, e.split) for e in listing.subsets["test"]] == [(2, "val"), (1, "test")]


def test_csv_mistakes_are_user_errors(tmp_path):
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("a.mp4,0\nb.mp4,run\n")
    with pytest.raises(UserError, match="mix"):
        read_csv(Location.parse(str(mixed)), 1)
    broken = tmp_path / "broken.csv"
    broken.write_text("path,label\na.mp4\n")
    with pytest.raises(UserError, match="path,label"):
        read_csv(Location.parse(str(broken)), 1)
    with pytest.raises(UserError, match="does not exist"):
        read_csv(Location.parse(str(tmp_path / "absent.csv")), 1)
