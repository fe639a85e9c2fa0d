"""Class-agnostic activation maps: where in a clip an encoder's last stage fires
(`fame-ray explain`; the background-bias experiment scores them against the true object mask).

    backbone, _ = preflight.load_backbone(weights, "tiny")
    clips = pick_clips(manifest.read(test_manifest), cfg.data, 4, seed=0, source=root)
    maps = activation_maps(backbone, np.stack([c.clip for c in clips]))   # B T H W, >= 0
    figure(clips, maps, "MoCo + FAME").save("maps.png")

The map of a clip is the backbone's last-stage feature map (`feature_map(x)`: B,C,T',H',W')
summed over channels, negatives clipped, upsampled trilinearly to the clip's T x H x W: the
class-agnostic activation map the FAME paper shows as its visual evidence (its code does not
include one; this is our construction from that description). Clips are decoded in this
process (no Ray): the centre clip of each video, with the test-time crop.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import nn

from fame_ray.components.augment import KINETICS_MEAN, KINETICS_STD, to_input
from fame_ray.config import DataConfig, FinetuneConfig
from fame_ray.data import manifest, ready
from fame_ray.data.clips import decode, sampling, transforms
from fame_ray.downstream import preflight
from fame_ray.errors import UserError
from fame_ray.storage import Location

log = logging.getLogger(__name__)
GAP = 6
# Heat colours from no activation to the most: black, red, yellow, white (perceptually ordered).
RAMP = np.array([[0, 0, 0], [200, 30, 30], [250, 210, 40], [255, 255, 255]], np.float32)
OVERLAY = 0.55
"""Weight of the heat colour over the frame."""


@dataclass(frozen=True)
class Clip:
    """One test-time clip of a video, as the encoder sees it."""

    clip: np.ndarray
    """uint8 T x S x S x 3, the test crop."""
    frames: np.ndarray
    """int T: the video's frame index of every clip frame."""
    path: str
    label: int
    title: str


def _order(table: pa.Table, seed: int) -> list[int]:
    """Rows in a seeded random order, one video of every class first (a figure shows the classes)."""
    order = np.random.default_rng(seed).permutation(table.num_rows).tolist()
    labels, first, rest = table["label"].to_pylist(), [], []
    seen = set()
    for row in order:
        (rest if labels[row] in seen else first).append(row)
        seen.add(labels[row])
    return first + rest


def pick_clips(table: pa.Table, data: DataConfig, count: int, seed: int, source: Location) -> list[Clip]:
    """The centre clip (test crop) of `count` decodable videos of a manifest, in `_order`."""
    chosen = []
    for row, clip in decode.centre_clips(table, _order(table, seed), count, data, source):
        usable = range(row["start_frame"], row["end_frame"])
        offset = sampling.centre_offset(len(usable), data.clip_span)
        frames = sampling.clip_indices(usable.start, usable.stop, offset, data.frames_per_clip, data.temporal_stride)
        name = row["path"].rsplit("/", 1)[-1]
        cropped = transforms.eval_crop(clip, data.crop_size, data.test_crop)
        chosen.append(Clip(cropped, frames, row["path"], int(row["label"]), f"{row['label_name']}: {name}"))
    if not chosen:
        raise UserError("no video of the manifest could be decoded", "check the dataset (fame-ray data prepare)")
    return chosen


def crop_masks(masks: np.ndarray, data: DataConfig) -> np.ndarray:
    """bool B x T x H x W masks of whole frames -> the same test crop as the clips (B T S S)."""
    cropped = [
        transforms.eval_crop(mask[..., None].astype(np.uint8) * 255, data.crop_size, data.test_crop) for mask in masks
    ]
    return np.stack(cropped)[..., 0] >= 128


def activation_maps(
    backbone: nn.Module, clips: np.ndarray, mean: tuple = KINETICS_MEAN, std: tuple = KINETICS_STD
) -> np.ndarray:
    """uint8 clips B x T x H x W x 3 -> float B x T x H x W: channel-summed last-stage features,
    negatives clipped, upsampled trilinearly to the input size."""
    if not hasattr(backbone, "feature_map"):
        raise UserError(f"{type(backbone).__name__} has no feature_map", "use a backbone of config.ARCHS")
    batch = torch.from_numpy(np.ascontiguousarray(clips)).permute(0, 4, 1, 2, 3)
    with torch.no_grad():
        features = backbone.eval().feature_map(to_input(batch, torch.device("cpu"), mean, std)).float()
        summed = features.sum(1, keepdim=True).clamp_min(0)
        maps = F.interpolate(summed, size=batch.shape[2:], mode="trilinear", align_corners=False)
    return maps[:, 0].numpy()


