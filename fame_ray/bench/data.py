"""Data pipeline benchmark: bare decord decode vs decode + crop + FAME, on the same videos.

Two measurements, both written to one JSON document:
- `in_process`: one process, one thread, the same videos and clip positions: decode
  alone, then decode + crop + FAME; per-clip costs and their ratio (the cleanest numbers).
- `ray_data`: the real Ray Data pipeline (`pretrain_dataset`) against a Ray Data job that
  only decodes the same clips, on a local Ray instance, in clips/s and clips/s per CPU.
A clip is one decoded clip: pretraining decodes two per video; FAME fuses one of them.
"""

from __future__ import annotations

import datetime
import logging
import os
import platform
import tempfile
import time

import decord
import numpy as np
import ray
import torch

from fame_ray import config
from fame_ray.config import presets
from fame_ray.data import catalog, decode, fame, manifest, pipeline, synthetic, transforms
from fame_ray.runtime import ResourcePlan
from fame_ray.storage import Location

log = logging.getLogger(__name__)

TARGETS = {"pipeline_vs_decode": 0.8, "fame_share_of_decode": 0.15}


def machine() -> dict:
    """CPU model, cores, library versions, date."""
    model = platform.processor() or "unknown"
    if os.path.exists("/proc/cpuinfo"):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
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


def _rows(table) -> list[dict]:
    return [dict(zip(table.column_names, values)) for values in zip(*(table[name].to_pylist() for name in table.column_names))]


