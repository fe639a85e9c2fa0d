"""`fame-ray bench data`'s DataLoader anchor, the parts that need no benchmark-length run: the
anchor's Dataset makes exactly the pipeline's rows, its DataLoader one step per batch, the timed
loop leaves the warmup out, and the figure's arithmetic (ratio, marginal CPU, projection)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pytest
import torch

from fame_ray.bench import data as bench
from fame_ray.config import DataConfig
from fame_ray.data import manifest
from fame_ray.data.clips import pipeline
from fame_ray.data.manifest import DECORD
from fame_ray.storage import Location

TIMINGS = ("decode_ms", "crop_ms", "mask_ms")  # each call's own stopwatch, not part of the row's content


def _write_video(path: Path, base: int, frames: int = 30, size: int = 64) -> str:
    """Frame t a flat grey of brightness base + 4 * t (libx264), so every video's rows differ."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = size
        stream.pix_fmt, stream.options = "yuv420p", {"crf": "10"}
        for t in range(frames):
            image = np.full((size, size, 3), base + 4 * t, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return str(path)


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    """A 3-step shard of 2 rows per step over 4 tiny videos and their manifest, written directly
    (no probing, so no Ray), FAME masks on."""
    root = tmp_path_factory.mktemp("bench")
    paths = [_write_video(root / f"v{index}.mp4", 10 * index) for index in range(4)]
    columns = {
        "path": paths,
        "label": [index % 2 for index in range(4)],
        "label_name": [f"class{index % 2}" for index in range(4)],
        "split": ["train"] * 4,
        "num_frames": [30] * 4,
        "fps": [25.0] * 4,
        "height": [64] * 4,
        "width": [64] * 4,
        "start_frame": [0] * 4,
        "end_frame": [30] * 4,
        "decoder": [DECORD] * 4,
    }
    location = Location.parse(str(root / "train.parquet"))
    manifest.write(pa.table(columns), location)
    data = DataConfig(frames_per_clip=4, temporal_stride=2, crop_size=32, decode_threads=1)
    return bench.pretrain_shard(location, data, 2, 3)


def test_anchor_dataset_item_is_the_pipelines_row(shard):
    rows = bench.PretrainRows(shard)
    per_worker = shard.sampler.per_worker_batch
    assert per_worker == 2 and len(rows) == 3 * per_worker
    videos = pipeline.videos_of(shard.manifest)
    for index in range(len(rows)):
        epoch, video = shard.sampler.video(index // per_worker, index % per_worker)
        expected, got = pipeline.clip_pair(videos, video, epoch, shard), rows[index]
        assert set(got) == set(expected) and "mask" in got
        for name in set(expected) - set(TIMINGS):
            assert got[name].dtype == expected[name].dtype, name
            np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def test_anchor_dataloader_batch_is_one_step_from_worker_processes(shard):
    loader = bench.dataloader(shard, workers=1)
    assert loader.num_workers == 1 and loader.prefetch_factor == 2 and not loader.persistent_workers
    first = next(iter(loader))
    rows = [bench.PretrainRows(shard)[slot] for slot in range(2)]
    for name in ("view_q", "view_k", "mask", "label", "video_index"):
        assert torch.equal(first[name], torch.from_numpy(np.stack([row[name] for row in rows]))), name


def test_timed_batches_leave_the_warmup_out_and_close_the_stream():
    def stream(batches):
        yield from ({"label": [0, 0, 0, 0]} for _ in range(batches))

    endless = stream(10**6)
    timed = bench._timed_batches(endless, seconds=0.0, warmup=3)
    # Batches 0-2 warm up, batch 3 starts the clock, batch 4 is the first one counted (4 rows, 2 clips each).
    assert timed["clips"] == 8 and timed["wall_s"] >= 0.0 and timed["cpu_s"] >= 0.0
    assert endless.gi_frame is None  # closed: a Ray Data iterator shuts its executor down here
    assert bench._timed_batches(stream(6), seconds=60.0, warmup=3)["clips"] == 16  # ran out: batches 4 and 5


def test_loader_comparison_ratio_marginal_cost_and_projection():
    sides = {
        "dataloader": {"clips": 1000, "wall_s": 10.0, "cpu_s": 19.0},
        "ray": {"clips": 900, "wall_s": 10.0, "cpu_s": 19.5},
        "ray_data": {"clips": 500, "wall_s": 10.0, "cpu_s": 11.5},
    }
    figure = bench.loader_comparison(sides, idle_cpus=0.15, cpus=2.0)
    loader, ray_side = figure["dataloader"], figure["ray"]
    assert loader["clips_per_s"] == pytest.approx(100.0) and ray_side["clips_per_s"] == pytest.approx(90.0)
    assert figure["ratio"] == pytest.approx(0.9)
    assert loader["cpu_ms_per_clip"] == pytest.approx(19.0) and ray_side["cpu_ms_per_clip"] == pytest.approx(
        19500 / 900
    )
    assert loader["busy_share"] == pytest.approx(0.95) and ray_side["busy_share"] == pytest.approx(0.975)
    # Both ran with Ray up: 0.15 CPUs x 10 s of idle Ray come off each side's CPU seconds.
    assert loader["marginal_cpu_ms_per_clip"] == pytest.approx(17.5)
    assert ray_side["marginal_cpu_ms_per_clip"] == pytest.approx(20.0)
    assert figure["marginal_ratio"] == pytest.approx(20.0 / 17.5) == ray_side["marginal_vs_dataloader"]
    # Every other stream measured beside them gets its own ratios.
    assert figure["ray_data"]["vs_dataloader"] == pytest.approx(0.5)
    assert figure["ray_data"]["marginal_vs_dataloader"] == pytest.approx(20.0 / 17.5)
    assert "vs_dataloader" not in loader
    assert figure["ray_idle_cpus"] == 0.15
    nodes = {node["cpus"]: node for node in figure["projection"]["nodes"]}
    assert sorted(nodes) == [8, 16, 64] and "not measured" in figure["projection"]["basis"]
    assert nodes[8]["ray_clips_per_s"] == pytest.approx((8 - 0.15) / 0.020)
    assert nodes[8]["dataloader_clips_per_s"] == pytest.approx(8 / 0.0175)
    assert nodes[64]["ratio"] == pytest.approx((64 - 0.15) / 64 * 17.5 / 20.0)


def test_loader_comparison_without_a_positive_marginal_cost_projects_nothing():
    sides = {
        "dataloader": {"clips": 100, "wall_s": 10.0, "cpu_s": 19.0},
        "ray": {"clips": 100, "wall_s": 10.0, "cpu_s": 1.0},  # less than the idle Ray's own share
    }
    figure = bench.loader_comparison(sides, idle_cpus=0.5, cpus=2.0, nodes=(8,))
    assert figure["ray"]["marginal_cpu_ms_per_clip"] < 0 and figure["marginal_ratio"] is None
    assert figure["projection"]["nodes"] == [
        {"cpus": 8, "ray_clips_per_s": None, "dataloader_clips_per_s": pytest.approx(8 / 0.140), "ratio": None}
    ]


def test_gpu_feed_sizes_the_data_side_from_flops_an_assumed_mfu_and_the_measured_row_cost(monkeypatch):
    """The on-paper arithmetic, with the two measurements it takes (the row's stage times and the
    step's FLOPs) replaced by fixed figures: rows/s = peak x MFU / FLOPs per row, data CPUs =
    rows/s x in-process CPU s per row x the stream's marginal ratio; a set not built is skipped."""
    seen = []

    def stages(location, data, seconds):
        seen.append((location, data.crop_size, data.frames_per_clip))
        return {"decode_ms": 8.0, "crop_ms": 2.0, "mask_ms": 4.0}

    monkeypatch.setattr(bench, "stage_costs", stages)
    monkeypatch.setattr(bench.bench_train, "step_flops_per_clip", lambda cfg: 2e12 if cfg.model.arch == "i3d" else 5e11)
    made = {"ucf101": {"transcoded": ("root", "ucf-manifest"), "original": ("root", "x")}}
    feed = bench.gpu_feed(made, marginal_ratio=1.1, seconds=1.0)
    assert seen == [("ucf-manifest", 112, 16)] and "i3d" not in feed and "not measured" in feed["basis"]
    r21d = feed["r2plus1d_18"]
    assert r21d["data_cpu_ms_per_row_in_process"] == pytest.approx(2 * 8 + 2 * 2 + 4)
    assert r21d["step_gflop_per_row"] == pytest.approx(500.0) and r21d["gpu"] == "H200"
    low, high = r21d["feeds"]
    assert low["assumed_mfu"] == 0.3 and low["rows_per_s"] == pytest.approx(989.4e12 * 0.3 / 5e11)
    assert low["data_cpus"] == pytest.approx(low["rows_per_s"] * 0.024 * 1.1)
    assert high["data_cpus"] == pytest.approx(low["data_cpus"] * 0.5 / 0.3)
    made["kinetics400"] = {"original": ("root", "k400-manifest"), "transcoded": ("root", "y")}
    assert bench.gpu_feed(made, 1.0, 1.0)["i3d"]["videos"] == "kinetics400 (original)" and seen[-1][1:] == (224, 16)