def mask_share(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per clip, the share of activation inside the mask: sum(map * mask) / sum(map), `B`
    (a map that ignores the object scores the mask's area share on average)."""
    total = maps.reshape(len(maps), -1).sum(1)
    inside = (maps * masks).reshape(len(maps), -1).sum(1)
    return np.where(total > 0, inside / np.maximum(total, 1e-12), np.nan)


def heat(values: np.ndarray) -> np.ndarray:
    """float in [0, 1] (any shape) -> RGB float along RAMP (shape + (3,))."""
    position = np.clip(values, 0, 1) * (len(RAMP) - 1)
    low = np.minimum(position.astype(int), len(RAMP) - 2)
    weight = (position - low)[..., None]
    return RAMP[low] * (1 - weight) + RAMP[low + 1] * weight


def overlay(frame: np.ndarray, values: np.ndarray) -> np.ndarray:
    """uint8 H x W x 3 frame with the heat colours of `values` (H x W in [0, 1]) over it."""
    return ((1 - OVERLAY) * frame + OVERLAY * heat(values)).clip(0, 255).astype(np.uint8)


def figure(clips: list[Clip], maps: np.ndarray, title: str, frames: int = 4, shares=None) -> Image.Image:
    """PIL image: a row per clip, its first shown frame plain, then `frames` frames with the map
    over them (each clip's map scaled to its own range); `shares` (per clip) go in the titles."""
    length, size = maps.shape[1], maps.shape[2]
    scale = max(1, 96 // size)
    tile = size * scale
    shown = [round(i * (length - 1) / max(frames - 1, 1)) for i in range(frames)]
    sheet = Image.new("RGB", ((frames + 1) * (tile + GAP) + GAP, len(clips) * (tile + GAP + 14) + 22), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((GAP, 4), title, fill="black")
    for row, (clip, values) in enumerate(zip(clips, maps)):
        top = 22 + row * (tile + GAP + 14)
        share = f"  (in mask {100 * shares[row]:.0f}%)" if shares is not None else ""
        draw.text((GAP, top), clip.title + share, fill="black")
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / max(high - low, 1e-12)
        tiles = [clip.clip[shown[0]]] + [overlay(clip.clip[t], scaled[t]) for t in shown]
        for column, image in enumerate(tiles):
            picture = Image.fromarray(image).resize((tile, tile), Image.NEAREST)
            sheet.paste(picture, (GAP + column * (tile + GAP), top + 12))
    return sheet


# Clip geometry a fame-ray checkpoint passes on, unless the user sets it: the clips the encoder trained on.
INHERITED = ("frames_per_clip", "temporal_stride", "crop_size")


def inherit_geometry(cfg: FinetuneConfig, checkpoint_config: dict, given: set[str]) -> FinetuneConfig:
    """cfg with the checkpoint's clip geometry (INHERITED keys the user did not give)."""
    saved = checkpoint_config.get("data") or {}
    values = {key: saved[key] for key in INHERITED if key in saved and key not in given}
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **values)) if values else cfg


def explain(
    cfg: FinetuneConfig, subset: str, count: int, frames: int, seed: int, explicit_arch: str | None, given=frozenset()
):
    """`fame-ray explain`: (figure, clips shown, the loaded arch) for the encoder in cfg.pretrained
    on `count` clips of the `subset` manifest of cfg.data; `given`: the data keys the user set
    (the others of INHERITED come from a fame-ray checkpoint's config)."""
    preflight.check_data_root(cfg)
    weights = preflight.check_pretrained(cfg)
    checkpoint_config, _ = preflight.checkpoint_config(weights)
    cfg = inherit_geometry(cfg, checkpoint_config, set(given))
    arch = preflight.resolve_arch(explicit_arch, checkpoint_config, cfg.model.arch)
    backbone, _ = preflight.load_backbone(weights, arch)
    source = cfg.data_location()
    table = manifest.read(ready.manifests(cfg.data, source)[subset])
    clips = pick_clips(table, cfg.data, count, seed, source)
    maps = activation_maps(backbone, np.stack([clip.clip for clip in clips]))
    name = weights.uri.rstrip("/").rsplit("/", 1)[-1]
    title = f"class-agnostic activation maps of {name} ({arch}) on {cfg.data.dataset} {subset}"
    return figure(clips, maps, title, frames), len(clips), arch
