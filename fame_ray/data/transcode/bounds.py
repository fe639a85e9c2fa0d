"""What a transcoded copy may read and write: the files of the data root (never what a symbolic
link inside it points at elsewhere), a copy that neither overlaps the root nor holds links, and
the permissions of what it writes (never wider than the source's).

    files = source_files(source)          # relative path -> size; files.refused: path -> reason
    check_locations(source, out)          # resolved paths: a link cannot hide an overlap
    mode = file_mode(source / relative)   # the source file's permission bits, under the umask

A dataset is often a tree of links into a shared store. A link that stays inside the root is
read like the file it names; one that leaves it (to another user's files, to /etc) is refused
and listed as skipped with its reason, as are broken links and links to folders (never
followed, so a link to `..` cannot send the walk in circles). S3 has no links and no permission
bits: its listing is taken as it is, and a local copy of an S3 root gets the umask's modes.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass, field

import pyarrow.fs as pafs

from fame_ray.data.transcode.encode import EncodeSettings
from fame_ray.errors import UserError, printable
from fame_ray.storage import Location, parse_json


@dataclass
class SourceFiles:
    """The files of a data root that a copy may read, and the entries it refuses."""

    sizes: dict[str, int]
    """Relative path -> size of every regular file (or link to one inside the root)."""
    refused: dict[str, str] = field(default_factory=dict)
    """Relative path -> why it is not read (a link that leaves the root, a broken link...)."""


def resolved(location: Location) -> str:
    """The location with every symbolic link resolved (local; an s3:// URI as it is)."""
    return location.uri if location.is_s3 else os.path.realpath(location.uri)


def _inside(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def _walk_local(root: str) -> SourceFiles:
    """Every file below `root`, links checked against the resolved root; folders that are links
    are not entered."""
    real_root = os.path.realpath(root)
    found = SourceFiles({})
    for folder, folders, files in os.walk(root, followlinks=False):
        linked = [name for name in folders if os.path.islink(os.path.join(folder, name))]
        for name in linked + files:
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, root).replace(os.sep, "/")
            target = os.path.realpath(path)
            if not _inside(target, real_root):
                found.refused[relative] = "a symbolic link that leaves the data root (not read)"
            elif not os.path.exists(path):
                found.refused[relative] = "a broken symbolic link"
            elif os.path.isdir(path):
                found.refused[relative] = "a symbolic link to a folder (not followed)"
            elif stat.S_ISREG(os.stat(path).st_mode):
                found.sizes[relative] = os.stat(path).st_size
            else:
                found.refused[relative] = "not a regular file (a device, a pipe or a socket)"
    return found


def source_files(source: Location) -> SourceFiles:
    """The files a copy of `source` reads: for a local root, walked with every link checked;
    for S3, the listing (no links there)."""
    if not source.is_s3:
        return _walk_local(source.uri)
    selector = pafs.FileSelector(source.path, recursive=True, allow_not_found=True)
    prefix = len(source.path.rstrip("/")) + 1
    infos = source.filesystem.get_file_info(selector)
    return SourceFiles({info.path[prefix:]: info.size for info in infos if info.type == pafs.FileType.File})


def fingerprint(files: SourceFiles, videos: list[str]) -> dict:
    """What the copy is made from: the count, total size and a hash of (path, size) of the
    root's videos. Another root, or the same path holding other files, has another."""
    listed = sorted((video, files.sizes[video]) for video in videos)
    digest = hashlib.sha256(json.dumps(listed, separators=(",", ":")).encode("utf-8")).hexdigest()
    return {"videos": len(listed), "bytes": sum(size for _, size in listed), "sha256": digest}


def check_locations(source: Location, out: Location) -> None:
    """The root must be a folder; the copy a folder (or nothing yet) neither inside the root
    nor around it once links are resolved, with no link inside it (a link planted in a copy
    would send the writes elsewhere)."""
    if not source.is_dir():
        raise UserError(
            f"data root {source} does not exist or is not a folder",
            "pass --data-root DIR holding the dataset's official layout",
        )
    real_source, real_out = resolved(source), resolved(out)
    if _inside(real_out, real_source) or _inside(real_source, real_out):
        shown = "" if (real_out, real_source) == (out.uri, source.uri) else f" (resolved: {real_out} and {real_source})"
        raise UserError(
            f"--out {out} overlaps the data root {source}{shown}",
            "write the copy beside the dataset, e.g. --out <root>-128",
        )
    if not out.is_s3:
        _check_local_out(out.uri)
    out.check_writable_root()


def _check_local_out(out: str) -> None:
    if os.path.lexists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out} is a file, not a folder", "give a new folder for the copy")
    parent = os.path.dirname(out)
    while not os.path.isdir(parent):
        if os.path.lexists(parent):
            raise UserError(f"--out {out}: {parent} is a file", "give a new folder for the copy")
        parent = os.path.dirname(parent)
    if not os.access(out if os.path.isdir(out) else parent, os.W_OK | os.X_OK):
        raise UserError(f"--out {out} is not writable", "pick a folder you can write to")
    for folder, folders, files in os.walk(out, followlinks=False):
        for name in folders + files:
            if os.path.islink(os.path.join(folder, name)):
                raise UserError(
                    f"--out {out} holds a symbolic link ({os.path.join(folder, name)})",
                    "a copy this command wrote holds none: pick a new folder",
                )


