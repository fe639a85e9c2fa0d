"""`fame-ray bench data` and `fame-ray bench train`: throughput measurements written as JSON."""

from __future__ import annotations

from typing import Annotated

import typer

from fame_ray.commands import common
from fame_ray.errors import UserError

Out = Annotated[str, typer.Option("--out", "-o", help="JSON file to write (an existing one needs --force).")]


# ---------------------------------------------------------------------------------------
# bench data: a thin wrapper over fame_ray.bench.data.run

Videos = Annotated[int, typer.Option("--videos", min=4, help="Synthetic videos per set (written once, then reused).")]
Seconds = Annotated[
    float,
    typer.Option("--seconds", min=0.5, help="Seconds of work per side of every figure (30 for figures to report)."),
]
Sets = Annotated[
    list[str] | None,
    typer.Option(
        "--set-name",
        help="Video sets: ucf101 (175 frames, 320x240), kinetics400 (250 frames, 340x256); repeatable, default both.",
    ),
]
BenchRoot = Annotated[
    str,
    typer.Option(
        "--root", help="Folder of the benchmark's videos and their transcoded copies (kept for the next run)."
    ),
]
PretrainSteps = Annotated[
    int, typer.Option("--pretrain-steps", min=0, help="Timed steps of the tiny-model pretraining per copy (0 = skip).")
]


def bench_data(
    out: Out = "bench-data.json",
    root: BenchRoot = "fame-ray-bench",
    videos: Videos = 24,
    seconds: Seconds = 30.0,
    set_name: Sets = None,
    pretrain_steps: PretrainSteps = 40,
    force: common.Force = False,
) -> None:
    """Measure the data plane at steady state on videos of the real datasets' length and size,
    original and transcoded: bare decode per core, the pretraining stream's clips/s per CPU
    against it, the crop and FAME shares of decode, the stream (and its Ray Data form) against a
    torch DataLoader over the same rows (first set), and the data-wait share of a tiny-model
    pretraining. Every figure is a ratio taken in one run; JSON out, with the machine.

    Targets: transcoded decode 3x the original per core; the pretraining stream per CPU at least
    0.8 of bare decode per core; the stream at least 0.9 of the DataLoader's clips/s, with the CPUs
    at least 90% busy and at most 1.15x its marginal CPU per clip; data wait under 20% of the
    step on transcoded data.

    Examples:

      fame-ray bench data --out bench-data.json

      fame-ray bench data --set-name ucf101 --seconds 5 --pretrain-steps 0 --out quick.json
    """
    common.start_logging()
    common.check_output_file(out, force=force)
    root = common.local_path(root, "--root")
    import json

    from fame_ray.bench import data as bench  # torch, decord and ray: loaded only to run

    unknown = sorted(set(set_name or []) - set(bench.SETS))
    if unknown:
        raise UserError(f"unknown --set-name {', '.join(unknown)}", f"choose from {', '.join(bench.SETS)}")
    result = bench.run(root, videos, seconds, set_name, pretrain_steps)
    common.write_output_file(out, json.dumps(result, indent=2).encode())
    for name in set_name or bench.SETS:
        figures = result[name]
        decode, stream = figures["decode"], figures["pretrain_stream"]
        stages = figures["stages"]["transcoded"]
        typer.echo(
            f"{name}: bare decode {decode['original']['clips_per_s_per_core']:.1f} -> "
            f"{decode['transcoded']['clips_per_s_per_core']:.1f} clips/s per core transcoded "
            f"({decode['speedup']:.1f}x); "
            f"pretraining stream {stream['pipeline_clips_per_s_per_cpu']:.1f} clips/s per CPU = "
            f"{stream['efficiency']:.2f} of bare decode; "
            f"crop {stages['crop_share_of_decode']:.0%}, FAME {stages['fame_share_of_decode']:.0%} of decode "
            f"({stages['mask_ms']:.1f} ms per query clip; {stages['mask_ms_per_clip_batched']:.1f} over a batch on "
            "the trainer, fame.mask_on=trainer)"
        )
        if "loader_vs_ray" in figures:
            anchor = figures["loader_vs_ray"]
            typer.echo(
                f"{name}: pretraining stream {anchor['ray']['clips_per_s']:.1f} clips/s = {anchor['ratio']:.2f} of "
                f"a torch DataLoader's {anchor['dataloader']['clips_per_s']:.1f} ({anchor['dataloader_workers']} "
                f"workers; its Ray Data form {anchor['ray_data']['vs_dataloader']:.2f}); CPUs busy "
                f"{anchor['ray']['busy_share']:.0%} vs {anchor['dataloader']['busy_share']:.0%}; "
                f"idle Ray {anchor['ray_idle_cpus']:.2f} CPUs"
            )
    for arch, feed in result["gpu_feed"].items():
        if arch != "basis":
            typer.echo(
                f"on paper, {arch} at {feed['clip']}: {feed['step_gflop_per_row']:.0f} GFLOP per row; an {feed['gpu']} "
                + ", ".join(
                    f"at {f['assumed_mfu']:.0%} of its bf16 peak needs {f['data_cpus']:.0f}" for f in feed["feeds"]
                )
                + f" data CPUs ({feed['data_cpu_ms_per_row_in_process']:.0f} CPU-ms per row here)"
            )
    if "pretrain" in result:
        waits = {side: figures["data_wait_share"] for side, figures in result["pretrain"].items()}
        typer.echo(
            f"tiny-model pretraining: data wait {waits['original']:.0%} of the step on the original, "
            f"{waits['transcoded']:.0%} transcoded"
        )
    typer.echo(f"wrote {out}")


