"""The validation split: videos held out from a training split, so that a sweep can choose its
winner without looking at the test split.

    val = validation_rows(train_table, fraction=0.1, seed=0)    # bool per row: held out
    split = write_split(train_manifest, out_dir, fraction=0.1, seed=0)

Stratified per class: each class gives `fraction` of its training videos (rounded, at least one
when the class has two or more, never all of them). Seeded and independent of the order of the
manifest's rows and of where the dataset lives: the videos of a class are ordered by file name
and shuffled by a generator seeded with (seed, class name), so every rerun, on any machine,
holds out the same videos. Carved from the training split only, so it is disjoint from the test
split by construction, and from the videos trained on by definition.

UCF101 names its videos v_<class>_g<group>_c<clip>: the clips of one group come from one long
video (the same actor and scene), and the official splits keep groups whole. The validation split
does too, where every video of a class carries a group: otherwise a validation clip's near-copy
sits in the training videos and the validation accuracy rewards remembering scenes, the bias FAME
removes. Whole groups are taken while each brings the count closer to the class's share; a class
whose groups are all too large for its share (a tiny dataset) gives single videos instead.
"""

from __future__ import annotations

import posixpath
import re
import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from fame_ray.data import manifest
from fame_ray.storage import Location

# UCF101's file names: v_ApplyEyeMakeup_g08_c01.avi -> group "08".
GROUP = re.compile(r"_g(\d+)_c\d+\.[^.]+$")


def _groups(names: list[str]) -> list[str]:
    """Each video's group: UCF101's g<NN> when every name carries one, else the name itself."""
    found = [GROUP.search(name) for name in names]
    if all(found):
        return [match.group(1) for match in found]
    return list(names)


def _class_holdout(names: list[str], fraction: float, seed: int, class_name: str) -> set[str]:
    """The file names held out of one class's training videos."""
    if len(names) < 2 or fraction <= 0:
        return set()
    target = min(max(1, round(fraction * len(names))), len(names) - 1)
    groups = _groups(names)
    members: dict[str, list[str]] = {}
    for name, group in zip(names, groups):
        members.setdefault(group, []).append(name)
    keys = sorted(members)
    rng = np.random.default_rng([seed, zlib.crc32(class_name.encode("utf-8"))])
    held: list[str] = []
    for index in rng.permutation(len(keys)):
        more = len(held) + len(members[keys[index]])
        # Whole groups, as long as each brings the count closer to the class's share.
        if abs(more - target) < abs(len(held) - target) and more < len(names):
            held += members[keys[index]]
    if not held:  # every group is larger than the class's share: hold out single videos instead
        held = [sorted(names)[index] for index in rng.permutation(len(names))[:target]]
    return set(held)


def validation_rows(table: pa.Table, fraction: float, seed: int) -> np.ndarray:
    """Bool per row of a training manifest: True = held out for validation (see the module
    docstring); all False when `fraction` is 0."""
    names = [posixpath.basename(path) for path in table["path"].to_pylist()]
    labels = table["label"].to_pylist()
    label_names = table["label_name"].to_pylist()
    held = np.zeros(table.num_rows, dtype=bool)
    for label in sorted(set(labels)):
        rows = [row for row, value in enumerate(labels) if value == label]
        rows.sort(key=lambda row: names[row])
        chosen = _class_holdout([names[row] for row in rows], fraction, seed, str(label_names[rows[0]]))
        for row in rows:
            held[row] = names[row] in chosen
    return held


@dataclass(frozen=True)
class Split:
    """The training videos a run trains on and those it validates on, as manifests."""

    train: Location
    val: Location
    train_videos: int
    val_videos: int
    fraction: float
    seed: int

    def describe(self) -> str:
        total = self.train_videos + self.val_videos
        return (
            f"{self.val_videos} of the {total} training videos ({self.val_videos / max(total, 1):.1%}; "
            f"val_fraction {self.fraction:g} per class, seed {self.seed}), disjoint from the test split"
        )


def write_split(train_manifest: Location, out_dir: Location, fraction: float, seed: int) -> Split:
    """Write `train.parquet` (the videos trained on) and `val.parquet` (those held out) into
    `out_dir`, with the training manifest's dataset fingerprint; the same files on every rerun."""
    table = manifest.read(train_manifest)
    held = validation_rows(table, fraction, seed)
    fingerprint = manifest.read_fingerprint(train_manifest)
    train_location, val_location = out_dir / "train.parquet", out_dir / "val.parquet"
    val = table.filter(pa.array(held))
    val = val.set_column(val.schema.get_field_index("split"), "split", pa.array(["val"] * val.num_rows, pa.string()))
    manifest.write(table.filter(pa.array(~held)), train_location, fingerprint)
    manifest.write(val, val_location, fingerprint)
    return Split(train_location, val_location, int((~held).sum()), int(held.sum()), fraction, seed)
