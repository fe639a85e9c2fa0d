"""The validation split a sweep chooses on: held out of the training split, per class, seeded,
the same on every rerun, disjoint from the test split and from the videos trained on."""

from __future__ import annotations

import posixpath

import numpy as np
import pyarrow as pa

from fame_ray.data import manifest
from fame_ray.data.catalog import holdout
from fame_ray.storage import Location


def _table(paths: list[str], labels: list[int], names: list[str], split: str) -> pa.Table:
    rows = [
        {
            "path": path,
            "label": label,
            "label_name": name,
            "split": split,
            "num_frames": 100,
            "fps": 25.0,
            "height": 240,
            "width": 320,
            "start_frame": 0,
            "end_frame": 100,
        }
        for path, label, name in zip(paths, labels, names)
    ]
    return pa.Table.from_pylist(rows, schema=manifest.SCHEMA)


def _ucf_like(root: str = "/data/UCF101", groups=range(8, 26), subset: str = "train") -> pa.Table:
    """Class 0 in UCF101's naming (groups of 4 clips); class 1 without groups (HMDB51-like names)."""
    paths, labels, names = [], [], []
    for group in groups:
        for clip in range(1, 5):
            paths.append(f"{root}/UCF-101/Diving/v_Diving_g{group:02d}_c{clip:02d}.avi")
            labels.append(0)
            names.append("Diving")
    if subset == "train":
        for index in range(30):
            paths.append(f"{root}/hmdb/golf/swing_{index}_golf_f_cm_np1_ri_med_0.avi")
            labels.append(1)
            names.append("golf")
    return _table(paths, labels, names, subset)


def _held_names(table: pa.Table, held: np.ndarray) -> set[str]:
    return {posixpath.basename(path) for path, h in zip(table["path"].to_pylist(), held) if h}


def test_the_validation_split_is_disjoint_stratified_and_stable(tmp_path):
    train, test = _ucf_like(), _ucf_like(groups=range(1, 8), subset="test")
    held = holdout.validation_rows(train, 0.1, seed=0)
    names = _held_names(train, held)
    # Per class: 10% of the golf videos (3 of 30); Diving loses whole groups (2 of 18 = 8 of 72 clips).
    labels = np.asarray(train["label"].to_pylist())
    assert held[labels == 1].sum() == 3
    diving = [posixpath.basename(p) for p, h, lab in zip(train["path"].to_pylist(), held, labels) if h and lab == 0]
    groups = {name.split("_g")[1][:2] for name in diving}
    assert (
        len(diving) == 8
        and len(groups) == 2
        and all(f"_g{g}_c0{c}" in "".join(diving) for g in groups for c in (1, 2, 3, 4))
    )
    # Disjoint from the test split, and the same videos on every rerun: another row order, another root.
    assert not names & {posixpath.basename(p) for p in test["path"].to_pylist()}
    shuffled = train.take(pa.array(np.random.default_rng(5).permutation(train.num_rows)))
    moved = _ucf_like(root="s3://bucket/copies/UCF101-gop16")
    assert _held_names(shuffled, holdout.validation_rows(shuffled, 0.1, seed=0)) == names
    assert _held_names(moved, holdout.validation_rows(moved, 0.1, seed=0)) == names
    assert _held_names(train, holdout.validation_rows(train, 0.1, seed=1)) != names
    assert not holdout.validation_rows(train, 0.0, seed=0).any()
    # Written as two manifests that split the training manifest between them.
    source = Location.parse(str(tmp_path / "train.parquet"))
    manifest.write(train, source, {"dataset": "test"})
    split = holdout.write_split(source, Location.parse(str(tmp_path / "holdout")), 0.1, 0)
    fit, val = manifest.read(split.train), manifest.read(split.val)
    assert (split.train_videos, split.val_videos) == (fit.num_rows, val.num_rows) == (train.num_rows - 11, 11)
    assert {posixpath.basename(p) for p in val["path"].to_pylist()} == names
    assert not set(fit["path"].to_pylist()) & set(val["path"].to_pylist())
    assert set(val["split"].to_pylist()) == {"val"} and manifest.read_fingerprint(split.val) == {"dataset": "test"}
    assert "11 of the 102 training videos (10.8%" in split.describe()


def test_a_class_of_one_video_keeps_it_for_training_and_a_class_never_gives_all():
    table = _table(["/d/a/x.avi", "/d/b/y.avi", "/d/b/z.avi"], [0, 1, 1], ["a", "b", "b"], "train")
    held = holdout.validation_rows(table, 0.9, seed=0)
    assert held.tolist()[0] is False and held[1:].sum() == 1
    # A class whose groups are all too large for its share gives single videos, not half the class.
    tiny = [f"/d/C/v_C_g{g:02d}_c{c:02d}.avi" for g in (1, 2) for c in (1, 2)]
    held = holdout.validation_rows(_table(tiny, [0] * 4, ["C"] * 4, "train"), 0.1, seed=0)
    assert held.sum() == 1