# ---------------------------------------------------------------------------------------
# bench train: a thin wrapper over fame_ray.bench.train.run


Gpu = Annotated[
    bool, typer.Option("--gpu", help="R(2+1)D-18 at 16x112x112, bf16, on one GPU (instead of the tiny CPU model).")
]
Steps = Annotated[
    int, typer.Option("--steps", min=5, help="Timed training steps per measurement (after 5 warmup steps).")
]
NoPipeline = Annotated[bool, typer.Option("--no-pipeline", help="Skip the measurement fed by the real data pipeline.")]


def bench_train(
    out: Out = "bench-train.json",
    gpu: Gpu = False,
    steps: Steps = 30,
    no_pipeline: NoPipeline = False,
    overrides: common.Overrides = None,
    force: common.Force = False,
) -> None:
    """Measure the pretraining step: plain PyTorch vs Ray Train on the same batches (overhead %,
    target under 10%), and the data-wait share when the real pipeline feeds it.

    Examples:

      fame-ray bench train --out bench-train.json

      fame-ray bench train --gpu --steps 50 --out bench-train-gpu.json
    """
    common.start_logging()
    common.check_output_file(out, force=force)
    import json

    from fame_ray.bench import train as bench  # torch and ray: loaded only to run

    result = bench.run(overrides=overrides or [], gpu=gpu, steps=steps, pipeline=not no_pipeline)
    common.write_output_file(out, json.dumps(result, indent=2).encode())
    typer.echo(
        f"plain PyTorch {result['plain']['clips_per_s']:.1f} clips/s, Ray Train "
        f"{result['ray_train']['clips_per_s']:.1f} clips/s (overhead {result['ray_train_overhead']:.1%})"
    )
    used = result["utilisation"]
    typer.echo(
        (
            f"model FLOPs per clip (counted): {used['flops_per_clip'] / 1e9:.1f} GFLOP; "
            f"{used['achieved_tflops']:.3f} TFLOP/s"
        )
        + (f", MFU {used['mfu']:.1%} of the {used['gpu']}'s bf16 peak" if used.get("mfu") else "")
    )
    extra = result["ray_train"]["extra_s_per_step"]
    typer.echo(
        f"extra time per step through Ray Train: {1000 * extra['total']:.0f} ms = compute "
        f"{1000 * extra['compute']:.0f} + data wait {1000 * extra['data_wait']:.0f} + bookkeeping "
        f"{1000 * extra['bookkeeping']:.0f} ms"
    )
    for method, cost in result["methods"].items():
        typer.echo(
            f"{method}: {cost['clips_per_s']:.1f} clips/s, {cost['flops_per_clip'] / 1e9:.2f} GFLOP per clip and step"
        )
    if "pipeline" in result:
        typer.echo(
            f"fed by the data pipeline: {result['pipeline']['clips_per_s']:.1f} clips/s, data wait "
            f"{result['pipeline']['data_wait_share']:.0%} of step time"
        )
    typer.echo(f"wrote {out}")
