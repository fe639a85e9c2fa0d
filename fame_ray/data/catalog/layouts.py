"""Readers of the official dataset layouts (docs/datasets.md) into a `Listing`, no probing.

Each `read_<dataset>(tree, split)` finds the split/annotation files and the videos where the
publisher puts them or where a known variant does, checks that they agree with each other,
and says in `Listing.variant` what it found. Labels become 0-based here, once.
"""

from __future__ import annotations

import csv
import io
import json
import math
import posixpath

from fame_ray.data.catalog.listing import Entry, Listing, Tree, first_match, join
from fame_ray.errors import UserError, printable
from fame_ray.storage import parse_json


def _lines(text: str) -> list[str]:
    """Non-empty lines, CRLF or LF (the UCF101 files end lines with CRLF)."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def _need_split(dataset: str, split: int, available: tuple[int, ...]) -> None:
    if split not in available:
        raise UserError(
            f"{dataset} has split(s) {', '.join(map(str, available))}, not {split}", f"use --split {available[0]}"
        )


def _require(tree: Tree, relative: str, what: str, fix: str) -> str:
    if not tree.is_file(relative):
        raise UserError(f"missing {what}: expected {tree.uri(relative)}", fix)
    return tree.read_text(relative)


def _entries(tree: Tree, videos_dir: str, rows: list[tuple[str, int, str]], listed_in: str, listing: Listing) -> None:
    """Add (relative video path, label, split) rows whose file exists; the rest go to `missing`.

    A file whose name differs only by case is accepted (UCF101's 'HandStandPushups').
    """
    existing = {f.lower(): f for f in tree.files(videos_dir)}
    for relative, label, split in rows:
        found = existing.get(join(videos_dir, relative).lower())
        subset = "train" if split == "train" else "test"
        if found is None:
            listing.missing.append((tree.uri(join(videos_dir, relative)), f"missing file (listed in {listed_in})"))
        else:
            listing.subsets[subset].append(Entry(tree.uri(found), label, split))


def _ucf101_classes(text: str, where: str) -> list[str]:
    classes = []
    for line in _lines(text):
        index, _, name = line.partition(" ")
        if not index.isdigit() or int(index) != len(classes) + 1 or not name.strip():
            raise UserError(
                f"{where}: line '{line}' is not '<index> <ClassName>' with indices 1, 2, 3...",
                "use the classInd.txt of ucfTrainTestlist",
            )
        classes.append(name.strip())
    if not classes:
        raise UserError(f"{where} lists no classes", "use the classInd.txt of ucfTrainTestlist")
    return classes


def read_ucf101(tree: Tree, split: int) -> Listing:
    """UCF-101/<Class>/*.avi (or videos/, or class folders in the root) + ucfTrainTestlist/.

    Split N: train = trainlist0N (its 1-based labels checked against classInd), test =
    testlist0N (labels from the class folder through classInd).
    """
    _need_split("UCF101", split, (1, 2, 3))
    fix = "unpack UCF101TrainTestSplits-RecognitionTask.zip into the dataset folder"
    lists = first_match(
        ["ucfTrainTestlist", "../ucfTrainTestlist", ""], lambda d: tree.is_file(join(d, "classInd.txt"))
    )
    if lists is None:
        raise UserError(f"no ucfTrainTestlist/classInd.txt in {tree.uri()} or beside it", fix)
    classes = _ucf101_classes(tree.read_text(join(lists, "classInd.txt")), tree.uri(join(lists, "classInd.txt")))
    index = {name.lower(): i for i, name in enumerate(classes)}
    videos = first_match(["UCF-101", "videos", ""], lambda d: any(tree.is_dir(join(d, c)) for c in classes[:3]))
    if videos is None:
        raise UserError(
            (
                f"no UCF101 class folders (e.g. {classes[0]}/) in {tree.uri()}, {tree.uri('UCF-101')} or "
                f"{tree.uri('videos')}"
            ),
            "point --data-root at the folder holding UCF-101/",
        )
    rows = []
    for subset in ("train", "test"):
        name = join(lists, f"{subset}list0{split}.txt")
        for line in _lines(_require(tree, name, f"UCF101 split file {subset}list0{split}.txt", fix)):
            path, _, given = line.partition(" ")
            label = index.get(path.split("/")[0].lower())
            if label is None:
                raise UserError(
                    f"{tree.uri(name)}: class of '{path}' is not in classInd.txt",
                    "use split files and classInd.txt from the same ucfTrainTestlist",
                )
            if given and (not given.strip().isdigit() or int(given) != label + 1):
                raise UserError(
                    f"{tree.uri(name)}: '{line}' has label {given}, classInd.txt says {label + 1}",
                    "use split files and classInd.txt from the same ucfTrainTestlist",
                )
            rows.append((path, label, subset))
    listing = Listing(
        classes, {"train": [], "test": []}, f"ucf101: videos in {tree.uri(videos)}, split files in {tree.uri(lists)}"
    )
    _entries(tree, videos, rows, f"ucfTrainTestlist split {split}", listing)
    return listing


def read_hmdb51(tree: Tree, split: int) -> Listing:
    """<class>/*.avi (or videos/, hmdb51_org/) + testTrainMulti_7030_splits/<class>_test_splitN.txt.

    Flags: 1 = train, 2 = test, 0 = not in this split. Classes: sorted class names.
    """
    _need_split("HMDB51", split, (1, 2, 3))
    fix = "unpack test_train_splits.rar into the dataset folder"
    suffix = f"_test_split{split}.txt"
    splits = first_match(["testTrainMulti_7030_splits", "../testTrainMulti_7030_splits"], tree.is_dir)
    names = [posixpath.basename(f) for f in tree.files(splits)] if splits is not None else []
    classes = sorted(n[: -len(suffix)] for n in names if n.endswith(suffix))
    if splits is None or not classes:
        raise UserError(f"no HMDB51 split files *{suffix} in {tree.uri('testTrainMulti_7030_splits')}", fix)
    videos = first_match(["", "videos", "hmdb51_org"], lambda d: any(tree.is_dir(join(d, c)) for c in classes[:3]))
    if videos is None:
        raise UserError(
            (
                f"no HMDB51 class folders (e.g. {classes[0]}/) in {tree.uri()}, {tree.uri('videos')} or "
                f"{tree.uri('hmdb51_org')}"
            ),
            "point --data-root at the folder holding the class folders",
        )
    rows = []
    for label, name in enumerate(classes):
        for line in _lines(tree.read_text(join(splits, name + suffix))):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise UserError(
                    f"{tree.uri(join(splits, name + suffix))}: line '{line}' is not '<video>.avi 0|1|2'", fix
                )
            if parts[1] != "0":
                rows.append((f"{name}/{parts[0]}", label, "train" if parts[1] == "1" else "test"))
    listing = Listing(
        classes, {"train": [], "test": []}, f"hmdb51: videos in {tree.uri(videos)}, split files in {tree.uri(splits)}"
    )
    _entries(tree, videos, rows, f"{splits}/*{suffix}", listing)
    return listing


def _json_file(tree: Tree, relative: str, fix: str):
    """A JSON annotation file, parsed; a UserError that names the file and the line of the fault."""
    try:
        return parse_json(tree.read_text(relative))
    except json.JSONDecodeError as error:
        raise UserError(f"{tree.uri(relative)}, line {error.lineno}: not valid JSON ({error.msg})", fix) from None
    except ValueError as error:
        raise UserError(f"{tree.uri(relative)}: not an annotation file ({error})", fix) from None


def _whole(value, where: str, what: str, fix: str) -> int:
    """A non-negative whole number from an annotation (0, 17 or "17"), else a UserError naming `where`."""
    number = value
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value)
    if isinstance(number, bool) or not (isinstance(number, int) or (isinstance(number, float) and number.is_integer())):
        raise UserError(f"{where}: {what} {printable(repr(value), 40)} is not a whole number", fix)
    if number < 0:
        raise UserError(f"{where}: {what} {number} is negative", fix)
    return int(number)


def _diving48_item(item, where: str, fix: str) -> tuple[str, int, int, int]:
    """(vid_name, label, start_frame, one past end_frame or -1) of one annotation item."""
    if not isinstance(item, dict) or not isinstance(item.get("vid_name"), str) or "label" not in item:
        raise UserError(f"{where}: not an object with vid_name and label", fix)
    label = _whole(item["label"], where, "label", fix)
    start = _whole(item.get("start_frame", 0), where, "start_frame", fix)
    # end_frame is the last frame of the dive, inclusive; the manifest stores one past it.
    end = _whole(item["end_frame"], where, "end_frame", fix) + 1 if "end_frame" in item else -1
    return item["vid_name"], label, start, end


def _diving48_classes(tree: Tree, annotations: str, labels: list[int]) -> list[str]:
    vocab_file = first_match(
        [join(annotations, "Diving48_vocab.json"), join(annotations, "Diving48_V2_vocab.json")], tree.is_file
    )
    if vocab_file is None:
        return [f"class_{i}" for i in range(max(labels) + 1)]
    fix = "use the vocabulary file of the V2 release"
    vocab = _json_file(tree, vocab_file, fix)
    if not isinstance(vocab, list):
        raise UserError(f"{tree.uri(vocab_file)}: not a JSON list of class names", fix)
    names = [" ".join(map(str, v)) if isinstance(v, list) else str(v) for v in vocab]
    if max(labels) >= len(names):
        raise UserError(
            f"Diving48 annotations use label {max(labels)} but {tree.uri(vocab_file)} has {len(names)} classes",
            "use annotations and vocabulary of the same release (V2)",
        )
    return names


def _diving48_annotations(tree: Tree, annotations: str) -> dict[str, list[tuple[str, int, int, int]]]:
    """Subset -> (vid_name, label, start, end) of every item of Diving48_V2_<subset>.json."""
    fix = "download the V2 annotations"
    subsets = {}
    for subset in ("train", "test"):
        name = join(annotations, f"Diving48_V2_{subset}.json")
        _require(tree, name, f"Diving48 annotation file Diving48_V2_{subset}.json", fix)
        items = _json_file(tree, name, fix)
        if not isinstance(items, list):
            raise UserError(f"{tree.uri(name)}: not a JSON list of annotations", fix)
        subsets[subset] = [_diving48_item(item, f"{tree.uri(name)}, item {i + 1}", fix) for i, item in enumerate(items)]
    return subsets


def read_diving48(tree: Tree, split: int) -> Listing:
    """rgb/<vid_name>.mp4 (or videos/) + Diving48_V2_train/test.json (in the root or annotations/)."""
    _need_split("Diving48", split, (1,))
    annotations = first_match(["", "annotations"], lambda d: tree.is_file(join(d, "Diving48_V2_train.json")))
    if annotations is None:
        raise UserError(
            f"no Diving48_V2_train.json in {tree.uri()} or {tree.uri('annotations')}",
            "download the V2 annotations into the dataset folder",
        )
    subsets = _diving48_annotations(tree, annotations)
    videos = first_match(["rgb", "videos", ""], lambda d: bool(d) and tree.is_dir(d)) or ""
    labels = [label for items in subsets.values() for _, label, _, _ in items]
    if not labels:
        raise UserError(
            f"the Diving48 annotations in {tree.uri(annotations)} list no videos", "download the V2 annotations"
        )
    listing = Listing(
        _diving48_classes(tree, annotations, labels),
        {"train": [], "test": []},
        f"diving48: videos in {tree.uri(videos)}, annotations in {tree.uri(annotations)}",
    )
    existing = {posixpath.splitext(posixpath.basename(f))[0]: f for f in tree.videos(videos)}
    for subset, items in subsets.items():
        for vid_name, label, start, end in items:
            found = existing.get(vid_name)
            if found is None:
                listing.missing.append(
                    (tree.uri(join(videos, vid_name + ".mp4")), f"missing file (listed in Diving48_V2_{subset}.json)")
                )
                continue
            listing.subsets[subset].append(Entry(tree.uri(found), label, subset, start, end))
    return listing


def _seconds(value, where: str, column: str) -> int:
    """A time_start / time_end cell as whole seconds, else a UserError naming the file and line."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise UserError(
            f"{where}: {column} {printable(repr(value), 40)} is not a time in seconds",
            "use the Kinetics-400 annotation CSVs",
        )
    return int(seconds)


def _kinetics_rows(text: str, where: str) -> list[dict]:
    """The rows of a Kinetics annotation CSV, each with the clip's file stem under 'stem'."""
    reader = csv.DictReader(io.StringIO(text))
    needed = {"label", "youtube_id", "time_start", "time_end"}
    if not needed <= set(reader.fieldnames or []):
        raise UserError(
            f"{where} has no rows with columns label,youtube_id,time_start,time_end",
            "use the Kinetics-400 annotation CSVs",
        )
    rows = []
    for row in reader:
        at = f"{where}, line {reader.line_num}"
        if not row.get("label") or not row.get("youtube_id"):
            raise UserError(f"{at}: no label or youtube_id", "use the Kinetics-400 annotation CSVs")
        start, end = _seconds(row.get("time_start"), at, "time_start"), _seconds(row.get("time_end"), at, "time_end")
        rows.append({**row, "stem": f"{row['youtube_id']}_{start:06d}_{end:06d}"})
    if not rows:
        raise UserError(f"{where} has no rows", "use the Kinetics-400 annotation CSVs")
    return rows


def read_kinetics400(tree: Tree, split: int) -> Listing:
    """train.csv / validate.csv + train/<label>/<id>_<start:06d>_<end:06d>.mp4 and val/ (or validate/).

    Class folders may use the CSV's label ('air drumming') or underscores ('air_drumming'), or
    be absent (all clips in train/): clips are matched by file name. Classes: sorted labels of
    train.csv. Missing clips are listed and skipped.
    """
    _need_split("Kinetics-400", split, (1,))
    annotations = first_match(["", "annotations"], lambda d: tree.is_file(join(d, "train.csv")))
    if annotations is None:
        raise UserError(
            f"no train.csv in {tree.uri()} or {tree.uri('annotations')}",
            "put the Kinetics-400 annotation CSVs into the dataset folder",
        )
    test_csv = first_match([join(annotations, "validate.csv"), join(annotations, "val.csv")], tree.is_file)
    if test_csv is None:
        raise UserError(
            f"missing Kinetics-400 validate.csv: expected {tree.uri(join(annotations, 'validate.csv'))}",
            "put the annotation CSVs into the dataset folder",
        )
    train_rows = _kinetics_rows(
        tree.read_text(join(annotations, "train.csv")), tree.uri(join(annotations, "train.csv"))
    )
    test_rows = _kinetics_rows(tree.read_text(test_csv), tree.uri(test_csv))
    classes = sorted({r["label"] for r in train_rows})
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted({r["label"] for r in test_rows} - set(index))
    if unknown:
        raise UserError(
            f"{tree.uri(test_csv)} has labels missing from train.csv: {', '.join(unknown[:3])}",
            "use CSVs of the same release",
        )
    listing = Listing(classes, {"train": [], "test": []}, "")
    found_dirs = {}
    for subset, rows, candidates in (
        ("train", train_rows, ["train"]),
        ("val", test_rows, ["val", "validate", "valid"]),
    ):
        videos = first_match(candidates, tree.is_dir)
        found_dirs[subset] = videos
        existing = {posixpath.splitext(posixpath.basename(f))[0]: f for f in (tree.videos(videos) if videos else [])}
        for row in rows:
            stem = row["stem"]
            path = existing.get(stem)
            if path is None:
                listing.missing.append(
                    (
                        tree.uri(join(videos or candidates[0], row["label"], stem + ".mp4")),
                        f"missing file (listed in {subset} csv)",
                    )
                )
            else:
                listing.subsets["train" if subset == "train" else "test"].append(
                    Entry(tree.uri(path), index[row["label"]], subset)
                )
    listing.variant = (
        f"kinetics400: clips in {tree.uri(found_dirs['train'] or 'train')} and "
        f"{tree.uri(found_dirs['val'] or 'val')}, {_folder_style(listing)}"
    )
    return listing


def _folder_style(listing: Listing) -> str:
    """How the class folders of a Kinetics copy are named, in words."""
    parents = {posixpath.basename(posixpath.dirname(e.path)) for entries in listing.subsets.values() for e in entries}
    if parents <= {"train", "val", "validate", "valid"}:
        return "no class folders (clips directly in the subset folders)"
    if any(" " in p for p in parents):
        return "class folders named as in the CSV (spaces)"
    if any("_" in p for p in parents):
        return "class folders with underscores for spaces"
    return "class folders named as in the CSV"
