"""A picture of what FAME does to a few clips of a dataset (`fame-ray data preview`): original
frames, the foreground mask and the merged clip, side by side, one row per clip."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import torch
from PIL import Image, ImageDraw

from fame_ray.config import DataConfig, PretrainConfig
from fame_ray.data import manifest
from fame_ray.data.clips import decode, fame, transforms
from fame_ray.errors import UserError
from fame_ray.storage import Location

log = logging.getLogger(__name__)

GAP = 6


def contact_sheet(original, mask, fused, titles: list[str], frames: int):
    """PIL image: per clip a row of original frames | mask | fused frames (uint8 B C T H W inputs)."""
    batch, _, length, height, width = original.shape
    shown = [round(i * (length - 1) / max(frames - 1, 1)) for i in range(frames)]
    columns = 2 * frames + 1
    sheet = Image.new("RGB", (columns * (width + GAP) + GAP, batch * (height + GAP + 14) + 20), "white")
    draw = ImageDraw.Draw(sheet)
    for x, text in (
        (GAP, "original frames"),
        (GAP + frames * (width + GAP), "FAME mask"),
        (GAP + (frames + 1) * (width + GAP), "merged (foreground on another clip's background)"),
    ):
        draw.text((x, 4), text, fill="black")
    for row in range(batch):
        top = 20 + row * (height + GAP + 14)
        draw.text((GAP, top), titles[row], fill="black")
        tiles = (
            [original[row, :, t] for t in shown] + [mask[row][None].repeat(3, 1, 1)] + [fused[row, :, t] for t in shown]
        )
        for column, tile in enumerate(tiles):
            image = Image.fromarray(tile.permute(1, 2, 0).numpy())
            sheet.paste(image, (GAP + column * (width + GAP), top + 12))
    return sheet


def pick_clips(
    table: pa.Table, data: DataConfig, count: int, seed: int, source: Location
) -> tuple[list[np.ndarray], list[str]]:
    """Centre-cropped clips (uint8 T H W C) of `count` random decodable videos, and their titles."""
    picked = decode.centre_clips(table, np.random.default_rng(seed).permutation(table.num_rows), count, data, source)
    if len(picked) < 2:
        raise UserError(f"found only {len(picked)} decodable videos", "FAME needs at least 2 clips; check the dataset")
    chosen = [transforms.resize_center_crop(clip, data.crop_size) for _, clip in picked]
    return chosen, [f"{row['label_name']}: {row['path'].rsplit('/', 1)[-1]}" for row, _ in picked]


def render(
    cfg: PretrainConfig, subset_manifest: Location, clips: int, frames: int, seed: int
) -> tuple[Image.Image, int]:
    """The contact sheet of `clips` clips of a manifest of the dataset in cfg, and how many it shows."""
    chosen, titles = pick_clips(manifest.read(subset_manifest), cfg.data, clips, seed, cfg.data_location())
    batch = torch.from_numpy(np.stack(chosen)).permute(0, 4, 1, 2, 3).contiguous()
    motion, mean = fame.uint8_statistics(batch)
    mask = fame.mask_from_statistics(motion, mean, cfg.fame.beta)
    # A cyclic shift, so every row shows a swapped background (training draws a random
    # permutation, which may keep a clip's own background).
    permutation = torch.roll(torch.arange(len(chosen)), -1)
    fused = fame.merge_uint8(batch, mask, permutation)
    titles = [f"{title}  (background from row {int(p) + 1})" for title, p in zip(titles, permutation)]
    return contact_sheet(batch, (mask * 255).to(torch.uint8), fused, titles, frames), len(chosen)
