"""The synthetic sets of the background-bias experiment: classes that differ ONLY by motion, and
backgrounds from a few families, tied to the class or not; one set per generator variant.

    roots = write_sets("/tmp/bias/data/base", SceneBiasSpec())
    roots["biased"]         # <root>/biased/{train,test}/<motion>/video_NNNN.mp4
    roots["decorrelated"]   # <root>/decorrelated/{train,test}/...

- biased: a video of class c has the background family c % families with probability `bias`,
  another family otherwise: the shortcut a network can take instead of the motion. Its train/
  is the pretraining set; its test/ is the validation split (the same distribution, never
  pretrained on) that picks each method's recipe;
- decorrelated: the family is uniformly random, so only the motion tells the class.
Background families (`family_background`): each family owns a contiguous band of the hue circle
(1 / families wide; neighbours meet at a boundary) and a stripe direction (pi / families apart).
The bands tile the circle, so telling neighbours apart takes a precise read of the background:
linear probes on random features reach about 0.6 on 8 families (measured on these renders), not 1.

Every object of a set looks alike (the same colour rule and size range, disk or square), so
nothing but its motion distinguishes the classes; the motions are the eight of
`synthetic.MOTIONS`, all symmetric under a horizontal flip. A variant changes one factor of the
generator (`VARIANTS`). Each set is a `folder` dataset with `families.json` beside it (relative
video path -> family); the decorrelated set also keeps `masks.npz`: the class object's mask in
every frame of every test video (packed bits), what the activation maps are scored against.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from fame_ray.data import synthetic

FAMILIES_FILE = "families.json"
MASKS_FILE = "masks.npz"
SETS = {"biased": True, "decorrelated": False}


@dataclass(frozen=True)
class SceneBiasSpec:
    """The sets of one variant: sizes and the generator's look."""

    classes: int = 8
    families: int = 8
    bias: float = 0.9
    """Share of a biased class's videos on its own background family."""
    hue_spread: float = 0.0625
    """Hue jitter around a family's hue (+-); 0.5 / families tiles the hue circle."""
    train_per_class: int = 40
    """Pretraining videos per class (biased/train; also the biased probe's training set)."""
    val_per_class: int = 10
    """Validation videos per class (biased/test): picks each method's recipe."""
    probe_per_class: int = 30
    """Videos per class of each decorrelated subset (probe training, probe testing)."""
    frames: int = 32
    size: int = 64
    object_size: tuple[float, float] = (0.18, 0.23)
    """Radius range of the object, as a share of the frame side: a mover that fills a good part of
    the frame, as an actor does in UCF101."""
    object_colour: tuple[int, int, int] | str = (235, 235, 235)
    """One RGB colour unlike any background, or 'palette' (a patch of the video's own background)."""
    camera_pan: tuple[float, float] = (0.0, 0.0)
    """Speed range of a camera pan in pixels per frame (0: the slow drift only)."""
    camera_shake: float = 0.0
    """Amplitude of a per-frame camera jitter in pixels."""
    distractor: bool = False
    """A second object of the same look that moves the same way in every class."""
    seed: int = 0

    def camera(self) -> synthetic.Camera:
        return synthetic.Camera(pan=tuple(self.camera_pan), shake=self.camera_shake)


# Each variant changes one factor of the base set.
VARIANTS: dict[str, dict] = {
    "base": {},
    "palette": {"object_colour": "palette"},
    "small": {"object_size": (0.09, 0.12)},  # half the radius: the default synthetic objects' size
    "camera": {"camera_pan": (0.5, 1.5), "camera_shake": 2.0},
    "distractor": {"distractor": True},
}
VARIANT_FACTORS = {
    "base": "one light object colour, radius 18-23% of the frame, still camera (slow drift), one mover",
    "palette": "the object filled with a patch of its own background's texture",
    "small": "object radius 9-12% of the frame",
    "camera": "the background pans 0.5-1.5 px/frame in a random direction and shakes +-2 px",
    "distractor": "a second object of the same look bounces in a straight line, the same in every class",
}


