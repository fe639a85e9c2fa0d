"""`fame-ray finetune`: finetune or linear-probe a pretrained encoder as a Ray Tune sweep."""

from __future__ import annotations

from typing import Annotated

import typer

from fame_ray.commands import common
from fame_ray.config import ARCHS, FinetuneConfig, StorageConfig, apply_overrides, load_yaml, presets
from fame_ray.downstream.search_space import load_search_file, parse_search_flags

Pretrained = Annotated[
    str | None,
    typer.Option(
        "--pretrained",
        "-p",
        help="fame-ray run or checkpoint dir (local or s3://), or an official FAME .pth (keys module.encoder_q.*).",
    ),
]
Mode = Annotated[
    str | None,
    typer.Option(
        "--mode",
        help="finetune (all layers) or linear (frozen backbone, linear classifier: the official probe's recipe).",
    ),
]
Arch = Annotated[str | None, typer.Option("--arch", help=f"Backbone: {', '.join(ARCHS)} (default: the checkpoint's).")]
Samples = Annotated[
    int | None,
    typer.Option("--samples", "-n", help="Tune samples of the search space (a grid is repeated this many times)."),
]
Search = Annotated[
    list[str] | None,
    typer.Option(
        "--search",
        help=(
            "Search one hyperparameter (lr, weight_decay, dropout, epochs): 'lr=loguniform(1e-3,1e-1)', "
            "'dropout=[0.5,0.7]' (grid), 'epochs=choice(30,50)', 'weight_decay=uniform(0,1e-3)'. Repeatable."
        ),
    ),
]
SearchFile = Annotated[
    str | None,
    typer.Option("--search-file", help="YAML file mapping hyperparameters to specs (same syntax as --search)."),
]
Epochs = Annotated[
    int | None,
    typer.Option("--epochs", help="Epochs per trial (official: 150; the linear probe 100), unless searched."),
]
Workers = Annotated[int | None, typer.Option("--workers", "-w", help="Ray Train workers per trial (DDP).")]
Gpu = Annotated[bool | None, typer.Option("--gpu/--cpu", help="One GPU per worker.")]
MaxConcurrent = Annotated[
    int | None,
    typer.Option(
        "--max-concurrent",
        help="Trials at once (default: as many as the cluster fits, workers and Ray Data CPUs included).",
    ),
]

# Where `fame-ray pretrain` (the demo) leaves its run, used when --pretrained is not given.
DEMO_PRETRAINED_RUN = "pretrain-synthetic-tiny"


def search_space(items: list[str] | None, search_file: str | None) -> dict | None:
    """--search-file, then --search flags (a flag wins for its key); None when neither is given."""
    if not items and not search_file:
        return None
    space = load_search_file(search_file) if search_file else {}
    space.update(parse_search_flags(items or []))
    return space


def explicit_arch(arch: str | None, config_file: str | None, overrides: list[str] | None) -> str | None:
    """The arch the user asked for (flag, config file or --set), else None (the checkpoint decides)."""
    if arch:
        return arch
    values = apply_overrides(load_yaml(config_file) if config_file else {}, overrides or [])
    return (values.get("model") or {}).get("arch")


def default_pretrained(storage: str | None, s3_endpoint: str | None) -> str | None:
    """The demo pretraining run in the storage root, if it exists."""
    candidate = StorageConfig(path=storage or "", s3_endpoint=s3_endpoint or "").root() / DEMO_PRETRAINED_RUN
    return candidate.uri if candidate.exists() else None


def downstream_config(flags: dict, dataset, arch, config_file, preset, overrides) -> tuple[FinetuneConfig, str | None]:
    """(FinetuneConfig, the arch the user named or None), assembled as every command's config."""
    storage = flags.get("storage", {})
    flags = {
        **flags,
        "pretrained": flags.get("pretrained") or default_pretrained(storage.get("path"), storage.get("s3_endpoint")),
    }
    config = common.assemble(FinetuneConfig, presets.FINETUNE, flags, dataset, config_file, preset, overrides)
    return config, explicit_arch(arch, config_file, overrides)


