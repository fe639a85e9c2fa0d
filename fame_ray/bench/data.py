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
  (`pipeline.clip_pair`), in one process: the crop and FAME shares of decode; and the mask per
  clip computed over a batch of 16 of those query clips at once (`fame.batch_masks`, what
  `fame.mask_on=trainer` costs a CPU training worker);
- `pretrain_stream` (transcoded copy): the real pretraining stream (`pipeline.pretrain_stream`,
  the default `data.stream` 'tasks', every CPU given to its tasks) in clips/s per CPU at steady
  state, against the bare decode per core of the same clips measured in this process right
  before and after: the efficiency;
- `loader_vs_ray` (the first set, ucf101 by default; transcoded copy): the anchor users would
  use instead, a torch DataLoader with one worker process per CPU Ray has over a map-style
  Dataset of the same rows by the same row function (`PretrainRows`: decode, crop, FAME mask),
  against the pretraining stream (`ray`: the default, one Ray task per step) and its Ray Data
  form (`ray_data`: `data.stream=ray_data`), in alternating rounds (a fresh iterator each,
  warmup batches left out): clips/s of each (`ratio` = the default stream / DataLoader), the CPU
  seconds of this process tree per clip and the CPUs' busy share, the CPUs the idle Ray
  instance burns (`ray_idle_cpus`), each side's marginal CPU per clip (idle Ray taken off;
  `marginal_ratio` = the default stream / DataLoader) and a linear projection of both to nodes
  of 8, 16 and 64 CPUs from those per-clip costs;
