"""Synthetic dataset writer: official file names and split files, readable H.264, learnable motion."""

from __future__ import annotations

import colorsys
import json
import os
from pathlib import Path

import decord
import numpy as np
import pytest

from fame_ray.data import synthetic
from fame_ray.data.synthetic import render
from fame_ray.errors import UserError

SMALL = {"num_classes": 3, "videos_per_class": 4, "frames": 12, "width": 64, "height": 48}


def test_ucf101_layout_files_and_group_splits(tmp_path):
    root = synthetic.write_dataset(str(tmp_path / "UCF101"), "ucf101", **SMALL)
    lists = os.path.join(root, "ucfTrainTestlist")
    class_ind = Path(lists, "classInd.txt").read_bytes().decode()  # the line ends as written (CRLF)
    assert class_ind.startswith("1 Horizontal\r\n2 Vertical\r\n3 Circle")
    for split in (1, 2, 3):
        train = [line.split() for line in Path(os.path.join(lists, f"trainlist0{split}.txt")).read_text().splitlines()]
        test = Path(os.path.join(lists, f"testlist0{split}.txt")).read_text().split()
        assert len(train) + len(test) == 12 and test
        # Whole groups are held out: no group on both sides of a split.
        groups = lambda paths: {(p.split("/")[0], p.split("_g")[1][:2]) for p in paths}  # noqa: E731
        assert not groups([p for p, _ in train]) & groups(test)
        assert all(os.path.isfile(os.path.join(root, "UCF-101", p)) for p in test)
    first = os.path.join(root, "UCF-101", "Vertical", "v_Vertical_g01_c01.avi")
    reader = decord.VideoReader(first)
    assert len(reader) == 12 and reader[0].shape == (48, 64, 3)


def test_other_layouts_write_their_annotation_files(tmp_path):
    synthetic.write_dataset(str(tmp_path / "h"), "hmdb51", **SMALL)
    flags = Path(tmp_path / "h" / "testTrainMulti_7030_splits" / "circle_test_split2.txt").read_text().split()[1::2]
    assert set(flags) == {"1", "2"}
    synthetic.write_dataset(str(tmp_path / "d"), "diving48", **SMALL)
    train = json.loads(Path(tmp_path / "d" / "Diving48_V2_train.json").read_text())
    assert {"vid_name", "label", "start_frame", "end_frame"} <= set(train[0])
    assert (tmp_path / "d" / "rgb" / f"{train[0]['vid_name']}.mp4").is_file()
    synthetic.write_dataset(str(tmp_path / "k"), "kinetics400", **SMALL)
    header, row = Path(tmp_path / "k" / "validate.csv").read_text().splitlines()[:2]
    assert header == "label,youtube_id,time_start,time_end,split"
    label, youtube_id, start, end, split = row.split(",")
    assert (
        split == "val"
        and (tmp_path / "k" / "val" / label / f"{youtube_id}_{int(start):06d}_{int(end):06d}.mp4").is_file()
    )


def test_motion_classes_differ_by_trajectory():
    rng = np.random.default_rng(0)
    horizontal, vertical, _, _, pulse = (render.trajectory(c, 24, rng) for c in synthetic.motion_classes(5))
    assert np.ptp(horizontal[:, 0]) > 0.4 and np.ptp(horizontal[:, 1]) == 0
    assert np.ptp(vertical[:, 1]) > 0.4 and np.ptp(vertical[:, 0]) == 0
    assert np.ptp(pulse[:, 2]) > 0.9 and np.ptp(pulse[:, 0]) == 0
    assert synthetic.motion_classes(10)[9].words == ["vertical", "x2"]


def _hues(scene_bias: bool) -> np.ndarray:
    """Hue of the mean colour of each video, classes x videos."""
    writer = synthetic.VideoWriter(4, 2, 64, 48, 25, scene_bias, seed=0)
    means = [[writer.render(label, index).reshape(-1, 3).mean(0) / 255 for index in range(4)] for label in range(4)]
    return np.array([[colorsys.rgb_to_hsv(*m)[0] for m in row] for row in means])


def test_scene_bias_ties_background_to_class():
    def spread(hues):  # circular distance between the hues of videos of one class
        return np.abs((hues - hues[:, :1] + 0.5) % 1.0 - 0.5).max()

    biased, free = _hues(True), _hues(False)
    assert spread(biased) < 0.1
    assert spread(free) > 0.2
    assert np.ptp(biased[:, 0]) > 0.4  # different classes, different hues


def test_the_object_moves_and_is_visible():
    rng = np.random.default_rng(1)
    video = synthetic.render_video(synthetic.motion_classes(1)[0], 12, 64, 48, rng).astype(int)
    moving = np.abs(video[6] - video[0]).sum(-1) > 60
    assert 0.02 < moving.mean() < 0.4  # the object's old and new place, not the whole frame


def test_bad_arguments_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="unknown layout"):
        synthetic.write_dataset(str(tmp_path), "ucf-101")
    with pytest.raises(UserError, match="even"):
        synthetic.write_dataset(str(tmp_path), "ucf101", width=161)


def test_ensure_default_writes_once_and_never_takes_a_foreign_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(
        synthetic.writer,
        "DEFAULT",
        dict(synthetic.DEFAULT, num_classes=2, videos_per_class=2, frames=6, width=32, height=32),
    )
    root = tmp_path / "synthetic"
    assert synthetic.ensure_default(str(root)) == str(root)
    marker = root / synthetic.MARKER
    written = marker.stat().st_mtime_ns
    synthetic.ensure_default(str(root))
    assert marker.stat().st_mtime_ns == written
    assert [p.name for p in tmp_path.iterdir()] == ["synthetic"]  # no temporary folder left
    foreign = tmp_path / "half"
    (foreign / "UCF-101").mkdir(parents=True)
    with pytest.raises(UserError, match="no complete synthetic dataset"):
        synthetic.ensure_default(str(foreign))
