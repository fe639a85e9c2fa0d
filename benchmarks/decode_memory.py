"""The resident memory of one decoding worker over many clips, JSON out.

Run from the repository root (the videos are the ones `fame-ray bench data` writes, reused):

    .venv/bin/python benchmarks/decode_memory.py --clips 10000 --out benchmarks/results/decode_memory-2cpu.json

One process does what a pretraining data task does, pair after pair: `pipeline.clip_pair`
(decord decode of two 16x2 clips at distinct positions, crops and flips, the FAME mask), on the
UCF101-sized videos of `fame-ray bench data` (original or transcoded), and samples its RSS.
The pipeline's own tasks are in processes Ray replaces every `pipeline.TASK_CALLS` calls, so
what one process can accumulate is bounded by what it gathers over that many steps.
"""

from __future__ import annotations

import argparse
import json
import time

import psutil
import torch

from fame_ray.bench import data as bench
from fame_ray.data.clips import pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="decode-memory.json")
    parser.add_argument("--root", default="fame-ray-bench", help="the folder of `fame-ray bench data --root`")
    parser.add_argument("--clips", type=int, default=10_000, help="clips decoded (two per row)")
    parser.add_argument("--side", choices=("original", "transcoded"), default="transcoded")
    parser.add_argument("--videos", type=int, default=24)
    args = parser.parse_args()
    torch.set_num_threads(1)
    _, location = bench.video_sets(args.root, args.videos, ["ucf101"])["ucf101"][args.side]
    data = bench.bench_data_config()
    shard = bench.pretrain_shard(location, data, 8, 10**9)
    videos = pipeline.videos_of(location)
    me, samples, started = psutil.Process(), [], time.perf_counter()
    per_worker = shard.sampler.per_worker_batch
    for index in range(args.clips // 2):
        epoch, video = shard.sampler.video(index // per_worker, index % per_worker)
        pipeline.clip_pair(videos, video, epoch, shard)
        if index % 250 == 0 or index == args.clips // 2 - 1:
            samples.append(
                {
                    "clips": 2 * (index + 1),
                    "rss_mib": me.memory_info().rss / 2**20,
                    "seconds": round(time.perf_counter() - started, 1),
                }
            )
    after_warmup = [s for s in samples if s["clips"] >= 1000]
    first, last = after_warmup[0], after_warmup[-1]
    result = {
        "machine": bench.machine(),
        "side": args.side,
        "clips": args.clips,
        "task_calls": pipeline.TASK_CALLS,
        "rss_mib_first": samples[0]["rss_mib"],
        "rss_mib_after_1000_clips": first["rss_mib"],
        "rss_mib_last": last["rss_mib"],
        "rss_mib_max": max(s["rss_mib"] for s in samples),
        "growth_mib_per_1000_clips_after_warmup": (last["rss_mib"] - first["rss_mib"])
        / max(1, (last["clips"] - first["clips"]) / 1000),
        "samples": samples,
    }
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))


if __name__ == "__main__":
    main()
