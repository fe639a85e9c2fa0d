"""The synthetic sets of the background-bias experiment: classes that differ ONLY by motion, and
backgrounds from a few families (hue and stripe direction), tied to the class or not.

    sets = write_sets("/tmp/bias/data", SceneBiasSpec())
    sets["biased"]        # <root>/biased/{train,test}/<motion>/video_NNNN.mp4
    sets["decorrelated"]  # <root>/decorrelated/{train,test}/<motion>/video_NNNN.mp4

- biased: a video of class c has the background family c % families with probability `bias`,
  another family otherwise: the shortcut a network can take instead of the motion;
- decorrelated: the family is uniformly random, so only the motion tells the class.
Every object looks the same (one colour, disk or square, the same size range), so nothing but
its motion distinguishes the classes or the videos of a class; the motions are the eight of
`synthetic.MOTIONS`, all symmetric under a horizontal flip (the training flip never turns one
class into another). Each set is a `folder` dataset (class folders under train/ and test/) with
`families.json` beside it: relative video path -> background family, for the scene read-out.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fame_ray.data import synthetic

FAMILIES_FILE = "families.json"
SETS = {"biased": True, "decorrelated": False}


@dataclass(frozen=True)
class SceneBiasSpec:
    """Sizes of the experiment's sets (defaults: the full experiment)."""

    classes: int = 8
    families: int = 4
    bias: float = 0.9
    """Share of a biased class's videos on its own background family."""
    train_per_class: int = 80
    """Training videos per class of the biased set (pretraining and the biased probe)."""
    probe_per_class: int = 40
    """Videos per class of each decorrelated subset (probe training, probe testing)."""
    biased_test_per_class: int = 10
    frames: int = 32
    size: int = 64
    object_size: tuple[float, float] = (0.18, 0.23)
    """Radius range of the object, as a share of the frame side: a mover that fills a good part of
    the frame, as an actor does in UCF101 (the default synthetic objects are half as large)."""
    object_colour: tuple[int, int, int] = (235, 235, 235)
    seed: int = 0


def _family(spec: SceneBiasSpec, label: int, biased: bool, rng: np.random.Generator) -> int:
    if biased and rng.random() < spec.bias:
        return label % spec.families
    return int(rng.integers(spec.families))


def _write_subset(root: str, subset: str, count: int, spec: SceneBiasSpec, biased: bool, salt: int) -> dict[str, int]:
    """Render and encode `count` videos per class into root/subset/<motion>/; returns path -> family."""
    families = {}
    for label, motion in enumerate(synthetic.motion_classes(spec.classes)):
        for index in range(count):
            rng = np.random.default_rng([spec.seed, salt, label, index])
            family = _family(spec, label, biased, rng)
            hue, angle = synthetic.family_background(family, spec.families, rng)
            video = synthetic.render_video(
                motion, spec.frames, spec.size, spec.size, rng, hue, angle, spec.object_colour, spec.object_size
            )
            relative = f"{subset}/{'_'.join(motion.words)}/video_{index:04d}.mp4"
            synthetic.write_video(video, os.path.join(root, relative))
            families[relative] = family
    return families


def write_sets(out: str, spec: SceneBiasSpec) -> dict[str, str]:
    """Write the biased and the decorrelated set under `out` (reused when already complete)."""
    roots = {name: os.path.join(out, name) for name in SETS}
    for salt, (name, biased) in enumerate(SETS.items()):
        root = roots[name]
        if synthetic.is_complete(root) and json.loads(Path(os.path.join(root, synthetic.MARKER)).read_text()) == asdict(
            spec
        ):
            continue
        train = spec.train_per_class if biased else spec.probe_per_class
        test = spec.biased_test_per_class if biased else spec.probe_per_class
        families = {
            **_write_subset(root, "train", train, spec, biased, 2 * salt),
            **_write_subset(root, "test", test, spec, biased, 2 * salt + 1),
        }
        with open(os.path.join(root, FAMILIES_FILE), "w") as handle:
            json.dump(families, handle, indent=0)
        with open(os.path.join(root, synthetic.MARKER), "w") as handle:  # written last: the set is complete
            json.dump(asdict(spec), handle, indent=1)
    return roots


def families_of(root: str, paths: list[str]) -> np.ndarray:
    """The background family of each video path (absolute, as manifests hold them)."""
    with open(os.path.join(root, FAMILIES_FILE)) as handle:
        families = json.load(handle)
    return np.array([families[os.path.relpath(path, root)] for path in paths], dtype=np.int64)
