"""`fame-ray bench data` and `fame-ray bench train`: throughput measurements written as JSON."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from fame_ray.commands import common

Out = Annotated[str, typer.Option("--out", "-o", help="JSON file to write.")]


# ---------------------------------------------------------------------------------------
# bench data: a thin wrapper over fame_ray.bench.data.run

Videos = Annotated[int, typer.Option("--videos", min=4, help="Synthetic videos to measure on (two clips each).")]
Batch = Annotated[int, typer.Option("--batch", min=2, help="FAME batch size (the per-worker batch).")]
Repeats = Annotated[int, typer.Option("--repeats", min=1, help="In-process repetitions (best one counts).")]
Epochs = Annotated[int, typer.Option("--epochs", min=1, help="Timed passes of the Ray Data measurement.")]
BenchRoot = Annotated[Optional[str], typer.Option("--data-root", help="UCF101-layout folder to measure on (default: write 320x240 synthetic videos to a temporary folder).")]
NoRay = Annotated[bool, typer.Option("--no-ray", help="Skip the Ray Data measurement (in-process figures only).")]


def bench_data(
    out: Out = "bench-data.json",
    data_root: BenchRoot = None,
    videos: Videos = 32,
    batch: Batch = 8,
    repeats: Repeats = 3,
    epochs: Epochs = 2,
    no_ray: NoRay = False,
    overrides: common.Overrides = None,
) -> None:
    """Measure bare decord decoding against the full decode + crop + FAME pipeline.

    Writes synthetic videos (or uses --data-root, a UCF101-layout folder), then reports
    in JSON: bare decode clips/s, pipeline clips/s, their ratio, FAME's time per clip as a
    share of decode time, clips/s per CPU (Ray Data, local instance), and the machine.
    Targets: pipeline >= 80% of bare decode, FAME < 15% of decode time per clip.

    Examples:

      fame-ray bench data --out bench-data.json

      fame-ray bench data --videos 64 --set data.crop_size=224 --out bench-224.json

      fame-ray bench data --no-ray --repeats 5
    """
    common.start_logging()
    common.check_output_file(out)
    import json

    from fame_ray import runtime
    from fame_ray.bench import data as bench  # torch, decord and ray: loaded only to run

    if not no_ray:
        runtime.connect_ray()
    result = bench.run(data_root or "", videos, batch, repeats, epochs, with_ray=not no_ray, overrides=overrides or [])
    with open(out, "w") as handle:
        json.dump(result, handle, indent=2)
    measured = result["in_process"]["cpu"]
    typer.echo(f"bare decode {measured['decode_clips_per_s']:.1f} clips/s, pipeline {measured['pipeline_clips_per_s']:.1f} clips/s ({measured['pipeline_vs_decode']:.0%}), FAME {measured['fame_share_of_decode']:.0%} of decode time per clip (one thread, CPU time)")
    if "ray_data" in result:
        ray_figures = result["ray_data"]
        typer.echo(f"Ray Data on {ray_figures['cpus']:g} CPUs: decode {ray_figures['decode_clips_per_s']:.1f} clips/s, pipeline {ray_figures['pipeline_clips_per_s']:.1f} clips/s ({ray_figures['pipeline_vs_decode']:.0%}), {ray_figures['pipeline_clips_per_s_per_cpu']:.1f} clips/s per CPU")
    typer.echo(f"wrote {out}")


# ---------------------------------------------------------------------------------------
# bench train: a thin wrapper over fame_ray.bench.train.run


Gpu = Annotated[bool, typer.Option("--gpu", help="R(2+1)D-18 at 16x112x112, bf16, on one GPU (instead of the tiny CPU model).")]
Steps = Annotated[int, typer.Option("--steps", min=5, help="Timed training steps per measurement (after 5 warmup steps).")]
NoPipeline = Annotated[bool, typer.Option("--no-pipeline", help="Skip the measurement fed by the real Ray Data pipeline.")]


def bench_train(
    out: Out = "bench-train.json",
    gpu: Gpu = False,
    steps: Steps = 30,
    no_pipeline: NoPipeline = False,
    overrides: common.Overrides = None,
) -> None:
    """Measure the pretraining step: plain PyTorch vs Ray Train on the same batches (overhead %,
    target under 10%), and the data-wait share when the real pipeline feeds it.

    Examples:

      fame-ray bench train --out bench-train.json

      fame-ray bench train --gpu --steps 50 --out bench-train-gpu.json
    """
    common.start_logging()
    common.check_output_file(out)
    import json

    from fame_ray.bench import train as bench  # torch and ray: loaded only to run

    result = bench.run(overrides=overrides or [], gpu=gpu, steps=steps, pipeline=not no_pipeline)
    with open(out, "w") as handle:
        json.dump(result, handle, indent=2)
    typer.echo(f"plain PyTorch {result['plain']['clips_per_s']:.1f} clips/s, Ray Train {result['ray_train']['clips_per_s']:.1f} clips/s (overhead {result['ray_train_overhead']:.1%})")
    if "pipeline" in result:
        typer.echo(f"fed by the Ray Data pipeline: {result['pipeline']['clips_per_s']:.1f} clips/s, data wait {result['pipeline']['data_wait_share']:.0%} of step time")
    typer.echo(f"wrote {out}")