def umask() -> int:
    """This process's umask (read by setting it and putting it back at once)."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def file_mode(source: Location, mask: int) -> int | None:
    """Permission bits for the copy of a file: the source's, under the umask `mask`; None for
    an S3 source (the umask's default then applies)."""
    if source.is_s3:
        return None
    return stat.S_IMODE(os.stat(source.uri).st_mode) & ~mask


def default_mode(mask: int) -> int:
    """The mode of a new file under the umask `mask` (for what the copy writes of its own)."""
    return 0o666 & ~mask


def make_folders(source: Location, out: Location, relatives: list[str], mask: int) -> None:
    """Create the copy's folders before any file goes in, each no more open than the source
    folder it mirrors (the owner keeps rwx: the copy must stay writable for a rerun)."""
    if out.is_s3:
        return
    folders = set()
    for relative in relatives:
        parts = relative.split("/")[:-1]
        folders.update("/".join(parts[:depth]) for depth in range(len(parts) + 1))
    for folder in sorted(folders):  # a folder sorts before the folders inside it
        target = out.join(folder).uri
        mirrored = 0o777 if source.is_s3 else stat.S_IMODE(os.stat(source.join(folder).uri).st_mode)
        wanted = (mirrored | 0o700) & ~mask
        if os.path.isdir(target):  # made by an earlier run, or the empty folder given: only ever narrowed
            wanted &= stat.S_IMODE(os.stat(target).st_mode) | 0o700
        os.makedirs(target, exist_ok=True)
        os.chmod(target, wanted)


def check_resume(out: Location, record: Location | None, holds_files: bool, header: dict) -> None:
    """`out` is new, or a copy with a record (`record`) made with the same settings from the same
    source, holding the videos it held: a copy's videos would otherwise be stale ones of another
    root, or made with other settings."""
    if record is None:
        if holds_files:
            raise UserError(
                f"--out {out} holds files and no transcode record", "pick a new or empty folder for the copy"
            )
        return
    try:
        recorded = parse_json(record.read_bytes())
        settings = recorded.get("settings")
    except (ValueError, AttributeError):
        raise UserError(f"{record} is damaged", "remove it (the videos stay resumable) or pick another --out") from None
    if settings != header["settings"]:
        raise UserError(
            f"--out {out} holds a copy made with {_described(settings)}",
            "rerun with the same flags to resume it, or pick another --out",
        )
    source = recorded.get("source")
    if isinstance(source, str) and not source.startswith("s3://"):
        source = os.path.realpath(source)  # a record written before sources were resolved
    if source != header["source"]:
        raise UserError(
            f"--out {out} is a copy of {printable(source)}, not of {header['source']}",
            "pick another --out for a copy of this root",
        )
    before, now = recorded.get("source_fingerprint"), header["source_fingerprint"]
    if before is not None and before != now:
        raise UserError(
            f"--out {out} was copied from {header['source']} when it held other videos "
            f"({_counted(before)} then, {_counted(now)} now)",
            "pick another --out, or delete the copy to make it again from the root as it is",
        )


def _counted(fingerprint) -> str:
    if not isinstance(fingerprint, dict):
        return "unknown"
    return f"{printable(fingerprint.get('videos'), 20)} videos, {printable(fingerprint.get('bytes'), 20)} bytes"


def _described(recorded) -> str:
    try:
        return EncodeSettings(**recorded).describe()
    except (TypeError, UserError):
        return "other settings"