class Stopwatch:
    """Wall and CPU (process) seconds of a block; CPU time is the fair cost on a shared machine."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def _stage_figures(decode_s: float, crop_s: float, fame_s: float, clips: int, fused: int) -> dict:
    decode_ms = 1000 * decode_s / clips
    crop_ms = 1000 * crop_s / clips
    fame_ms = 1000 * fame_s / max(fused, 1)
    pipeline_ms = decode_ms + crop_ms + fame_ms * fused / clips
    return {
        "decode_clips_per_s": 1000 / decode_ms,
        "pipeline_clips_per_s": 1000 / pipeline_ms,
        "pipeline_vs_decode": decode_ms / pipeline_ms,
        "decode_ms_per_clip": decode_ms,
        "crop_ms_per_clip": crop_ms,
        "fame_ms_per_fused_clip": fame_ms,
        "fame_share_of_decode": fame_ms / decode_ms,
    }


def in_process(rows: list[dict], data: config.DataConfig, batch: int, repeats: int, seed: int = 0) -> dict:
    """Sequential per-clip costs on one thread: decode, crop, FAME (best of `repeats`).

    Figures by CPU time ("cpu", the headline) and by wall-clock time ("wall").
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    offsets = [decode.random_offsets(r["end_frame"] - r["start_frame"], data.clip_span, 2, rng) for r in rows]
    timings = {"decode": [], "crop": [], "fame": []}
    try:
        for _ in range(repeats):
            with Stopwatch() as decoding:
                pairs = [decode.decode_clips(Location(r["path"]), r["start_frame"], r["end_frame"], o, data.frames_per_clip, data.temporal_stride, data.decode_threads) for r, o in zip(rows, offsets)]
            with Stopwatch() as cropping:
                crops = [[transforms.random_resized_crop(c, data.crop_size, data.crop_scale, rng) for c in pair] for pair in pairs]
                queries = torch.from_numpy(np.stack([q for q, _ in crops])).permute(0, 4, 1, 2, 3).contiguous()
                torch.from_numpy(np.stack([k for _, k in crops])).permute(0, 4, 1, 2, 3).contiguous()
            with Stopwatch() as merging:
                for first in range(0, len(rows) - batch + 1, batch):
                    fame.fame_uint8(queries[first : first + batch], 0.5)
            for name, watch in (("decode", decoding), ("crop", cropping), ("fame", merging)):
                timings[name].append((watch.cpu, watch.wall))
    finally:
        torch.set_num_threads(threads)
    clips, fused = 2 * len(rows), (len(rows) // batch) * batch
    result = {"threads": 1, "repeats": repeats, "clips": clips, "fused_clips": fused}
    for index, clock in enumerate(("cpu", "wall")):
        best = {name: min(t[index] for t in values) for name, values in timings.items()}
        result[clock] = _stage_figures(best["decode"], best["crop"], best["fame"], clips, fused)
    return result


def _decode_only(row: dict, data: config.DataConfig) -> list[dict]:
    rng = np.random.default_rng()
    start, end = int(row["start_frame"]), int(row["end_frame"])
    offsets = decode.random_offsets(end - start, data.clip_span, 2, rng)
    first, second = decode.decode_clips(Location(str(row["path"])), start, end, offsets, data.frames_per_clip, data.temporal_stride, data.decode_threads)
    return [{"clip_q": first, "clip_k": second, "label": np.int64(row["label"])}]


def _clips_per_second(dataset, epochs: int, batch: int) -> float:
    for _ in dataset.iter_batches(batch_size=batch, batch_format="numpy"):
        pass  # warm-up epoch: worker start, imports
    start = time.perf_counter()
    rows = sum(len(b["label"]) for _ in range(epochs) for b in dataset.iter_batches(batch_size=batch, batch_format="numpy"))
    return 2 * rows / (time.perf_counter() - start)


def ray_data(manifest_location: Location, cfg: config.PretrainConfig, epochs: int) -> dict:
    """clips/s of the Ray Data pipeline vs a Ray Data job that only decodes, with all CPUs."""
    cpus = float(ray.cluster_resources().get("CPU", 1))
    # No training workers here: the data side gets every CPU, split as plan_resources does.
    tasks = max(1, int(cpus))
    plan = ResourcePlan(0.0, cpus, 0.75 * cpus / tasks, tasks, 0.25 * cpus, 1)
    batch, _ = cfg.train.split_batch(cfg.train.num_workers)
    full = pipeline.pretrain_dataset(manifest_location, cfg, plan)
    table = pipeline.load_manifest(manifest_location, cfg.data)
    bare = ray.data.from_arrow(pipeline._blocks(table, 0)).flat_map(
        _decode_only, fn_kwargs={"data": cfg.data}, num_cpus=plan.decode_cpus, compute=ray.data.TaskPoolStrategy(size=tasks)
    )
    bare_rate = _clips_per_second(bare, epochs, batch)
    full_rate = _clips_per_second(full, epochs, batch)
    return {
        "cpus": cpus,
        "epochs": epochs,
        "decode_clips_per_s": bare_rate,
        "pipeline_clips_per_s": full_rate,
        "pipeline_vs_decode": full_rate / bare_rate,
        "decode_clips_per_s_per_cpu": bare_rate / cpus,
        "pipeline_clips_per_s_per_cpu": full_rate / cpus,
    }


def run(data_root: str = "", videos: int = 32, batch: int = 8, repeats: int = 3, epochs: int = 2, with_ray: bool = True, overrides: list[str] | None = None, width: int = 320, height: int = 240) -> dict:
    """Write (or reuse) synthetic videos, measure, and return the JSON-ready result.

    Synthetic videos default to 320x240, UCF101's frame size, so decode costs what it
    costs on the real dataset (FAME's cost depends only on the crop size).
    """
    root = data_root or os.path.join(tempfile.mkdtemp(prefix="fame-ray-bench-"), "UCF101")
    if not data_root:
        synthetic.write_dataset(root, "ucf101", num_classes=4, videos_per_class=max(1, videos // 4), frames=48, width=width, height=height, seed=0)
    values = {"data": {"dataset": "ucf101", "data_root": root}, "moco": {"queue_size": batch * 8}, "train": {"global_batch": batch, "num_workers": 1}}
    cfg = config.build(config.PretrainConfig, values, overrides=overrides or [])
    uri = catalog.manifest_location(cfg.data, cfg.data_location(), "train")
    table = manifest.read(uri)
    rows = _rows(table)[:videos]
    first = rows[0]
    result = {
        "machine": machine(),
        "setup": {"videos": len(rows), "video_size": f"{first['width']}x{first['height']}", "video_frames": first["num_frames"], "frames_per_clip": cfg.data.frames_per_clip, "temporal_stride": cfg.data.temporal_stride, "crop_size": cfg.data.crop_size, "fame_batch": batch, "data_root": root},
        "targets": TARGETS,
        "in_process": in_process(rows, cfg.data, batch, repeats),
    }
    if with_ray:
        result["ray_data"] = ray_data(uri, cfg, epochs)
    measured = result["in_process"]["cpu"]
    result["met"] = {"pipeline_vs_decode": measured["pipeline_vs_decode"] >= TARGETS["pipeline_vs_decode"], "fame_share_of_decode": measured["fame_share_of_decode"] <= TARGETS["fame_share_of_decode"]}
    return result
