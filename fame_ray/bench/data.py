"""`fame-ray bench data`: the data plane at steady state, on videos as long and as large as the
real datasets', each figure a ratio taken within one run.

Video sets (synthetic H.264, written once into the bench folder, then reused):
- `ucf101`: 175 frames at 25 fps (7 s), 320x240, UCF101's median clip;
- `kinetics400`: 250 frames at 25 fps (10 s), 340x256, Kinetics' usual resize;
each also as its training copy (`fame-ray data transcode`: short side 128, a keyframe every 16
frames). The synthetic originals carry x264's default of one keyframe per 250 frames, so a
random clip decodes from the start of the video, as with many real sources.

Figures, per set:
- `decode`: bare decord clips/s per core (one thread, one process, CPU time), original vs
  transcoded, alternating blocks so both see the same load, at least `seconds` each;
- `stages`: decode, crop and FAME-mask milliseconds per clip through the pipeline's own code
  (`pipeline.clip_pair`), in one process: the crop and FAME shares of decode;
- `ray_data` (transcoded copy): the real pretraining stream (`pipeline.pretrain_stream`, every
  CPU given to its tasks) in clips/s per CPU at steady state, against the bare decode per core
  of the same clips measured in this process right before and after: the efficiency;
- `pretrain` (ucf101 only, both copies): the data-wait share of the step time of the demo's tiny
  model trained by the real worker loop, fed by the pipeline, on this machine's CPUs.
A clip is one decoded clip: pretraining decodes two per video (query and key).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import os
import platform
import time
from pathlib import Path

import decord
import numpy as np
import ray
import torch

from fame_ray import runtime
from fame_ray.bench import train as bench_train
from fame_ray.config import DataConfig, PretrainConfig, build, presets
from fame_ray.data import catalog, manifest, synthetic, transcode
from fame_ray.data.clips import decode, pipeline, sampling
from fame_ray.data.transcode import EncodeSettings
from fame_ray.storage import Location

log = logging.getLogger(__name__)

TARGETS = {
    "transcoded_decode_speedup": 3.0,
    "ray_data_vs_bare_decode_per_cpu": 0.8,
    "pretrain_data_wait_transcoded": 0.20,
}
SETS = {
    "ucf101": {"frames": 175, "width": 320, "height": 240},
    "kinetics400": {"frames": 250, "width": 340, "height": 256},
}
TRANSCODE = EncodeSettings(short_side=128, gop=16)
BLOCK_S = 2.0  # seconds per side before switching to the other


def machine() -> dict:
    """CPU model, cores, load, library versions, date."""
    model = platform.processor() or "unknown"
    if os.path.exists("/proc/cpuinfo"):
        names = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
        model = names[0].split(":", 1)[1].strip() if names else model
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "python": platform.python_version(),
        "ray": ray.__version__,
        "torch": torch.__version__,
        "decord": decord.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def video_sets(root: str, videos: int, only: list[str]) -> dict:
    """{set: {"original": (data root, train manifest), "transcoded": (...)}}, written on first use."""
    out = {}
    for name in only:
        shape = SETS[name]
        original, copy = os.path.join(root, name), os.path.join(root, f"{name}-transcoded")
        if not os.path.exists(os.path.join(original, ".fame-ray-synthetic")):
            log.info(
                "writing %d %s-like videos (%d frames, %dx%d)",
                videos,
                name,
                shape["frames"],
                shape["width"],
                shape["height"],
            )
            synthetic.write_dataset(
                original, "ucf101", num_classes=4, videos_per_class=max(2, videos // 4), force=True, seed=0, **shape
            )
        data = DataConfig(dataset="ucf101", data_root=original)
        if not os.path.isdir(copy):
            transcode.run(data, data.location(), Location.parse(copy), TRANSCODE)
        out[name] = {
            side: (path, catalog.ensure(dataclasses.replace(data, data_root=path), Location.parse(path))["train"])
            for side, path in (("original", original), ("transcoded", copy))
        }
    return out


def _rows(location: Location) -> list[dict]:
    table = manifest.read(location)
    return [
        dict(zip(table.column_names, values))
        for values in zip(*(table[name].to_pylist() for name in table.column_names))
    ]


class Alternating:
    """Run several workloads in turns of BLOCK_S seconds until each has had `seconds` of wall
    time; per side: items, CPU seconds of this process, wall seconds."""

    def __init__(self, sides: dict):
        self.sides = sides
        self.totals = {name: {"items": 0, "cpu_s": 0.0, "wall_s": 0.0} for name in sides}

    def run(self, seconds: float) -> dict:
        while min(total["wall_s"] for total in self.totals.values()) < seconds:
            for name, work in self.sides.items():
                total = self.totals[name]
                cpu, wall = time.process_time(), time.perf_counter()
                while time.perf_counter() - wall < min(BLOCK_S, seconds):
                    total["items"] += work()
                total["cpu_s"] += time.process_time() - cpu
                total["wall_s"] += time.perf_counter() - wall
        return {
            name: {
                **total,
                "per_cpu_s": total["items"] / total["cpu_s"],
                "per_wall_s": total["items"] / total["wall_s"],
            }
            for name, total in self.totals.items()
        }


def _clip_source(rows: list[dict], data: DataConfig, seed: int):
    """A function that decodes one random clip (16x2 by default) of a random video: 1 clip."""
    rng = np.random.default_rng(seed)
    bare = dataclasses.replace(data, decode_threads=1, decode_timeout_s=0.0)  # one thread, no watchdog

    def one() -> int:
        row = rows[int(rng.integers(len(rows)))]
        start, end = int(row["start_frame"]), int(row["end_frame"])
        offsets = sampling.random_offsets(end - start, data.clip_span, 1, rng)
        decode.decode_clips(Location.parse(row["path"]), range(start, end), offsets, bare, row["decoder"])
        return 1

    return one


def decode_speed(manifests: dict, data: DataConfig, seconds: float, seed: int = 0) -> dict:
    """Bare decode clips/s per core (CPU time), original vs transcoded, one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        measured = Alternating(
            {side: _clip_source(_rows(location), data, seed) for side, location in manifests.items()}
        ).run(seconds)
    finally:
        torch.set_num_threads(threads)
    out = {
        side: {
            "clips": m["items"],
            "cpu_s": round(m["cpu_s"], 1),
            "clips_per_s_per_core": m["per_cpu_s"],
            "clips_per_s_wall": m["per_wall_s"],
        }
        for side, m in measured.items()
    }
    out["speedup"] = out["transcoded"]["clips_per_s_per_core"] / out["original"]["clips_per_s_per_core"]
    return out


