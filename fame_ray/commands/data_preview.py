"""`fame-ray data preview`: a picture of what FAME does to a few clips of a dataset."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from fame_ray.commands import common

Out = Annotated[str, typer.Option("--out", "-o", help="PNG file to write.")]
Clips = Annotated[int, typer.Option("--clips", min=2, max=16, help="Clips (rows) to show; FAME swaps backgrounds among them.")]
Beta = Annotated[Optional[float], typer.Option("--beta", help="Foreground share of the FAME mask (default: fame.beta, 0.5).")]
Frames = Annotated[int, typer.Option("--frames", min=1, max=8, help="Frames shown per clip.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed for picking the videos.")]
SubsetOption = Annotated[str, typer.Option("--subset", help="Manifest subset: train or test.")]

GAP = 6


def _sheet(original, mask, fused, titles: list[str], frames: int):
    """PIL image: per clip a row of original frames | mask | fused frames (uint8 B C T H W inputs)."""
    from PIL import Image, ImageDraw

    batch, _, length, height, width = original.shape
    shown = [round(i * (length - 1) / max(frames - 1, 1)) for i in range(frames)]
    columns = 2 * frames + 1
    sheet = Image.new("RGB", (columns * (width + GAP) + GAP, batch * (height + GAP + 14) + 20), "white")
    draw = ImageDraw.Draw(sheet)
    for x, text in ((GAP, "original frames"), (GAP + frames * (width + GAP), "FAME mask"), (GAP + (frames + 1) * (width + GAP), "merged (foreground on another clip's background)")):
        draw.text((x, 4), text, fill="black")
    for row in range(batch):
        top = 20 + row * (height + GAP + 14)
        draw.text((GAP, top), titles[row], fill="black")
        tiles = [original[row, :, t] for t in shown] + [mask[row][None].repeat(3, 1, 1)] + [fused[row, :, t] for t in shown]
        for column, tile in enumerate(tiles):
            image = Image.fromarray(tile.permute(1, 2, 0).numpy())
            sheet.paste(image, (GAP + column * (width + GAP), top + 12))
    return sheet


def _pick_clips(table, data, count: int, seed: int, endpoint: str):
    """Centre-cropped clips (uint8 T H W C) of `count` random decodable videos, and their titles."""
    import numpy as np

    from fame_ray.data import decode, transforms
    from fame_ray.errors import UserError

    chosen, titles = [], []
    for index in np.random.default_rng(seed).permutation(table.num_rows):
        row = {name: table[name][int(index)].as_py() for name in table.column_names}
        transforms.check_crop_fits(data.crop_size, row["height"], row["width"], row["path"])
        offset = decode.uniform_offsets(row["end_frame"] - row["start_frame"], data.clip_span, 1)
        try:
            (clip,) = decode.decode_clips(row["path"], row["start_frame"], row["end_frame"], offset, data.frames_per_clip, data.temporal_stride, data.decode_threads, endpoint)
        except decode.DecodeError as error:
            typer.echo(f"skipped: {error}", err=True)
            continue
        chosen.append(transforms.center_crop(clip, data.crop_size))
        titles.append(f"{row['label_name']}: {row['path'].rsplit('/', 1)[-1]}")
        if len(chosen) == count:
            break
    if len(chosen) < 2:
        raise UserError(f"found only {len(chosen)} decodable videos", "FAME needs at least 2 clips; check the dataset")
    return chosen, titles


def preview(
    dataset: common.Dataset = None,
    data_root: common.DataRoot = None,
    split: common.Split = None,
    csv: common.CsvList = None,
    out: Out = "fame.png",
    clips: Clips = 4,
    beta: Beta = None,
    frames: Frames = 4,
    subset: SubsetOption = "train",
    seed: Seed = 0,
    config_file: common.ConfigFile = None,
    overrides: common.Overrides = None,
    s3_endpoint: common.S3Endpoint = None,
) -> None:
    """Write a picture of FAME on a few clips: original frames, the foreground mask, the merged clip.

    Clips are centre crops (data.crop_size) from different videos of the manifest; each
    row gets the background of the next row (pretraining draws a random permutation
    within the batch instead). Decodes in this process; only a missing manifest is first
    prepared (probing on a local Ray instance).

    Examples:

      fame-ray data preview --out fame.png

      fame-ray data preview --dataset ucf101 --data-root ~/fame-ray-data/UCF101 --clips 6 --beta 0.4 --out ucf-fame.png

      fame-ray data preview --set data.crop_size=96 --set data.frames_per_clip=8
    """
    common.start_logging()
    import numpy as np
    import torch

    from fame_ray import config
    from fame_ray.data import catalog, fame, manifest

    flags = {"data": common.data_flags(dataset, data_root, split, csv), "fame": common.drop_none({"beta": beta})}
    file_values = config.load_yaml(config_file) if config_file else {}
    cfg = config.build(config.PretrainConfig, {}, file_values, common.drop_none(flags), overrides or [])
    endpoint = s3_endpoint or ""
    table = manifest.read(catalog.manifest_uri(cfg.data, subset, endpoint), endpoint)
    chosen, titles = _pick_clips(table, cfg.data, clips, seed, endpoint)
    batch = torch.from_numpy(np.stack(chosen)).permute(0, 4, 1, 2, 3).contiguous()
    motion, mean = fame.uint8_statistics(batch)
    mask = fame.mask_from_statistics(motion, mean, cfg.fame.beta)
    # A cyclic shift, so every row shows a swapped background (training draws a random
    # permutation, which may keep a clip's own background).
    permutation = torch.roll(torch.arange(len(chosen)), -1)
    fused = fame.merge_uint8(batch, mask, permutation)
    titles = [f"{title}  (background from row {int(p) + 1})" for title, p in zip(titles, permutation)]
    _sheet(batch, (mask * 255).to(torch.uint8), fused, titles, frames).save(out)
    typer.echo(f"wrote {out}: {len(chosen)} clips of {cfg.data.dataset}, beta {cfg.fame.beta}")
