"""Writers of the official dataset layouts (docs/datasets.md) for synthetic videos.

Each `write_<layout>(out, writer, videos_per_class)` renders the videos through a
synthetic.VideoWriter and writes the split/annotation files exactly as the publisher ships
them (names, headers, 1-based indices, flags, CRLF line ends where the original has them),
so that the catalog reads a synthetic copy through the same code as the real one.
"""

from __future__ import annotations

import csv
import json
import math
import os
import string

import numpy as np


def ucf101_name(words: list[str]) -> str:
    """UCF101 class names are CamelCase: ['figure', 'eight'] -> 'FigureEight'."""
    return "".join(w.capitalize() for w in words)


def _write_lines(path: str, lines: list[str], newline: str = "\n") -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as handle:
        handle.write("".join(line + newline for line in lines))


def _test_count(videos_per_class: int, share: float) -> int:
    """Test videos per class: `share` of them, at least one, leaving at least one to train on."""
    return min(videos_per_class - 1, max(1, round(share * videos_per_class)))


def write_ucf101(out: str, writer, videos_per_class: int) -> None:
    """UCF-101/<Class>/v_<Class>_gXX_cYY.avi + ucfTrainTestlist/ (classInd, 3 train/test lists).

    Like the original, videos come in groups (gXX, several clips cYY each) and each split
    holds out whole groups, so clips of one group never sit on both sides of a split.
    """
    names = [ucf101_name(c.words) for c in writer.classes]
    groups = min(25, max(3, math.ceil(videos_per_class / 2)))  # the original has 25 groups
    per_group = math.ceil(videos_per_class / groups)
    used_groups = math.ceil(videos_per_class / per_group)
    videos = []  # (relative path, label, group)
    for label, name in enumerate(names):
        for index in range(videos_per_class):
            group, clip = index // per_group + 1, index % per_group + 1
            relative = f"{name}/v_{name}_g{group:02d}_c{clip:02d}.avi"
            writer.write(label, index, os.path.join(out, "UCF-101", relative))
            videos.append((relative, label, group))
    lists = os.path.join(out, "ucfTrainTestlist")
    # The original files end lines with CRLF.
    _write_lines(os.path.join(lists, "classInd.txt"), [f"{i + 1} {n}" for i, n in enumerate(names)], "\r\n")
    fold = max(1, round(used_groups * 7 / 25))  # the original tests on 7 of 25 groups per split
    for split in (1, 2, 3):
        test_groups = {((split - 1) * fold + j) % used_groups + 1 for j in range(fold)}
        train = [f"{rel} {label + 1}" for rel, label, group in videos if group not in test_groups]
        test = [rel for rel, _, group in videos if group in test_groups]
        _write_lines(os.path.join(lists, f"trainlist0{split}.txt"), train, "\r\n")
        _write_lines(os.path.join(lists, f"testlist0{split}.txt"), test, "\r\n")


def write_hmdb51(out: str, writer, videos_per_class: int) -> None:
    """<class>/<name>.avi + testTrainMulti_7030_splits/<class>_test_splitN.txt (1 train, 2 test, 0 unused)."""
    splits_dir = os.path.join(out, "testTrainMulti_7030_splits")
    for label, motion in enumerate(writer.classes):
        name = "_".join(motion.words)
        files = [f"Clip{index:03d}_{name}_u_nm_np1_fr_goo_0.avi" for index in range(videos_per_class)]
        for index, file in enumerate(files):
            writer.write(label, index, os.path.join(out, name, file))
        unused = videos_per_class // 10 if videos_per_class >= 10 else 0
        for split in (1, 2, 3):
            order = np.random.default_rng([writer.seed, label, split]).permutation(videos_per_class)
            flags = np.ones(videos_per_class, int)
            n_test = _test_count(videos_per_class - unused, 0.3)
            flags[order[:n_test]] = 2
            flags[order[n_test : n_test + unused]] = 0
            # The original lines end with a space: "<name>.avi 1 ".
            lines = [f"{file} {flag} " for file, flag in zip(files, flags)]
            _write_lines(os.path.join(splits_dir, f"{name}_test_split{split}.txt"), lines)


def _youtube_id(rng: np.random.Generator) -> str:
    alphabet = np.array(list(string.ascii_letters + string.digits + "-_"))
    return "".join(rng.choice(alphabet, size=11))


def write_diving48(out: str, writer, videos_per_class: int) -> None:
    """rgb/<vid_name>.mp4 + Diving48_V2_train.json / _test.json + Diving48_vocab.json."""
    rng = np.random.default_rng([writer.seed, 48])
    train, test = [], []
    n_test = _test_count(videos_per_class, 0.25)
    for label in range(len(writer.classes)):
        for index in range(videos_per_class):
            vid_name = f"{_youtube_id(rng)}_{int(rng.integers(0, 400)):05d}"
            writer.write(label, index, os.path.join(out, "rgb", f"{vid_name}.mp4"))
            entry = {"vid_name": vid_name, "label": label, "start_frame": 0, "end_frame": writer.frames - 1}
            (test if index < n_test else train).append(entry)
    # The vocabulary lists [take-off, somersault, twist, flight] per class; ours: the motion.
    vocab = [[c.motion, f"x{c.speed}", "NoTwis", "FREE"] for c in writer.classes]
    for name, value in (
        ("Diving48_V2_train.json", train),
        ("Diving48_V2_test.json", test),
        ("Diving48_vocab.json", vocab),
    ):
        with open(os.path.join(out, name), "w") as handle:
            json.dump(value, handle)


def write_kinetics400(out: str, writer, videos_per_class: int) -> None:
    """train.csv / validate.csv + train/<label>/<id>_<start:06d>_<end:06d>.mp4 and val/...

    Labels are lower-case words with spaces, as in the original ("figure eight"); the class
    folders use the same string.
    """
    rng = np.random.default_rng([writer.seed, 400])
    header = ["label", "youtube_id", "time_start", "time_end", "split"]
    rows = {"train": [], "val": []}
    n_val = _test_count(videos_per_class, 0.25)
    for label, motion in enumerate(writer.classes):
        name = " ".join(motion.words)
        for index in range(videos_per_class):
            subset = "val" if index < n_val else "train"
            youtube_id, start = _youtube_id(rng), int(rng.integers(0, 300))
            end = start + 10
            writer.write(label, index, os.path.join(out, subset, name, f"{youtube_id}_{start:06d}_{end:06d}.mp4"))
            rows[subset].append([name, youtube_id, start, end, subset])
    for file, subset in (("train.csv", "train"), ("validate.csv", "val")):
        with open(os.path.join(out, file), "w", newline="") as handle:
            table = csv.writer(handle)
            table.writerow(header)
            table.writerows(rows[subset])


def write_folder(out: str, writer, videos_per_class: int) -> None:
    """<class>/<video>.mp4: classes are the sorted folder names, no split file."""
    for label, motion in enumerate(writer.classes):
        name = "_".join(motion.words)
        for index in range(videos_per_class):
            writer.write(label, index, os.path.join(out, name, f"video_{index:03d}.mp4"))
