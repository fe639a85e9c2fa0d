"""Layout readers (no Ray, no probing) on synthetic datasets in each official layout and its variants."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from fame_ray.data.catalog import layouts
from fame_ray.data.catalog.generic import read_folder
from fame_ray.data.catalog.listing import Tree as _Tree
from fame_ray.data.synthetic import write_dataset
from fame_ray.errors import UserError
from fame_ray.storage import Location


def Tree(root):
    """A local dataset root as the layout readers take it."""
    return _Tree(Location.parse(str(root)))


TINY = {"num_classes": 3, "videos_per_class": 4, "frames": 6, "width": 32, "height": 32}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """One tiny dataset per layout, written once; tests copy before changing one."""
    base = tmp_path_factory.mktemp("layouts")
    out = {
        layout: write_dataset(str(base / layout), layout, **TINY)
        for layout in ("ucf101", "hmdb51", "diving48", "folder")
    }
    # Seven classes: the seventh, 'figure eight', has a space in its Kinetics label.
    out["kinetics400"] = write_dataset(
        str(base / "kinetics400"), "kinetics400", **dict(TINY, num_classes=7, videos_per_class=2)
    )
    return out


def _copy(written, layout, tmp_path) -> str:
    return shutil.copytree(written[layout], str(tmp_path / layout))


def _count(listing) -> tuple[int, int]:
    return len(listing.subsets["train"]), len(listing.subsets["test"])


def test_ucf101_official_layout(written):
    listing = layouts.read_ucf101(Tree(written["ucf101"]), 2)
    assert listing.classes == ["Horizontal", "Vertical", "Circle"]
    assert sum(_count(listing)) == 12 and all(_count(listing))
    assert "UCF-101" in listing.variant and not listing.missing
    for entry in listing.subsets["train"] + listing.subsets["test"]:
        assert os.path.isfile(entry.path) and f"/{listing.classes[entry.label]}/" in entry.path


def test_ucf101_videos_folder_and_lists_beside_the_root(written, tmp_path):
    root = _copy(written, "ucf101", tmp_path)
    os.rename(os.path.join(root, "UCF-101"), os.path.join(root, "videos"))
    assert "videos" in layouts.read_ucf101(Tree(root), 1).variant
    # Class folders directly in the data root, ucfTrainTestlist beside it.
    listing = layouts.read_ucf101(Tree(os.path.join(root, "videos")), 3)
    assert sum(_count(listing)) == 12 and os.path.join(root, "ucfTrainTestlist") in listing.variant


def test_ucf101_disagreeing_or_missing_split_files(written, tmp_path):
    root = _copy(written, "ucf101", tmp_path)
    trainlist = os.path.join(root, "ucfTrainTestlist", "trainlist01.txt")
    lines = Path(trainlist).read_text().splitlines()
    Path(trainlist).write_text("\n".join([lines[0].rsplit(" ", 1)[0] + " 3"] + lines[1:]))
    with pytest.raises(UserError, match="classInd.txt says 1"):
        layouts.read_ucf101(Tree(root), 1)
    os.remove(os.path.join(root, "ucfTrainTestlist", "testlist02.txt"))
    with pytest.raises(UserError, match="testlist02.txt"):
        layouts.read_ucf101(Tree(root), 2)
    with pytest.raises(UserError, match="ucfTrainTestlist"):
        layouts.read_ucf101(Tree(os.path.join(root, "UCF-101", "Circle")), 1)


def test_hmdb51_flags_and_hmdb51_org_variant(written, tmp_path):
    listing = layouts.read_hmdb51(Tree(written["hmdb51"]), 1)
    assert listing.classes == ["circle", "horizontal", "vertical"]  # sorted names
    flags = Path(written["hmdb51"], "testTrainMulti_7030_splits", "circle_test_split1.txt").read_text().split()[1::2]
    circle = [e for e in listing.subsets["test"] if e.label == 0]
    assert len(circle) == flags.count("2") and sum(_count(listing)) == 12
    root = _copy(written, "hmdb51", tmp_path)
    os.mkdir(os.path.join(root, "hmdb51_org"))
    for name in listing.classes:
        os.rename(os.path.join(root, name), os.path.join(root, "hmdb51_org", name))
    moved = layouts.read_hmdb51(Tree(root), 3)
    assert "hmdb51_org" in moved.variant and sum(_count(moved)) == 12


def test_diving48_official_and_annotations_variant(written, tmp_path):
    listing = layouts.read_diving48(Tree(written["diving48"]), 1)
    assert listing.classes[0] == "horizontal x1 NoTwis FREE"
    entry = listing.subsets["train"][0]
    assert (entry.start_frame, entry.end_frame) == (0, TINY["frames"])
    root = _copy(written, "diving48", tmp_path)
    os.rename(os.path.join(root, "rgb"), os.path.join(root, "videos"))
    os.mkdir(os.path.join(root, "annotations"))
    for name in ("Diving48_V2_train.json", "Diving48_V2_test.json", "Diving48_vocab.json"):
        os.rename(os.path.join(root, name), os.path.join(root, "annotations", name))
    moved = layouts.read_diving48(Tree(root), 1)
    assert "annotations" in moved.variant and "videos" in moved.variant and _count(moved) == _count(listing)
    with pytest.raises(UserError, match="one split|split"):
        layouts.read_diving48(Tree(root), 2)


def test_kinetics_underscores_validate_folder_and_a_missing_clip(written, tmp_path):
    assert "spaces" in layouts.read_kinetics400(Tree(written["kinetics400"]), 1).variant
    root = _copy(written, "kinetics400", tmp_path)
    os.rename(os.path.join(root, "val"), os.path.join(root, "validate"))
    for subset in ("train", "validate"):
        for name in os.listdir(os.path.join(root, subset)):
            os.rename(os.path.join(root, subset, name), os.path.join(root, subset, name.replace(" ", "_")))
    gone = sorted(os.listdir(os.path.join(root, "train", "figure_eight")))[0]
    os.remove(os.path.join(root, "train", "figure_eight", gone))
    listing = layouts.read_kinetics400(Tree(root), 1)
    assert listing.classes[:3] == ["circle", "diagonal", "figure eight"]
    assert _count(listing) == (6, 7) and len(listing.missing) == 1
    assert gone[:-4] in listing.missing[0][0] and "train" in listing.missing[0][1]
    assert "underscores" in listing.variant and "validate" in listing.variant
    assert {e.split for e in listing.subsets["test"]} == {"val"}


def test_folder_hash_split_is_deterministic_and_train_test_folders_win(written, tmp_path):
    first, second = read_folder(Tree(written["folder"]), 1), read_folder(Tree(written["folder"]), 1)
    assert [e.path for e in first.subsets["test"]] == [e.path for e in second.subsets["test"]]
    assert sum(_count(first)) == 12 and first.classes == ["circle", "horizontal", "vertical"]
    root = tmp_path / "split"
    shutil.copytree(written["folder"], root / "train", ignore=shutil.ignore_patterns(".*"))
    shutil.copytree(os.path.join(written["folder"], "circle"), root / "val" / "circle")
    given = read_folder(Tree(str(root)), 1)
    assert _count(given) == (12, 4) and "train/ and test/" in given.variant
    with pytest.raises(UserError, match="no class folders"):
        read_folder(Tree(str(tmp_path / "split" / "val" / "circle")), 1)
