"""Dataset catalog: a dataset root in any supported layout -> one Parquet manifest per subset.

    from fame_ray.data import catalog
    catalog.prepare(cfg.data, cfg.data_location())                # what `fame-ray data prepare` runs
    manifests = catalog.ensure(cfg.data, cfg.data_location())     # {'train': ..., 'test': ...}, fresh
    manifests = catalog.locate(cfg.data, cfg.data_location())     # where they are; reads and writes nothing

Preparing is a step a command asks for (`prepare`, or `ensure` before a run reads the manifests);
asking where the manifests are (`locate`, `class_names`) never prepares anything.

`prepare` reads the layout (layouts.py, generic.py; the variant found is logged), probes every
video in parallel on Ray (probe.py), skips unreadable or missing videos and lists them in a
report beside the manifests, and writes, into `DataConfig.manifest_dir` or
`<root>/.fame-ray/`:

    <key>_split<N>_train.parquet, <key>_split<N>_test.parquet   (manifest.SCHEMA)
    <key>_split<N>_classes.json                                  (class names, index = label)
    <key>_split<N>_skipped.csv                                   (path, reason, subset)

where <key> is the dataset name ('csv_<list file stem>' for a csv list). For Kinetics-400
the 'test' manifest holds the validation set (split column 'val').

Every manifest carries the fingerprint of the dataset it was built from (fingerprint.py):
`ensure` compares it with the dataset as it stands (a listing, no decoding) and rebuilds
the manifests when videos or split files changed since.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import posixpath
import time
from dataclasses import dataclass, field

import pyarrow as pa

from fame_ray import config
from fame_ray.data import manifest
from fame_ray.data.catalog import fingerprint, generic, layouts, probe
from fame_ray.data.catalog.datasets import NUM_CLASSES
from fame_ray.data.catalog.listing import SUBSETS, Listing, Tree
from fame_ray.errors import UserError
from fame_ray.storage import Location, parse_json

log = logging.getLogger(__name__)

READERS = {
    "ucf101": layouts.read_ucf101,
    "synthetic": layouts.read_ucf101,  # the built-in dataset is a UCF101-layout folder
    "hmdb51": layouts.read_hmdb51,
    "diving48": layouts.read_diving48,
    "kinetics400": layouts.read_kinetics400,
    "folder": generic.read_folder,
}


@dataclass
class PrepareResult:
    """What `prepare` wrote, and what it found."""

    dataset: str
    split: int
    variant: str
    class_names: list[str]
    manifests: dict[str, Location]
    """'train' / 'test' -> manifest."""
    counts: dict[str, int]
    """'train' / 'test' -> videos in the manifest."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(path, reason) of every video left out."""
    report: Location | None = None
    """The skipped-videos report."""
    classes_file: Location | None = None
    seconds: float = 0.0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _key(data: config.DataConfig) -> str:
    """Manifest file prefix: the dataset name, or csv_<stem> so two lists never collide."""
    if data.dataset == "csv":
        return "csv_" + posixpath.splitext(posixpath.basename(data.csv_path))[0]
    return data.dataset


def manifest_dir(data: config.DataConfig, source: Location) -> Location:
    """Where the manifests live: data.manifest_dir, or .fame-ray/ in the root (csv: beside the list)."""
    if data.manifest_dir:
        return Location.parse(data.manifest_dir, source.endpoint)
    return (source.parent if data.dataset == "csv" else source) / ".fame-ray"


def _file(data: config.DataConfig, folder: Location, suffix: str) -> Location:
    return folder / f"{_key(data)}_split{data.split}_{suffix}"


def scan(data: config.DataConfig, source: Location) -> tuple[Listing, dict]:
    """(the Listing, the dataset's fingerprint now): the layout's files and a listing of the
    videos' sizes and times, no decoding."""
    if data.dataset == "csv":
        listing, known = generic.read_csv(source, data.split), {}
    else:
        tree = Tree(source)
        if not tree.is_dir():
            name = config.DATASET_DIRS.get(data.dataset, data.dataset)
            raise UserError(
                f"data root {source} does not exist (dataset '{data.dataset}')",
                (
                    f"pass --data-root DIR holding the {name} layout (README 'Datasets'), or put it at "
                    f"{config.data_home()}/{name}"
                ),
            )
        listing, known = READERS[data.dataset](tree, data.split), tree.known
    _check_classes(data.dataset, listing)
    log.info("found %s", listing.variant)
    return listing, fingerprint.of(listing, known, source.endpoint)


def _check_classes(dataset: str, listing: Listing) -> None:
    """Labels within the class list; a class count other than the official one is only noted
    (synthetic copies in official layouts have fewer classes, partial copies may too)."""
    labels = [e.label for entries in listing.subsets.values() for e in entries]
    if labels and not 0 <= min(labels) <= max(labels) < len(listing.classes):
        raise UserError(f"{dataset}: labels outside 0..{len(listing.classes) - 1}", "check the split files")
    official = NUM_CLASSES.get(dataset)
    if official and len(listing.classes) != official:
        log.info(
            "%s lists %d classes (the official release has %d): a subset or synthetic copy",
            dataset,
            len(listing.classes),
            official,
        )


