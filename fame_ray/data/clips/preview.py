"""A picture of what a method does to a few clips of a dataset (`fame-ray data preview`), one row
per clip: FAME's original frames, foreground mask and merged clip, or DCLR's static and dynamic
views beside the clip."""

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


def contact_sheet(rows: list[list[torch.Tensor]], headers: list[tuple[int, str]], titles: list[str]) -> Image.Image:
    """PIL image: one row of uint8 C H W tiles per clip under its title, `headers` (column, text)
    over the columns where each part of a row begins."""
    height, width = rows[0][0].shape[1:]
    columns = max(len(tiles) for tiles in rows)
    sheet = Image.new("RGB", (columns * (width + GAP) + GAP, len(rows) * (height + GAP + 14) + 20), "white")
    draw = ImageDraw.Draw(sheet)
    for column, text in headers:
        draw.text((GAP + column * (width + GAP), 4), text, fill="black")
    for row, tiles in enumerate(rows):
        top = 20 + row * (height + GAP + 14)
        draw.text((GAP, top), titles[row], fill="black")
        for column, tile in enumerate(tiles):
            image = Image.fromarray(tile.permute(1, 2, 0).numpy())
            sheet.paste(image, (GAP + column * (width + GAP), top + 12))
    return sheet


def shown_frames(length: int, frames: int) -> list[int]:
    """`frames` evenly spaced frame indices of a clip of `length` frames."""
    return [round(i * (length - 1) / max(frames - 1, 1)) for i in range(frames)]


def fame_rows(batch: torch.Tensor, beta: float, titles: list[str], frames: int) -> tuple[list, list, list[str]]:
    """FAME on uint8 B C T H W clips: per clip its frames | the mask | the merged frames, each clip
    taking the background of the next (training draws a random permutation, which may keep a
    clip's own background)."""
    motion, mean = fame.uint8_statistics(batch)
    mask = (fame.mask_from_statistics(motion, mean, beta) * 255).to(torch.uint8)
    permutation = torch.roll(torch.arange(len(batch)), -1)
    fused = fame.merge_uint8(batch, mask // 255, permutation)
    shown = shown_frames(batch.shape[2], frames)
    rows = [
        [batch[i, :, t] for t in shown] + [mask[i][None].repeat(3, 1, 1)] + [fused[i, :, t] for t in shown]
        for i in range(len(batch))
    ]
    headers = [
        (0, "original frames"),
        (frames, "FAME mask"),
        (frames + 1, "merged: foreground on the next row's background"),
    ]
    return rows, headers, [f"{title}  (background from row {int(p) + 1})" for title, p in zip(titles, permutation)]


def dclr_rows(batch: torch.Tensor, titles: list[str], frames: int, seed: int) -> tuple[list, list, list[str]]:
    """DCLR's views of uint8 B C T H W clips: per clip its frames | the static view (one random
    frame of the clip, which DCLR repeats over time) | the dynamic view (frame differences
    x_t - x_(t-1), wrapping at frame 0 as the official code, shown as 128 + difference / 2)."""
    index = torch.randint(0, batch.shape[2], (len(batch),), generator=torch.Generator().manual_seed(seed))
    dynamic = (batch.short() - torch.roll(batch.short(), 1, dims=2)).div(2).add(128).clamp(0, 255).to(torch.uint8)
    shown = shown_frames(batch.shape[2], frames)
    rows = [
        [batch[i, :, t] for t in shown] + [batch[i, :, int(index[i])]] + [dynamic[i, :, t] for t in shown]
        for i in range(len(batch))
    ]
    headers = [(0, "original frames"), (frames, "static view"), (frames + 1, "dynamic view (frame differences)")]
    return rows, headers, [f"{title}  (static: frame {int(i) + 1})" for title, i in zip(titles, index)]


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
    """The contact sheet of `clips` clips of a manifest of the dataset in cfg, and how many it
    shows: FAME's mask and merge, or with method 'dclr' its static and dynamic views."""
    chosen, titles = pick_clips(manifest.read(subset_manifest), cfg.data, clips, seed, cfg.data_location())
    batch = torch.from_numpy(np.stack(chosen)).permute(0, 4, 1, 2, 3).contiguous()
    if cfg.method == "dclr":
        rows, headers, titles = dclr_rows(batch, titles, frames, seed)
    else:
        rows, headers, titles = fame_rows(batch, cfg.fame.beta, titles, frames)
    return contact_sheet(rows, headers, titles), len(chosen)