def pretrain_shard(
    location: Location, data: DataConfig, per_worker: int, steps: int, seed: int = 0
) -> pipeline.PretrainShard:
    """One worker's stream over every video of the manifest, epoch after epoch."""
    videos = manifest.read(location).num_rows
    per_worker = min(per_worker, videos)
    sampler = sampling.EpochSampler(videos, videos // per_worker, per_worker, per_worker, 0, seed)
    return pipeline.PretrainShard(location, data, sampler, 0, steps, masks=True)


def stage_costs(location: Location, data: DataConfig, seconds: float) -> dict:
    """Per-clip decode, crop and FAME-mask ms through the pipeline's own row function."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    shard = pretrain_shard(location, data, 8, 10**9)
    per_worker = shard.sampler.per_worker_batch
    videos = pipeline.videos_of(location)
    sums = {"decode_ms": 0.0, "crop_ms": 0.0, "mask_ms": 0.0}
    rows, started, index = 0, time.perf_counter(), 0
    try:
        while time.perf_counter() - started < seconds:
            epoch, video = shard.sampler.video(index // per_worker, index % per_worker)
            row = pipeline.clip_pair(videos, video, epoch, shard)
            for name in sums:
                sums[name] += float(row[name])
            rows, index = rows + 1, index + 1
    finally:
        torch.set_num_threads(threads)
    means = {name: total / rows for name, total in sums.items()}
    return {
        "pairs": rows,
        **means,
        "crop_share_of_decode": means["crop_ms"] / means["decode_ms"],
        "fame_share_of_decode": means["mask_ms"] / means["decode_ms"],
    }


def _tree_cpu_s() -> float:
    """CPU seconds used so far by this process and every process under it (a local Ray instance:
    its GCS, raylet and workers), the reaped ones included."""
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:4])  # user, system, and those of reaped children
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):  # gone meanwhile: its parent reaps it and counts it
            total += sum(child.cpu_times()[:4])

    return total


def ray_data_efficiency(
    location: Location, data: DataConfig, seconds: float, per_worker: int = 16, warmup_steps: int = 4
) -> dict:
    """The pretraining stream with every CPU given to its tasks, at steady state, against the bare
    decode per core of the same videos in this process (measured before and after).

    Per CPU two ways: by wall time over the CPUs Ray has (what a quiet machine delivers), and by
    the CPU seconds the whole local Ray instance and this consumer spent (fair on a shared
    machine: it counts every cost of the pipeline, Ray's own included, and nothing else).
    """
    cpus = runtime.cluster_cpus()
    tasks = max(1, int(cpus))
    rows = _rows(location)
    bare_before = Alternating({"bare": _clip_source(rows, data, 1)}).run(min(seconds, 10))["bare"]["per_cpu_s"]
    steps = 2000  # one Ray Data execution, as the training worker streams them
    shard = pretrain_shard(location, data, per_worker, steps)
    per_worker = shard.sampler.per_worker_batch
    stream = pipeline.pretrain_stream(shard, range(steps), tasks, cpus / tasks)
    clips, started, timed, cpu_start = 0, None, 0.0, 0.0
    for index, batch in enumerate(
        stream.iter_batches(batch_size=per_worker, batch_format="numpy", prefetch_batches=tasks)
    ):
        if index == warmup_steps:
            started, cpu_start = time.perf_counter(), _tree_cpu_s()
        elif started is not None:
            clips += 2 * len(batch["label"])
            timed = time.perf_counter() - started
            if timed >= seconds:
                break
    cpu_used = _tree_cpu_s() - cpu_start
    bare_after = Alternating({"bare": _clip_source(rows, data, 2)}).run(min(seconds, 10))["bare"]["per_cpu_s"]
    bare = (bare_before + bare_after) / 2
    rate = clips / timed
    return {
        "cpus": cpus,
        "tasks": tasks,
        "per_worker_batch": per_worker,
        "seconds": round(timed, 1),
        "clips": clips,
        "cpu_s": round(cpu_used, 1),
        "pipeline_clips_per_s": rate,
        "pipeline_clips_per_s_per_cpu": rate / cpus,
        "pipeline_clips_per_cpu_s": clips / cpu_used,
        "bare_decode_clips_per_s_per_core": bare,
        "bare_decode_before_after": [bare_before, bare_after],
        "efficiency": rate / cpus / bare,
        "efficiency_by_cpu_time": clips / cpu_used / bare,
    }


def pretrain_data_wait(sides: dict, steps: int, warmup: int = 5) -> dict:
    """Data-wait share of the tiny model's steps fed by the pipeline, original vs transcoded."""
    out = {}
    for side, (root, location) in sides.items():
        # The tiny model's demo recipe, its batch cut to what the small training split holds.
        videos = manifest.read(location).num_rows
        batch = min(32, 1 << (videos.bit_length() - 1))
        cfg = build(
            PretrainConfig,
            bench_train.bench_config(False, []),
            {"data": {"dataset": "ucf101", "data_root": root}, "train": {"global_batch": batch}},
        )
        out[side] = bench_train.pipeline_run(cfg, steps, warmup)
    return out


def bench_data_config() -> DataConfig:
    """The clips of the standard recipes: 16 frames at stride 2, 112 crops, one decode thread."""
    return dataclasses.replace(
        presets.demo_pretrain().data, frames_per_clip=16, temporal_stride=2, crop_size=112, decode_threads=1
    )


def run(
    root: str, videos: int = 24, seconds: float = 30.0, sets: list[str] | None = None, pretrain_steps: int = 40
) -> dict:
    """Every figure on every set; the JSON-ready result."""
    sets = sets or list(SETS)
    data = bench_data_config()
    runtime.connect_ray()
    made = video_sets(root, videos, sets)
    result = {
        "machine": machine(),
        "targets": TARGETS,
        "setup": {
            "videos_per_set": videos,
            "seconds_per_figure": seconds,
            "clip": f"{data.frames_per_clip}x{data.temporal_stride} at {data.crop_size}",
            "transcode": dataclasses.asdict(TRANSCODE),
            "sets": {name: SETS[name] for name in sets},
            "ray_cpus": runtime.cluster_cpus(),
        },
    }
    for name, sides in made.items():
        manifests = {side: location for side, (_, location) in sides.items()}
        log.info("%s: bare decode, original vs transcoded", name)
        figures = {"decode": decode_speed(manifests, data, seconds)}
        log.info("%s: pipeline stages", name)
        figures["stages"] = {side: stage_costs(location, data, seconds) for side, location in manifests.items()}
        log.info("%s: Ray Data stream against bare decode", name)
        figures["ray_data"] = ray_data_efficiency(manifests["transcoded"], data, seconds)
        result[name] = figures
    if pretrain_steps and "ucf101" in made:
        log.info("ucf101: tiny-model pretraining fed by the pipeline, original vs transcoded")
        result["pretrain"] = pretrain_data_wait(made["ucf101"], pretrain_steps)
    first = result[sets[0]]
    result["met"] = {
        "transcoded_decode_speedup": first["decode"]["speedup"] >= TARGETS["transcoded_decode_speedup"],
        "ray_data_vs_bare_decode_per_cpu": first["ray_data"]["efficiency"]
        >= TARGETS["ray_data_vs_bare_decode_per_cpu"],
    }
    if "pretrain" in result:
        result["met"]["pretrain_data_wait_transcoded"] = (
            result["pretrain"]["transcoded"]["data_wait_share"] <= TARGETS["pretrain_data_wait_transcoded"]
        )
    return result
