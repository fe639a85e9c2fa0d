"""The fingerprint of a dataset split as its files stand now: what a manifest was built from.

    stamp = fingerprint.of(listing, tree.known)
    changes = fingerprint.differences(stored, stamp)   # [] when the manifest is current

A manifest stores the fingerprint of the dataset it was built from (Parquet schema metadata,
manifest.py); a command that reads a manifest compares it with the dataset's fingerprint now
and rebuilds the manifest when they differ (catalog.manifests), so videos added, removed or
replaced, or edited split files, never leave a run on a stale list.

Cheap on purpose: it needs only what reading the layout already does (the split and
annotation files, one recursive listing of the root) and file sizes and modification times,
never a video's contents. What it holds:

    videos, absent       listed videos found / not found (a csv list may name missing files)
    bytes                their total size
    newest_mtime_ns      the newest modification time among them (S3: LastModified)
    listing_sha256       a hash of what the split/annotation files say: classes, every listed
                         video's path, label, split and frame range, the videos they miss
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

import pyarrow.fs as pafs

from fame_ray.data.catalog.listing import Listing
from fame_ray.storage import S3_SCHEME, Location

VERSION = 3
"""Bump when the fingerprint's meaning changes, or the manifest's columns: every stored one then
reads as stale and `catalog.ensure` rebuilds its manifests (2: the `decoder` column; 3: B-frame
one-keyframe AVI files decoded by PyAV)."""


def listing_hash(listing: Listing) -> str:
    """sha256 of the listing's content (classes, entries, missing), independent of file order."""
    entries = sorted(
        (subset, e.path, e.label, e.split, e.start_frame, e.end_frame)
        for subset, items in listing.subsets.items()
        for e in items
    )
    content = {"classes": list(listing.classes), "entries": entries, "missing": sorted(listing.missing)}
    return hashlib.sha256(json.dumps(content, separators=(",", ":")).encode("utf-8")).hexdigest()


def _fs_path(uri: str) -> str:
    return uri[len(S3_SCHEME) :] if uri.startswith(S3_SCHEME) else uri


def file_stats(paths: list[str], known: dict[str, pafs.FileInfo], endpoint: str = "") -> list[pafs.FileInfo]:
    """FileInfo of every path: from `known` (a listing already made), else one lookup per
    filesystem for the rest (a csv list may name files anywhere)."""
    infos = {path: known[_fs_path(path)] for path in paths if _fs_path(path) in known}
    rest = [path for path in paths if path not in infos]
    for is_s3 in (False, True):
        group = [path for path in rest if path.startswith(S3_SCHEME) == is_s3]
        if group:
            filesystem = Location(group[0], endpoint).filesystem
            infos.update(zip(group, filesystem.get_file_info([_fs_path(path) for path in group])))
    return [infos[path] for path in paths]


def of(listing: Listing, known: dict[str, pafs.FileInfo], endpoint: str = "") -> dict:
    """The fingerprint of `listing` (see the module docstring); `known`: FileInfo by
    filesystem path from the listing of the root, `endpoint`: the S3 endpoint of its videos."""
    paths = [e.path for items in listing.subsets.values() for e in items]
    found = [info for info in file_stats(paths, known, endpoint) if info.type == pafs.FileType.File]
    return {
        "version": VERSION,
        "videos": len(found),
        "absent": len(paths) - len(found),
        "bytes": sum(info.size or 0 for info in found),
        "newest_mtime_ns": max((info.mtime_ns or 0 for info in found), default=0),
        "listing_sha256": listing_hash(listing),
    }


def _when(mtime_ns: int) -> str:
    return (
        datetime.fromtimestamp(mtime_ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        if mtime_ns
        else "none"
    )


def differences(stored: dict | None, current: dict) -> list[str]:
    """What changed between a manifest's fingerprint and the dataset's, in words ([] = none)."""
    if not stored:
        return ["the manifest holds no dataset fingerprint (built by an older fame-ray)"]
    if stored.get("version") != current["version"]:
        return [f"fingerprint format {stored.get('version')} -> {current['version']}"]
    changes = []
    for key, words in (("videos", "videos found"), ("absent", "listed videos absent"), ("bytes", "bytes of video")):
        if stored.get(key) != current[key]:
            changes.append(f"{stored.get(key)} -> {current[key]} {words}")
    if stored.get("newest_mtime_ns") != current["newest_mtime_ns"]:
        changes.append(
            f"newest video change {_when(stored.get('newest_mtime_ns') or 0)} -> {_when(current['newest_mtime_ns'])}"
        )
    if stored.get("listing_sha256") != current["listing_sha256"]:
        changes.append("the split/annotation files list other videos, labels or classes")
    return changes
