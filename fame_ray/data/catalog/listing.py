"""What a layout reader returns (`Listing` of `Entry`s), and the `Tree` it reads through.

A `Tree` is a dataset root, a local folder or an s3:// prefix, read through fame_ray.storage's
pyarrow filesystem with paths relative to the root, so that every layout reader works the
same on a laptop folder and on object storage.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass, field

import pyarrow.fs as pafs

from fame_ray.storage import Location

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov")
SUBSETS = ("train", "test")


@dataclass
class Entry:
    """One video of a split, before probing."""

    path: str
    """Absolute local path or s3:// URI."""
    label: int
    """0-based class index."""
    split: str
    """'train', 'test' or 'val' (Kinetics' validation set), as the dataset names it."""
    start_frame: int = 0
    """First usable frame (Diving48 annotations), else 0."""
    end_frame: int = -1
    """One past the last usable frame; -1 = the end of the video."""


@dataclass
class Listing:
    """A dataset split as its files describe it: classes, videos per subset, what is missing."""

    classes: list[str]
    """Class names; the index is the label."""
    subsets: dict[str, list[Entry]]
    """'train' and 'test' (Kinetics: the validation set) -> videos."""
    variant: str
    """Which variant of the layout was found, in words (logged and printed)."""
    missing: list[tuple[str, str]] = field(default_factory=list)
    """(path, reason) of videos the split files list but the root lacks."""


def hash_fraction(key: str) -> float:
    """A deterministic number in [0, 1) from a string (same on every machine and run)."""
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:12], 16) / 16**12


def hash_split(key: str, test_fraction: float = 0.2) -> str:
    """'test' for about `test_fraction` of keys, else 'train'; a key always lands the same way."""
    return "test" if hash_fraction(key) < test_fraction else "train"


class Tree:
    """A local folder or s3:// prefix; all paths are relative to it ('..' allowed)."""

    def __init__(self, root: Location):
        self.location = root
        self.s3 = root.is_s3
        self.fs, self.base = root.filesystem, root.path
        self._files: dict[str, list[str]] = {}
        self.known: dict[str, pafs.FileInfo] = {}
        """FileInfo (size, modification time) of every file listed so far, by filesystem path."""

    def _path(self, relative: str) -> str:
        return posixpath.normpath(posixpath.join(self.base, relative)) if relative else self.base

    def uri(self, relative: str = "") -> str:
        """The absolute local path or s3:// URI of a relative path."""
        path = self._path(relative)
        return f"s3://{path}" if self.s3 else path

    def kind(self, relative: str = "") -> pafs.FileType:
        return self.fs.get_file_info(self._path(relative)).type

    def is_dir(self, relative: str = "") -> bool:
        return self.kind(relative) == pafs.FileType.Directory

    def is_file(self, relative: str) -> bool:
        return self.kind(relative) == pafs.FileType.File

    def subdirs(self, relative: str = "") -> list[str]:
        """Sorted names of the folders directly inside, hidden ones ('.fame-ray') left out."""
        selector = pafs.FileSelector(self._path(relative), allow_not_found=True)
        infos = self.fs.get_file_info(selector)
        return sorted(
            i.base_name for i in infos if i.type == pafs.FileType.Directory and not i.base_name.startswith(".")
        )

    def files(self, relative: str = "") -> list[str]:
        """Sorted paths (relative to the root) of every file below `relative`, listed once."""
        if relative not in self._files:
            start = self._path(relative)
            selector = pafs.FileSelector(start, recursive=True, allow_not_found=True)
            infos = [i for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.File]
            self.known.update((i.path, i) for i in infos)
            prefix = len(self.base) + 1
            self._files[relative] = sorted(i.path[prefix:] for i in infos)
        return self._files[relative]

    def videos(self, relative: str = "") -> list[str]:
        """Like `files`, only video files, hidden folders left out."""
        return [f for f in self.files(relative) if f.lower().endswith(VIDEO_EXTENSIONS) and "/." not in "/" + f]

    def read_text(self, relative: str) -> str:
        with self.fs.open_input_stream(self._path(relative)) as stream:
            return stream.read().decode("utf-8", errors="replace")


def first_match(candidates, accept) -> str | None:
    """The first candidate for which accept(candidate) is true, else None."""
    return next((c for c in candidates if accept(c)), None)


def join(*parts: str) -> str:
    """Join relative path parts, skipping empty ones ('' means the root)."""
    return posixpath.join(*[p for p in parts if p]) if any(parts) else ""