def finetune(
    dataset: common.Dataset = None,
    data_root: common.DataRoot = None,
    split: common.Split = None,
    pretrained: Pretrained = None,
    mode: Mode = None,
    arch: Arch = None,
    samples: Samples = None,
    search: Search = None,
    search_file: SearchFile = None,
    epochs: Epochs = None,
    workers: Workers = None,
    gpu: Gpu = None,
    max_concurrent: MaxConcurrent = None,
    storage: common.Storage = None,
    s3_endpoint: common.S3Endpoint = None,
    run_name: common.RunName = None,
    config_file: common.ConfigFile = None,
    preset: common.Preset = None,
    overrides: common.Overrides = None,
    dry_run: common.DryRun = False,
) -> None:
    """Finetune (or linear-probe) a pretrained encoder: a Ray Tune sweep of Ray Train runs.

    Each trial is a Ray Train run (DDP over --workers) launched from a Tune trial; it trains on the training split
    minus a validation split (val_fraction, 10% of each class, seeded); ASHA stops weak trials early on the
    validation accuracy and the best trial is chosen on it; as many trials run at once as the cluster fits (workers
    and their Ray Data CPUs); a failed trial is retried once, then listed as failed.

    Testing follows the official protocol: data.eval_clips clips per video (default 10), centre crop of the frame
    as stored, the mean of the raw outputs per video; the test split is tested at epoch 0, every 10 epochs and at
    the last, and never read by the choice.

    The run directory gets results.md and results.json: dataset, split, mode, backbone, checkpoint, the pretraining
    recipe, the chosen trial's test accuracy (the unbiased number) beside its best test epoch (the official
    protocol's number, to compare with the paper), its hyperparameters, and every trial with its status.

    The same command again (same --run-name and --storage) resumes a sweep whose driver died: finished and failed
    trials are kept, unfinished ones continue from their last epoch. The same run name with other settings is
    refused.

    Without --data-root the dataset is read from $FAME_RAY_DATA/<Dataset> (default ~/fame-ray-data). The demo preset
    (tiny model, a few epochs) is used for the synthetic dataset or when no dataset is given; otherwise the official
    finetune recipe (SGD lr 0.025, wd 1e-4, 150 epochs, lr/10 at 60 and 120, dropout 0.7). --mode linear without
    --preset or --config starts from the official linear probe (eval.py --freeze: lr 30, wd 0, 100 epochs, lr/10 at
    60 and 80, batch 256, frozen backbone in eval mode, unnormalised training clips); on the synthetic dataset from
    the demo's probe. Flags and --set win over the preset.

    Examples:

      fame-ray finetune --pretrained fame-ray-runs/pretrain-synthetic-tiny

      fame-ray finetune --dataset hmdb51 --data-root ~/data/hmdb51 --split 1 --pretrained s3://bucket/runs/RUN

      fame-ray finetune --dataset ucf101 --pretrained fame_i3d_k400.pth --arch i3d --workers 4 --gpu

      fame-ray finetune --dataset ucf101 --pretrained RUN --samples 8 --search 'lr=loguniform(1e-3,1e-1)'

      fame-ray finetune --dataset ucf101 --pretrained RUN --mode linear --search-file space.yaml

      fame-ray finetune --dataset ucf101 --pretrained RUN --mode linear --dry-run    (the plan, nothing trains)

      fame-ray finetune --dataset ucf101 --pretrained RUN --set train.micro_batch=16    (16 clips at a time)

    train.micro_batch is 'auto' by default: each worker takes its batch as many clips at a time as the node's memory
    fits by the estimate (one log line says how many); only a trial that cannot fit one clip at a time is refused.
    """
    common.start_logging()
    flags = {
        "data": common.data_flags(dataset, data_root, split),
        "model": {"arch": arch},
        "train": {"epochs": epochs, "num_workers": workers, "use_gpu": gpu},
        "storage": common.storage_flags(storage, s3_endpoint, run_name),
        "pretrained": pretrained,
        "mode": mode,
        "samples": samples,
        "max_concurrent": max_concurrent,
        "search_space": search_space(search, search_file),
    }
    config, wanted_arch = downstream_config(flags, dataset, arch, config_file, preset, overrides)
    if dry_run:
        from fame_ray.commands import dry_run as plan  # torch and ray: loaded only to plan

        typer.echo(plan.finetune(config, wanted_arch))
        return
    from fame_ray.downstream.finetune import run_finetune  # torch and ray: loaded only to run
    from fame_ray.eval.report import render_markdown

    record = run_finetune(config, wanted_arch)
    typer.echo(render_markdown(record))
    typer.echo(f"results: {record['run_dir']}/results.md and results.json")
