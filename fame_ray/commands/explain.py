"""`fame-ray explain`: where an encoder looks, as class-agnostic activation maps over a few clips."""

from __future__ import annotations

from typing import Annotated

import typer

from fame_ray.commands import common
from fame_ray.commands.finetune import Arch, Pretrained, downstream_config
from fame_ray.config import apply_overrides, load_yaml
from fame_ray.errors import UserError

Out = Annotated[str, typer.Option("--out", "-o", help="PNG file to write.")]
Clips = Annotated[int, typer.Option("--clips", min=1, max=16, help="Clips (rows) to show, from different videos.")]
Frames = Annotated[int, typer.Option("--frames", min=1, max=8, help="Frames shown per clip.")]
Seed = Annotated[int, typer.Option("--seed", help="Seed for picking the videos (one per class first).")]
SubsetOption = Annotated[str, typer.Option("--subset", help="Manifest subset: train or test.")]


def explain(
    pretrained: Pretrained = None,
    dataset: common.Dataset = None,
    data_root: common.DataRoot = None,
    split: common.Split = None,
    csv: common.CsvList = None,
    arch: Arch = None,
    out: Out = "maps.png",
    clips: Clips = 4,
    frames: Frames = 4,
    subset: SubsetOption = "test",
    seed: Seed = 0,
    s3_endpoint: common.S3Endpoint = None,
    config_file: common.ConfigFile = None,
    preset: common.Preset = None,
    overrides: common.Overrides = None,
) -> None:
    """Draw where an encoder looks: frames of a few clips with its class-agnostic activation map over them.

    The map is the backbone's last-stage feature map summed over channels (negatives clipped), upsampled to the
    clip; each clip's map is scaled to its own range (dark: little activation, yellow-white: the most). Clips are the
    centre clip of different videos (one per class first) with the test crop (data.crop_size, data.test_crop),
    decoded in this process; a fame-ray checkpoint passes on its clip length, stride and crop size unless --set or
    --config give them. Works on a fame-ray run or checkpoint directory (local or s3://) and on an official FAME
    .pth (pass --arch), on any dataset the other commands read.

    Examples:

      fame-ray explain --pretrained fame-ray-runs/pretrain-synthetic-tiny --out maps.png

      fame-ray explain --pretrained fame_r21d_ucf101.pth --arch r2plus1d_18 --dataset ucf101 --data-root ~/data/UCF101

      fame-ray explain --pretrained s3://bucket/runs/RUN --dataset hmdb51 --clips 6 --subset train --out hmdb.png
    """
    common.start_logging()
    common.check_output_file(out)
    if subset not in ("train", "test"):
        raise UserError(f"--subset must be train or test, got {subset[:40]!r}", "e.g. --subset test")
    flags = {
        "data": common.data_flags(dataset, data_root, split, csv),
        "model": {"arch": arch},
        "storage": {"s3_endpoint": s3_endpoint},
        "pretrained": pretrained,
    }
    config, wanted_arch = downstream_config(flags, dataset, arch, config_file, preset, overrides)
    given = set(apply_overrides(load_yaml(config_file) if config_file else {}, overrides or []).get("data") or {})
    from fame_ray.downstream.explain import explain as draw  # torch and decord: loaded only to run

    sheet, shown, used_arch = draw(config, subset, clips, frames, seed, wanted_arch, given)
    sheet.save(out)
    typer.echo(f"wrote {out}: activation maps of {shown} clips of {config.data.dataset} ({used_arch})")
