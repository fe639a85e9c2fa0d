"""`fame-ray retrieve`: video retrieval with a pretrained encoder (R@1, 5, 10, 20, 50)."""

from __future__ import annotations

from typing import Annotated

import typer

from fame_ray.commands import common
from fame_ray.commands.finetune import Arch, Gpu, Pretrained, Workers, downstream_config

Clips = Annotated[
    int | None, typer.Option("--clips", help="Clips per video whose features are averaged (official: 10).")
]


def retrieve(
    dataset: common.Dataset = None,
    data_root: common.DataRoot = None,
    split: common.Split = None,
    pretrained: Pretrained = None,
    arch: Arch = None,
    clips: Clips = None,
    workers: Workers = None,
    gpu: Gpu = None,
    storage: common.Storage = None,
    s3_endpoint: common.S3Endpoint = None,
    run_name: common.RunName = None,
    config_file: common.ConfigFile = None,
    preset: common.Preset = None,
    overrides: common.Overrides = None,
    dry_run: common.DryRun = False,
) -> None:
    """Nearest-neighbour video retrieval: test videos query the training videos.

    Protocol (official main_retrieve.py, docs/recipe.md): the features of --clips uniformly spaced clips per video
    (centre crop of the frame as stored) are L2-normalised and averaged; queries (test videos) and gallery (training
    videos) are each centred on their own mean and L2-normalised; a query is a hit at k when any of its k nearest
    training videos shares its class. R@1, 5, 10, 20, 50. --dry-run prints the config, protocol and plan, and exits.

    Features are extracted with Ray Data: a pool of --workers backbone actors, on CPU or GPU. Writes results.md and
    results.json into the run directory.

    Examples:

      fame-ray retrieve --pretrained fame-ray-runs/pretrain-synthetic-tiny

      fame-ray retrieve --dataset ucf101 --data-root ~/data/UCF101 --split 1 --pretrained s3://bucket/runs/RUN

      fame-ray retrieve --dataset hmdb51 --pretrained fame_r21d.pth --arch r2plus1d_18 --workers 2 --gpu
    """
    common.start_logging()
    flags = {
        "data": {**common.data_flags(dataset, data_root, split), "eval_clips": clips},
        "model": {"arch": arch},
        "train": {"num_workers": workers, "use_gpu": gpu},
        "storage": common.storage_flags(storage, s3_endpoint, run_name),
        "pretrained": pretrained,
    }
    config, wanted_arch = downstream_config(flags, dataset, arch, config_file, preset, overrides)
    if dry_run:
        from fame_ray.commands import dry_run as plan  # torch and ray: loaded only to plan

        typer.echo(plan.retrieve(config, wanted_arch))
        return
    from fame_ray.downstream.features import run_retrieval  # torch and ray: loaded only to run
    from fame_ray.eval.report import render_markdown

    record = run_retrieval(config, wanted_arch)
    typer.echo(render_markdown(record))
    typer.echo(f"results: {record['run_dir']}/results.md and results.json")