def variant_spec(spec: SceneBiasSpec, variant: str) -> SceneBiasSpec:
    """`spec` with the one factor of `variant` changed (config keys checked by the caller)."""
    return replace(spec, **VARIANTS[variant])


def _family(spec: SceneBiasSpec, label: int, biased: bool, rng: np.random.Generator) -> int:
    if biased and rng.random() < spec.bias:
        return label % spec.families
    return int(rng.integers(spec.families))


def _render(spec: SceneBiasSpec, motion, family: int, rng: np.random.Generator) -> synthetic.Rendered:
    hue, angle = synthetic.family_background(family, spec.families, rng, spec.hue_spread)
    colour = spec.object_colour if isinstance(spec.object_colour, str) else tuple(spec.object_colour)
    size = tuple(spec.object_size)
    return synthetic.render_scene(
        motion, spec.frames, spec.size, spec.size, rng, hue, angle, colour, size, spec.camera(), spec.distractor
    )


def _write_subset(root: str, subset: str, count: int, spec: SceneBiasSpec, biased: bool, salt: int):
    """Render `count` videos per class into root/subset/<motion>/; returns (path -> family,
    path -> packed mask bits)."""
    families, masks = {}, {}
    for label, motion in enumerate(synthetic.motion_classes(spec.classes)):
        for index in range(count):
            rng = np.random.default_rng([spec.seed, salt, label, index])
            family = _family(spec, label, biased, rng)
            rendered = _render(spec, motion, family, rng)
            relative = f"{subset}/{'_'.join(motion.words)}/video_{index:04d}.mp4"
            synthetic.write_video(rendered.video, os.path.join(root, relative))
            families[relative] = family
            masks[relative] = np.packbits(rendered.mask)
    return families, masks


def _complete(root: str, spec: SceneBiasSpec) -> bool:
    marker = Path(root, synthetic.MARKER)
    return marker.is_file() and json.loads(marker.read_text()) == json.loads(json.dumps(asdict(spec)))


def write_sets(out: str, spec: SceneBiasSpec) -> dict[str, str]:
    """Write the biased and the decorrelated set under `out` (each reused when already complete
    for `spec`); returns name -> root."""
    roots = {name: os.path.join(out, name) for name in SETS}
    for salt, (name, biased) in enumerate(SETS.items()):
        root = roots[name]
        if _complete(root, spec):
            continue
        train = spec.train_per_class if biased else spec.probe_per_class
        test = spec.val_per_class if biased else spec.probe_per_class
        families, _ = _write_subset(root, "train", train, spec, biased, 2 * salt)
        test_families, masks = _write_subset(root, "test", test, spec, biased, 2 * salt + 1)
        families.update(test_families)
        if not biased:
            np.savez_compressed(os.path.join(root, MASKS_FILE), **{_key(k): v for k, v in masks.items()})
        with open(os.path.join(root, FAMILIES_FILE), "w") as handle:
            json.dump(families, handle, indent=0)
        with open(os.path.join(root, synthetic.MARKER), "w") as handle:  # written last: the set is complete
            json.dump(asdict(spec), handle, indent=1)
    return roots


def _key(relative: str) -> str:
    return relative.replace("/", "|")  # npz member names are file names


def families_of(root: str, paths: list[str]) -> np.ndarray:
    """The background family of each video path (absolute, as manifests hold them)."""
    with open(os.path.join(root, FAMILIES_FILE)) as handle:
        families = json.load(handle)
    return np.array([families[os.path.relpath(path, root)] for path in paths], dtype=np.int64)


def masks_of(root: str, paths: list[str], spec: SceneBiasSpec) -> np.ndarray:
    """bool V x T x H x W: the class object's mask in every frame of each test video of `root`."""
    shape = (spec.frames, spec.size, spec.size)
    with np.load(os.path.join(root, MASKS_FILE)) as packed:
        return np.stack(
            [
                np.unpackbits(packed[_key(os.path.relpath(path, root))], count=int(np.prod(shape)))
                .reshape(shape)
                .astype(bool)
                for path in paths
            ]
        )
