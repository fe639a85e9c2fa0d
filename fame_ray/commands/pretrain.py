"""`fame-ray pretrain`: MoCo + FAME pretraining on Ray Train."""

from __future__ import annotations

from typing import Annotated

import typer

from fame_ray.commands import common
from fame_ray.config import ARCHS, METHODS, PretrainConfig, presets
from fame_ray.errors import UserError

Arch = Annotated[str | None, typer.Option("--arch", help=f"Backbone: {', '.join(ARCHS)}.")]
Workers = Annotated[
    str | None,
    typer.Option(
        "--workers",
        "-w",
        help="Training workers: N, or MIN-MAX for an elastic run (grows and shrinks with the cluster).",
    ),
]
Gpu = Annotated[bool | None, typer.Option("--gpu/--cpu", help="One GPU per worker (nccl, bf16 autocast).")]
Batch = Annotated[
    int | None,
    typer.Option(
        "--batch",
        "-b",
        help=(
            "Global batch (clips per step over all workers); kept when the worker count changes. Each worker takes "
            "its share as many clips at a time as memory fits (train.micro_batch: auto; --set train.micro_batch=N)."
        ),
    ),
]
Epochs = Annotated[int | None, typer.Option("--epochs", help="Passes over the training split.")]
MaxSteps = Annotated[
    int | None, typer.Option("--max-steps", help="Stop after this many optimizer steps (0 = all epochs).")
]
Resume = Annotated[
    str | None, typer.Option("--resume", help="Resume this existing run (an error if it does not exist).")
]
Method = Annotated[
    str | None,
    typer.Option(
        "--method",
        help=(
            f"The method: {', '.join(METHODS)} (fame: the paper; moco: the plain baseline; be: Background Erasing as "
            "released; moco_be_mix: BE's frame mixing in FAME's recipe, an ablation)."
        ),
    ),
]
Verbose = Annotated[
    bool,
    typer.Option(
        "--verbose",
        help=(
            "Let Ray's own logs through (workers, Ray Data, Ray Train); by default you see the progress line, the "
            "summary and errors."
        ),
    ),
]


def parse_workers(text: str | None) -> dict:
    """'4' -> {num_workers: 4}; '2-8' -> {min_workers: 2, num_workers: 8}."""
    if text is None:
        return {}
    low, dash, high = text.partition("-")
    try:
        values = (int(low), int(high)) if dash else (int(low),)
    except ValueError:
        raise UserError(f"--workers '{text}' is not N or MIN-MAX", "e.g. --workers 4 or --workers 2-8") from None
    if any(v < 1 for v in values) or (dash and values[0] > values[1]):
        raise UserError(f"--workers '{text}' must be positive, MIN <= MAX", "e.g. --workers 2-8")
    return {"num_workers": values[-1], "min_workers": values[0] if dash else 0}