- `gpu_feed` (on paper): the data CPUs one GPU needs for R(2+1)D-18 at 16x112 (the ucf101 set's
  transcoded copy) and I3D at 16x224 (the kinetics400 set's originals), from the model FLOPs of
  a training step per row (counted), an H200 at an assumed 30% or 50% of its bf16 peak, and the
  CPU per row measured here times the stream's marginal ratio;
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
from fame_ray.data.clips import decode, fame, pipeline, sampling
from fame_ray.data.transcode import EncodeSettings
from fame_ray.storage import Location

log = logging.getLogger(__name__)

TARGETS = {
    "transcoded_decode_speedup": 3.0,
    "stream_vs_bare_decode_per_cpu": 0.8,
    "pretrain_data_wait_transcoded": 0.20,
    "ray_vs_dataloader": 0.9,
    "data_cpus_busy": 0.9,
    "marginal_cpu_vs_in_process": 1.15,
}
SETS = {
    "ucf101": {"frames": 175, "width": 320, "height": 240},
    "kinetics400": {"frames": 250, "width": 340, "height": 256},
}
TRANSCODE = EncodeSettings(short_side=128, gop=16)
BLOCK_S = 2.0  # seconds per side before switching to the other
STREAM_STEPS = 2000  # steps of one Ray Data execution, as the training worker streams them
PROJECTION_CPUS = (8, 16, 64)  # node sizes of the DataLoader-vs-Ray projection
# The models `gpu_feed` sizes the data side for: (arch, preset, video set, copy its clips come from).
GPU_FEED = (
    ("r2plus1d_18", presets.ucf101_r21d_pretrain, "ucf101", "transcoded"),
    ("i3d", presets.k400_i3d_pretrain, "kinetics400", "original"),  # 224 crops: the 128-side copy is too small
)
FEED_GPU = "H200"
ASSUMED_MFU = (0.3, 0.5)  # shares of the bf16 peak a training step might reach (assumptions, labelled)
BATCHED_MASKS = 16  # query clips of one per-worker batch, for the mask computed on the trainer
IDLE_S = 5.0  # seconds of idle Ray measured, before and after the DataLoader-vs-Ray rounds


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
        if not os.path.exists(os.path.join(original, synthetic.MARKER)):
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
    rows, started, index, queries = 0, time.perf_counter(), 0, []
    try:
        while time.perf_counter() - started < seconds:
            epoch, video = shard.sampler.video(index // per_worker, index % per_worker)
            row = pipeline.clip_pair(videos, video, epoch, shard)
            for name in sums:
                sums[name] += float(row[name])
            rows, index = rows + 1, index + 1
            if len(queries) < BATCHED_MASKS:
                queries.append(torch.from_numpy(row["view_q"]))
        batched = batched_mask_ms(torch.stack(queries), seconds=min(seconds, 5.0))
    finally:
        torch.set_num_threads(threads)
    means = {name: total / rows for name, total in sums.items()}
    return {
        "pairs": rows,
        **means,
        "crop_share_of_decode": means["crop_ms"] / means["decode_ms"],
        "fame_share_of_decode": means["mask_ms"] / means["decode_ms"],
        "mask_ms_per_clip_batched": batched,
    }


def batched_mask_ms(clips: torch.Tensor, seconds: float) -> float:
    """Milliseconds per clip of `fame.batch_masks` over a whole batch of uint8 query clips in this
    process (what `fame.mask_on=trainer` costs a CPU training worker), repeated for `seconds`."""
    generator = torch.Generator().manual_seed(0)
    fame.batch_masks(clips, 0.5, generator)  # warm-up
    batches, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        fame.batch_masks(clips, 0.5, generator)
        batches += 1
    return 1000 * (time.perf_counter() - started) / (batches * clips.shape[0])


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


def _ray_stream(location: Location, data: DataConfig, per_worker: int, steps: int = STREAM_STEPS):
    """The pretraining stream (`data.stream`'s kind) with every CPU Ray has given to its tasks:
    (shard, stream, tasks, CPUs)."""
    cpus = runtime.cluster_cpus()
    tasks = max(1, int(cpus))
    shard = pretrain_shard(location, data, per_worker, steps)
    return shard, pipeline.pretrain_stream(shard, range(steps), tasks, cpus / tasks), tasks, cpus


def _timed_batches(batches, seconds: float, warmup: int) -> dict:
    """Consume a fresh iterator of `batches` (rows with a "label" each) for `seconds` of wall time
    after its first `warmup` batches: {"clips" (two per row), "wall_s", "cpu_s" (this process
    tree's CPU seconds in that time)}. The iterator is closed on return (a Ray Data one shuts its
    executor down, a DataLoader's stops its workers)."""
    iterator = iter(batches)
    clips, started, timed, cpu_start, cpu_end = 0, None, 0.0, 0.0, None
    try:
        for index, batch in enumerate(iterator):
            if index == warmup:
                started, cpu_start = time.perf_counter(), _tree_cpu_s()
            elif started is not None:
                clips += 2 * len(batch["label"])
                timed = time.perf_counter() - started
                if timed >= seconds:
                    cpu_end = _tree_cpu_s()
                    break
        if cpu_end is None:  # the stream ran out first
            cpu_end = _tree_cpu_s()
    finally:
        if hasattr(iterator, "close"):
            iterator.close()
        del iterator
    return {"clips": clips, "wall_s": timed, "cpu_s": cpu_end - cpu_start}


def stream_efficiency(
    location: Location, data: DataConfig, seconds: float, per_worker: int = 16, warmup_steps: int = 4
) -> dict:
    """The pretraining stream with every CPU given to its tasks, at steady state, against the bare
    decode per core of the same videos in this process (measured before and after).

    Per CPU two ways: by wall time over the CPUs Ray has (what a quiet machine delivers), and by
    the CPU seconds the whole local Ray instance and this consumer spent (fair on a shared
    machine: it counts every cost of the pipeline, Ray's own included, and nothing else).
    """
    rows = _rows(location)
    bare_before = Alternating({"bare": _clip_source(rows, data, 1)}).run(min(seconds, 10))["bare"]["per_cpu_s"]
    shard, stream, tasks, cpus = _ray_stream(location, data, per_worker)
    per_worker = shard.sampler.per_worker_batch
    measured = _timed_batches(stream.iter_batches(), seconds, warmup_steps)
    clips, timed, cpu_used = measured["clips"], measured["wall_s"], measured["cpu_s"]
    bare_after = Alternating({"bare": _clip_source(rows, data, 2)}).run(min(seconds, 10))["bare"]["per_cpu_s"]
    bare = (bare_before + bare_after) / 2
    rate = clips / timed
    return {
        "stream": data.stream,
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


class PretrainRows(torch.utils.data.Dataset):
    """A shard's pretraining rows as a map-style torch Dataset, the DataLoader anchor's input: item
    i is row i % per_worker of step first_step + i // per_worker, made by the pipeline's own row
    function (`pipeline.clip_pair`: the same decode, crops and FAME mask as the Ray stream of the
    shard, so both deliver the same rows in the same order)."""

    def __init__(self, shard: pipeline.PretrainShard):
        """The shard's rows; its manifest read as plain columns once, as the Ray tasks read it."""
        self.shard = shard
        self.videos = pipeline.videos_of(shard.manifest)

    def __len__(self) -> int:
        """Rows of every step of the shard."""
        return (self.shard.total_steps - self.shard.first_step) * self.shard.sampler.per_worker_batch

    def __getitem__(self, index: int) -> dict:
        """The row `pipeline.clip_pair` makes for this index's (epoch, video)."""
        per_worker = self.shard.sampler.per_worker_batch
        epoch, video = self.shard.sampler.video(self.shard.first_step + index // per_worker, index % per_worker)
        return pipeline.clip_pair(self.videos, video, epoch, self.shard)


def _one_thread(worker: int) -> None:
    """A DataLoader worker's start: torch on one thread, as each Ray task decodes on one."""
    torch.set_num_threads(1)


def dataloader(shard: pipeline.PretrainShard, workers: int) -> torch.utils.data.DataLoader:
    """The anchor: a plain torch DataLoader over the shard's rows, one batch per step, `workers`
    worker processes started afresh by each iterator."""
    return torch.utils.data.DataLoader(
        PretrainRows(shard),
        batch_size=shard.sampler.per_worker_batch,
        num_workers=workers,
        persistent_workers=False,
        prefetch_factor=2,
        worker_init_fn=_one_thread,
    )


def _idle_cpus(seconds: float, settle_s: float = 1.0) -> float:
    """CPUs this process tree keeps busy while nothing runs: the idle local Ray instance's cost
    (raylet, GCS, dashboard, idle workers), after `settle_s` for the last work to wind down."""
    time.sleep(settle_s)
    cpu, wall = _tree_cpu_s(), time.perf_counter()
    time.sleep(seconds)
    return (_tree_cpu_s() - cpu) / (time.perf_counter() - wall)


def loader_comparison(sides: dict, idle_cpus: float, cpus: float, nodes: tuple = PROJECTION_CPUS) -> dict:
    """The DataLoader-vs-Ray figure from what was measured: `sides` {"dataloader", "ray" (the
    default stream), and any other stream, e.g. "ray_data"} each {"clips", "wall_s", "cpu_s"}
    (this process tree's CPU seconds while timed), `idle_cpus` the CPUs the idle Ray instance
    keeps busy, `cpus` those Ray has (the machine's data CPUs).

    Per side: clips/s, tree CPU ms per clip, busy share (tree CPU / (CPUs x wall)) and marginal
    CPU ms per clip, the idle Ray's share taken off (every side ran with Ray up); each stream's
    `vs_dataloader` (its clips/s / the DataLoader's) and `marginal_vs_dataloader`. Then `ratio`
    and `marginal_ratio`, those of "ray", and a linear projection of "ray" to nodes of `nodes`
    CPUs: (N - idle_cpus) / its marginal CPU s per clip, the DataLoader N / its own (None, as a
    marginal ratio, where a marginal cost is not positive: the idle measurement was off).
    """
    out = {}
    for side, measured in sides.items():
        clips, wall, cpu = measured["clips"], measured["wall_s"], measured["cpu_s"]
        out[side] = {
            "clips": clips,
            "seconds": round(wall, 1),
            "cpu_s": round(cpu, 1),
            "clips_per_s": clips / wall,
            "cpu_ms_per_clip": 1000 * cpu / clips,
            "busy_share": cpu / (cpus * wall),
            "marginal_cpu_ms_per_clip": 1000 * (cpu - idle_cpus * wall) / clips,
        }
    loader = out["dataloader"]
    loader_cost = loader["marginal_cpu_ms_per_clip"]
    for side, figures in out.items():
        if side != "dataloader":
            cost = figures["marginal_cpu_ms_per_clip"]
            figures["vs_dataloader"] = figures["clips_per_s"] / loader["clips_per_s"]
            figures["marginal_vs_dataloader"] = cost / loader_cost if cost > 0 and loader_cost > 0 else None
    ray_side = out["ray"]
    ray_cost = ray_side["marginal_cpu_ms_per_clip"]

    def per_s(data_cpus: float, cost_ms: float) -> float | None:
        """Clips/s that `data_cpus` deliver at `cost_ms` of CPU per clip (None at a cost not positive)."""
        return 1000 * data_cpus / cost_ms if cost_ms > 0 else None

    projection = []
    for node in nodes:
        ray_rate, loader_rate = per_s(node - idle_cpus, ray_cost), per_s(node, loader_cost)
        projection.append(
            {
                "cpus": node,
                "ray_clips_per_s": ray_rate,
                "dataloader_clips_per_s": loader_rate,
                "ratio": ray_rate / loader_rate if ray_rate is not None and loader_rate else None,
            }
        )
    return {
        **out,
        "ray_idle_cpus": idle_cpus,
        "ratio": ray_side["vs_dataloader"],
        "marginal_ratio": ray_side["marginal_vs_dataloader"],
        "projection": {
            "basis": "linear projection from this machine's marginal CPU per clip, not measured at that size: "
            "Ray (N - ray_idle_cpus) / its marginal CPU s per clip, the DataLoader N / its own",
            "nodes": projection,
        },
    }


def loader_vs_ray(
    location: Location,
    data: DataConfig,
    seconds: float,
    rounds: int = 3,
    warmup: int = 3,
    per_worker: int = 16,
    idle_s: float = IDLE_S,
) -> dict:
    """A torch DataLoader (one worker per CPU Ray has, the anchor) against the pretraining stream
    (`ray`: the default `data.stream`, one Ray task per step) and its Ray Data form (`ray_data`),
    each built as in `stream_efficiency` and consumed as torch batches as the worker does, over
    the same rows: `rounds` rounds of the DataLoader then each stream for seconds / rounds each
    (at least 5 s), a fresh iterator each, the first `warmup` batches of each left out; the idle
    Ray instance's CPUs measured for `idle_s` before and after. Per-clip CPU is this process
    tree's (DataLoader workers, and a local Ray instance's processes: on a remote cluster it
    misses Ray's)."""
    streams = {
        side: _ray_stream(location, dataclasses.replace(data, stream=kind), per_worker)
        for side, kind in (("ray", "tasks"), ("ray_data", "ray_data"))
    }
    shard, _, tasks, cpus = streams["ray"]
    workers = max(1, int(cpus))
    makers = {"dataloader": lambda: dataloader(shard, workers)}
    makers.update(
        {side: (lambda stream=stream: stream.iter_torch_batches()) for side, (_, stream, _, _) in streams.items()}
    )
    round_s = max(5.0, seconds / rounds)
    idle_before = _idle_cpus(idle_s)
    runs = []
    for number in range(rounds):
        runs.append({side: _timed_batches(make(), round_s, warmup) for side, make in makers.items()})
        log.info(
            "round %d/%d: DataLoader %.1f, task stream %.1f, Ray Data stream %.1f clips/s",
            number + 1,
            rounds,
            *(runs[-1][side]["clips"] / runs[-1][side]["wall_s"] for side in makers),
        )
    idle_after = _idle_cpus(idle_s)
    totals = {
        side: {key: sum(run[side][key] for run in runs) for key in ("clips", "wall_s", "cpu_s")} for side in makers
    }
    figure = loader_comparison(totals, (idle_before + idle_after) / 2, cpus)
    return {
        "cpus": cpus,
        "dataloader_workers": workers,
        "ray_tasks": tasks,
        "per_worker_batch": shard.sampler.per_worker_batch,
        "rounds": rounds,
        "seconds_per_round": round_s,
        "warmup_batches": warmup,
        **figure,
        "ray_idle_cpus_before_after": [idle_before, idle_after],
        "per_round_clips_per_s": [{side: run[side]["clips"] / run[side]["wall_s"] for side in makers} for run in runs],
    }


def gpu_feed(made: dict, marginal_ratio: float, seconds: float) -> dict:
    """On paper, from what this run measured: the data CPUs one GPU needs to be fed, per
    `GPU_FEED` model at its preset's clips. FLOPs of one training step per row (a video: query
    and key clip) counted on a real step (`bench.train.step_flops_per_clip`); a GPU at an
    assumed share of its bf16 dense peak (`ASSUMED_MFU`, labelled: not measured) trains
    peak x MFU / FLOPs rows/s; a row costs the data side its in-process CPU time at that clip
    size on that set (two decodes, two crops, the query's mask; `stage_costs`) times the Ray
    stream's measured marginal ratio to the DataLoader (at 16x112; assumed the same at 224)."""
    out = {}
    peak = bench_train.PEAK_BF16_TFLOPS[FEED_GPU]
    for arch, preset, set_name, copy in GPU_FEED:
        if set_name not in made:
            continue
        cfg = preset()
        data = dataclasses.replace(
            bench_data_config(),
            crop_size=cfg.data.crop_size,
            frames_per_clip=cfg.data.frames_per_clip,
            temporal_stride=cfg.data.temporal_stride,
        )
        stages = stage_costs(made[set_name][copy][1], data, seconds)
        row_ms = 2 * stages["decode_ms"] + 2 * stages["crop_ms"] + stages["mask_ms"]
        flops = bench_train.step_flops_per_clip(cfg)
        feeds = []
        for mfu in ASSUMED_MFU:
            rows_per_s = peak * 1e12 * mfu / flops
            feeds.append(
                {"assumed_mfu": mfu, "rows_per_s": rows_per_s, "data_cpus": rows_per_s * row_ms * marginal_ratio / 1000}
            )
        out[arch] = {
            "clip": f"{data.frames_per_clip}x{data.temporal_stride} at {data.crop_size}",
            "videos": f"{set_name} ({copy})",
            "step_gflop_per_row": flops / 1e9,
            "data_cpu_ms_per_row_in_process": row_ms,
            "ray_marginal_ratio": marginal_ratio,
            "gpu": FEED_GPU,
            "peak_bf16_tflops": peak,
            "feeds": feeds,
        }
    return {
        "basis": "on paper: a GPU at an assumed share of its bf16 peak (not measured); the data side's CPU per row "
        "measured on this machine",
        **out,
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
    root: str,
    videos: int = 24,
    seconds: float = 30.0,
    sets: list[str] | None = None,
    pretrain_steps: int = 40,
    loader_rounds: int = 3,
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
        log.info("%s: the pretraining stream against bare decode", name)
        figures["pretrain_stream"] = stream_efficiency(manifests["transcoded"], data, seconds)
        if name == sets[0]:
            log.info("%s: torch DataLoader against the pretraining streams", name)
            figures["loader_vs_ray"] = loader_vs_ray(manifests["transcoded"], data, seconds, loader_rounds)
        result[name] = figures
    log.info("the data CPUs a GPU needs, on paper")
    result["gpu_feed"] = gpu_feed(made, result[sets[0]]["loader_vs_ray"]["marginal_ratio"] or 1.0, seconds)
    if pretrain_steps and "ucf101" in made:
        log.info("ucf101: tiny-model pretraining fed by the pipeline, original vs transcoded")
        result["pretrain"] = pretrain_data_wait(made["ucf101"], pretrain_steps)
    first = result[sets[0]]
    result["met"] = {
        "transcoded_decode_speedup": first["decode"]["speedup"] >= TARGETS["transcoded_decode_speedup"],
        "stream_vs_bare_decode_per_cpu": first["pretrain_stream"]["efficiency"]
        >= TARGETS["stream_vs_bare_decode_per_cpu"],
        "ray_vs_dataloader": first["loader_vs_ray"]["ratio"] >= TARGETS["ray_vs_dataloader"],
        "data_cpus_busy": first["loader_vs_ray"]["ray"]["busy_share"] >= TARGETS["data_cpus_busy"],
        "marginal_cpu_vs_in_process": first["loader_vs_ray"]["marginal_ratio"] is not None
        and first["loader_vs_ray"]["marginal_ratio"] <= TARGETS["marginal_cpu_vs_in_process"],
    }
    if "pretrain" in result:
        result["met"]["pretrain_data_wait_transcoded"] = (
            result["pretrain"]["transcoded"]["data_wait_share"] <= TARGETS["pretrain_data_wait_transcoded"]
        )
    return result
