"""The two generic layouts: a folder of class folders, and a `path,label` CSV list.

folder: <root>/<class>/<video>.<mp4|avi|mkv|webm|mov>, classes = sorted folder names. With
<root>/train/<class>/... and <root>/test/ (or val/) the split is the user's; otherwise a
deterministic hash of the path relative to the root puts about 20% of the videos in test.

csv: rows `path,label` (an optional header, an optional third column `split`); label a class
name (classes = sorted names) or a 0-based index; paths relative to the CSV file, absolute,
or s3:// URIs. Without a split column the same hash split as for folders applies.
"""

from __future__ import annotations

import csv
import io
import logging
import posixpath

from fame_ray.data.catalog.listing import Entry, Listing, Tree, hash_split
from fame_ray.errors import UserError
from fame_ray.storage import S3_SCHEME, Location

log = logging.getLogger(__name__)

TEST_FRACTION = 0.2  # share of videos the hash split puts in test (80/20)
SPLIT_DIRS = {"train": "train", "test": "test", "val": "test", "validation": "test"}


def _no_split(dataset: str, split: int) -> None:
    if split != 1:
        raise UserError(f"dataset '{dataset}' has one split, not {split}", "use --split 1")


def read_folder(tree: Tree, split: int) -> Listing:
    """<root>/<class>/<video> (hash split), or <root>/train|test|val/<class>/<video>."""
    _no_split("folder", split)
    top = tree.subdirs()
    given = "train" in top and set(top) <= set(SPLIT_DIRS)
    parts = [(d, SPLIT_DIRS[d]) for d in top] if given else [("", None)]
    classes = sorted({c for part, _ in parts for c in tree.subdirs(part)})
    if not classes:
        raise UserError(
            f"no class folders in {tree.uri()}", "expected <root>/<class>/<video>.mp4 (or <root>/train/<class>/...)"
        )
    index = {name: i for i, name in enumerate(classes)}
    listing = Listing(classes, {"train": [], "test": []}, "")
    for part, subset in parts:
        for relative in tree.videos(part):
            inner = relative[len(part) + 1 :] if part else relative
            if "/" not in inner or inner.split("/")[0] not in index:
                continue  # a video outside any class folder
            target = subset or hash_split(relative, TEST_FRACTION)
            listing.subsets[target].append(Entry(tree.uri(relative), index[inner.split("/")[0]], target))
    how = (
        "split given by train/ and test/ folders"
        if given
        else f"no split given: {int(TEST_FRACTION * 100)}% of videos in test by a hash of the path"
    )
    listing.variant = f"folder: {len(classes)} class folders in {tree.uri()}, {how}"
    return listing


def _csv_rows(text: str, where: str) -> tuple[list[list[str]], bool]:
    """Rows of the list, without a header; whether a `split` column is present."""
    rows = [
        [cell.strip() for cell in row] for row in csv.reader(io.StringIO(text)) if row and any(c.strip() for c in row)
    ]
    has_split = False
    if rows and rows[0][0].lower() == "path":
        has_split = len(rows[0]) > 2 and rows[0][2].lower() == "split"
        rows = rows[1:]
    bad = next((r for r in rows if len(r) < 2 or not r[0] or not r[1]), None)
    if not rows or bad is not None:
        raise UserError(
            f"{where}: expected rows 'path,label'" + (f", got {','.join(bad)}" if bad else ", found none"),
            "write one video per line: path,label",
        )
    return rows, has_split


def _csv_labels(values: list[str], where: str) -> tuple[list[int], list[str]]:
    """0-based labels and class names from label cells that are all indices or all names."""
    if all(v.isdigit() for v in values):
        labels = [int(v) for v in values]
        return labels, [str(i) for i in range(max(labels) + 1)]
    if any(v.isdigit() for v in values):
        raise UserError(f"{where}: labels mix indices and names", "use either class names or 0-based indices")
    classes = sorted(set(values))
    index = {name: i for i, name in enumerate(classes)}
    return [index[v] for v in values], classes


def _resolve(path: str, base: str) -> str:
    """A CSV cell as an absolute path or URI: relative paths are relative to the CSV's folder."""
    if path.startswith(S3_SCHEME) or posixpath.isabs(path):
        return path
    if base.startswith(S3_SCHEME):
        return S3_SCHEME + posixpath.normpath(posixpath.join(base[len(S3_SCHEME) :], path))
    return posixpath.normpath(posixpath.join(base, path))


def read_csv(csv_file: Location, split: int) -> Listing:
    """A `path,label[,split]` list (local or s3://) into a Listing; files are checked when probed."""
    _no_split("csv", split)
    if not csv_file.exists():
        raise UserError(f"the list file {csv_file} does not exist", "pass --csv FILE with rows path,label")
    tree = Tree(csv_file.parent)
    where = csv_file.uri
    rows, has_split = _csv_rows(csv_file.read_bytes().decode("utf-8", errors="replace"), where)
    labels, classes = _csv_labels([r[1] for r in rows], where)
    listing = Listing(classes, {"train": [], "test": []}, "")
    for row, label in zip(rows, labels):
        path = _resolve(row[0], tree.uri())
        split_name = row[2].lower() if has_split and len(row) > 2 and row[2] else hash_split(row[0], TEST_FRACTION)
        if split_name not in SPLIT_DIRS:
            raise UserError(
                f"{where}: split '{row[2]}' of {row[0]} is not train, test or val", "use train, test or val"
            )
        listing.subsets[SPLIT_DIRS[split_name]].append(Entry(path, label, split_name))
    how = "split column" if has_split else f"no split column: {int(TEST_FRACTION * 100)}% in test by a hash of the path"
    listing.variant = (
        f"csv: {len(rows)} rows in {csv_file}, labels as {'indices' if classes[0] == '0' else 'names'}, {how}"
    )
    return listing