def pretrain(
    dataset: common.Dataset = None,
    data_root: common.DataRoot = None,
    split: common.Split = None,
    csv: common.CsvList = None,
    arch: Arch = None,
    method: Method = None,
    workers: Workers = None,
    gpu: Gpu = None,
    batch: Batch = None,
    epochs: Epochs = None,
    max_steps: MaxSteps = None,
    storage: common.Storage = None,
    s3_endpoint: common.S3Endpoint = None,
    run_name: common.RunName = None,
    resume: Resume = None,
    config_file: common.ConfigFile = None,
    preset: common.Preset = None,
    overrides: common.Overrides = None,
    verbose: Verbose = False,
    dry_run: common.DryRun = False,
) -> None:
    """Pretrain a video encoder with MoCo + FAME on Ray Train.

    With no arguments: the demo (local Ray, the built-in synthetic dataset, a tiny 3D CNN, 2 workers, a few minutes
    on 2 CPUs), which ends with a read-out of what was learned: a linear probe of the frozen features on the
    dataset's held-out split, next to a randomly initialised encoder and chance. The preset is 'demo' when no
    --config is given and the dataset is synthetic (or not given); otherwise the official recipe (docs/recipe.md).

    Running the same command again (same --run-name and --storage) resumes from the latest complete checkpoint, from
    any machine; --workers MIN-MAX makes the run elastic.

    Examples:

      fame-ray pretrain

      fame-ray pretrain --dataset ucf101 --data-root ~/data/UCF101 --arch r2plus1d_18 --workers 8 --gpu

      fame-ray pretrain --config jobs/pretrain-k400-i3d.yaml --set train.epochs=100

      fame-ray pretrain --workers 2-8 --storage s3://bucket/runs --s3-endpoint http://minio:9000

      fame-ray pretrain --resume pretrain-synthetic-tiny --max-steps 400

      fame-ray pretrain --dataset ucf101 --arch r2plus1d_18 --set train.micro_batch=8    (8 clips at a time)

      fame-ray pretrain --config jobs/pretrain-ucf101-r21d.yaml --dry-run    (config, protocol and plan; no training)

    train.micro_batch is 'auto' by default: each worker takes its batch as many clips at a time as the node's memory
    fits by the estimate (one log line says how many); only a run that cannot fit one clip at a time is refused.
    """
    common.start_logging()
    flags = {
        "data": common.data_flags(dataset, data_root, split, csv),
        "method": method,
        "model": {"arch": arch},
        "train": {
            "use_gpu": gpu,
            "global_batch": batch,
            "epochs": epochs,
            "max_steps": max_steps,
            **parse_workers(workers),
        },
        "storage": common.storage_flags(storage, s3_endpoint, run_name, resume),
    }
    config = common.assemble(PretrainConfig, presets.PRETRAIN, flags, dataset, config_file, preset, overrides)
    if dry_run:
        from fame_ray.commands import dry_run as plan  # torch and ray: loaded only to plan

        typer.echo(plan.pretrain(config))
        return
    from fame_ray.pretrain.driver import run_pretrain  # torch and ray: loaded only to run

    try:
        result = run_pretrain(config, verbose)
    except KeyboardInterrupt:
        stopped(config)
        raise typer.Exit(130) from None  # as shells expect after Ctrl-C (128 + SIGINT)
    name = config.run_name()
    typer.echo(f"run {name}: checkpoints, metrics.jsonl and TensorBoard logs in {config.run_location()}")
    if result.metrics and "acc1_mean" in result.metrics:
        typer.echo(
            f"contrastive acc@1 {result.metrics['acc1_mean']:.3f} over the last {config.train.log_every} steps "
            f"to step {result.metrics.get('step')} "
            f"(chance {1 / (config.moco.queue_size + 1):.4f}: the positive among {config.moco.queue_size} "
            "queued negatives)"
        )
    if result.metrics and "readout" in result.metrics:
        typer.echo(
            f"read-out: a linear probe on the frozen features tells held-out videos' classes apart "
            f"{100 * result.metrics['readout']:.1f}% of the time at step {result.metrics.get('step')}, "
            f"{100 * result.metrics['readout_start']:.1f}% when this session started "
            f"(chance {100 / len(catalog_classes(config)):.1f}%)"
        )
    if config.train.readout:
        from fame_ray.downstream.features import probe_readout

        found = probe_readout(config, config.run_location())
        typer.echo(
            "read-out: a linear probe on the frozen features tells the test split's classes apart "
            f"{100 * found['learned']:.1f}% of the time "
            f"(randomly initialised encoder {100 * found['random_init']:.1f}%, chance {100 * found['chance']:.1f}%)"
        )
    typer.echo(
        f"to resume or extend it, rerun with --run-name {name} (e.g. --max-steps N); see `fame-ray runs show {name}`"
    )


def stopped(config) -> None:
    """After Ctrl-C: the step the run reached, the checkpoint it keeps, and the command that resumes."""
    from fame_ray import checkpoints

    name = config.run_name()
    try:
        summary = checkpoints.summarize(config.storage.root(), name)
    except Exception:  # noqa: BLE001 - the user stopped the run; say what is known, never a traceback
        summary = None
    if summary is None or summary.latest is None:
        typer.echo(f"stopped before the first checkpoint of run {name}: rerunning starts it again", err=True)
        return
    typer.echo(
        f"stopped at step {summary.last_step} of run {name}; kept: {summary.latest.name} (step "
        f"{summary.latest.step}); resume with the same command, or: fame-ray pretrain --resume {name}",
        err=True,
    )


def catalog_classes(config) -> list[str]:
    """The class names of the run's dataset (its manifests exist once the run has started)."""
    from fame_ray.data import catalog

    return catalog.class_names(config.data, config.data_location())