def _tables(listing: Listing, source: Location) -> tuple[dict[str, pa.Table], list[tuple[str, str, str]]]:
    """Probe every listed video; manifest tables per subset and (path, reason, subset) skipped."""
    entries = [(subset, e) for subset in SUBSETS for e in listing.subsets[subset]]
    results = probe.probe_all([source.at(e.path) for _, e in entries])
    rows = {subset: [] for subset in SUBSETS}
    skipped = [(path, reason, "") for path, reason in listing.missing]
    for (subset, entry), result in zip(entries, results):
        if isinstance(result, str):
            skipped.append((entry.path, result, subset))
            continue
        end = result["num_frames"] if entry.end_frame < 0 else min(entry.end_frame, result["num_frames"])
        start = min(max(entry.start_frame, 0), max(end - 1, 0))
        rows[subset].append(
            {
                "path": entry.path,
                "label": entry.label,
                "label_name": listing.classes[entry.label],
                "split": entry.split,
                **result,
                "start_frame": start,
                "end_frame": end,
            }
        )
    tables = {subset: pa.Table.from_pylist(rows[subset], schema=manifest.SCHEMA) for subset in SUBSETS}
    return tables, skipped


def _write_report(location: Location, skipped: list[tuple[str, str, str]]) -> None:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["path", "reason", "subset"])
    writer.writerows(skipped)
    location.write_text(text.getvalue())


def prepare(data: config.DataConfig, source: Location, out_dir: Location | None = None) -> PrepareResult:
    """Read the layout, probe every video on Ray, write manifests, class names and skip report.

    Raises UserError when the layout is not found, files disagree, or no video is left.
    """
    started = time.time()
    listing, stamp = scan(data, source)
    return _build(data, source, out_dir or manifest_dir(data, source), listing, stamp, started)


def _build(
    data: config.DataConfig, source: Location, folder: Location, listing: Listing, stamp: dict, started: float
) -> PrepareResult:
    """Probe the listed videos and write manifests (with the fingerprint), class names, report."""
    tables, skipped = _tables(listing, source)
    if tables["train"].num_rows == 0:
        reasons = sorted({reason for _, reason, _ in skipped})[:3]
        raise UserError(
            f"no readable training videos in {source} ({len(skipped)} skipped: {'; '.join(reasons) or 'none listed'})",
            "check the data root and the video files",
        )
    if tables["test"].num_rows == 0:
        log.warning("the test subset of %s split %d is empty", data.dataset, data.split)
    report, classes_file = _file(data, folder, "skipped.csv"), _file(data, folder, "classes.json")
    result = PrepareResult(
        data.dataset,
        data.split,
        listing.variant,
        listing.classes,
        {},
        {},
        [(p, r) for p, r, _ in skipped],
        report,
        classes_file,
    )
    _write_report(report, skipped)
    classes_file.write_text(json.dumps(listing.classes, indent=1))
    for subset in SUBSETS:
        location = _file(data, folder, f"{subset}.parquet")
        result.manifests[subset] = location
        result.counts[subset] = tables[subset].num_rows
        manifest.write(tables[subset], location, stamp)
    if skipped:
        log.warning("skipped %d videos (listed in %s)", len(skipped), result.report)
    result.seconds = time.time() - started
    log.info(
        "%s split %d: %d train / %d test videos, %d classes, manifests in %s (%.1fs)",
        data.dataset,
        data.split,
        result.counts["train"],
        result.counts["test"],
        result.num_classes,
        folder,
        result.seconds,
    )
    return result


def locate(data: config.DataConfig, source: Location) -> dict[str, Location]:
    """Where the 'train' and 'test' manifests of data.split are (or would be): no I/O."""
    folder = manifest_dir(data, source)
    return {subset: _file(data, folder, f"{subset}.parquet") for subset in SUBSETS}


def ensure(data: config.DataConfig, source: Location) -> dict[str, Location]:
    """The 'train' and 'test' manifests of data.split, prepared if absent and rebuilt (with a
    warning that says what changed) if the dataset's fingerprint differs from theirs: the step a
    command takes before its run reads them."""
    locations = locate(data, source)
    classes = _file(data, manifest_dir(data, source), "classes.json")
    if not (all(location.exists() for location in locations.values()) and classes.exists()):
        prepare(data, source)
        return locations
    started = time.time()
    listing, stamp = scan(data, source)
    stored = [manifest.read_fingerprint(location) for location in locations.values()]
    changes = sorted(
        {change for fingerprint_now in stored for change in fingerprint.differences(fingerprint_now, stamp)}
    )
    if changes:
        log.warning(
            "%s split %d changed since its manifests in %s were built (%s): rebuilding them",
            data.dataset,
            data.split,
            manifest_dir(data, source),
            "; ".join(changes),
        )
        _build(data, source, manifest_dir(data, source), listing, stamp, started)
    return locations


def class_names(data: config.DataConfig, source: Location) -> list[str]:
    """Class names (index = label) from the classes file that `prepare` wrote."""
    location = _file(data, manifest_dir(data, source), "classes.json")
    if not location.exists():
        raise UserError(
            f"{data.dataset} split {data.split} has no manifests in {location.parent} yet",
            f"run `fame-ray data prepare --dataset {data.dataset}` (with its --data-root) first",
        )
    try:
        names = parse_json(location.read_bytes())
    except ValueError:
        names = None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise UserError(
            f"{location} is not a list of class names",
            f"run `fame-ray data prepare --dataset {data.dataset}` again to rewrite it",
        )
    return names
