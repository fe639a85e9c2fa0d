"""Ray Data builders: manifest -> streaming datasets of uint8 clips for training and eval.

Pretraining: each manifest row becomes two clips at independent random positions
(decode + random resized crop + flip, in `flat_map` tasks), then `map_batches` of the
per-worker batch size runs FAME on the first clip (the query view) of each batch:
rows {"view_q", "view_k": uint8 C T H W, "label": int64}. Finetuning / eval:
`supervised_dataset` gives rows {"clip": uint8 C T H W, "label", "video_index", "clip_index"}.

CPU budget: the map tasks ask for fractions of the CPUs `runtime.plan_resources` leaves to
the data side, with bounded concurrency, so the whole pipeline fits in what the training
workers leave free (no deadlock on 2 CPUs).

Videos that fail to decode are skipped (the row yields nothing) and counted by a small
named actor; `decode_failures()` reads the count.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pyarrow as pa
import ray
import torch

from fame_ray.config import DataConfig, PretrainConfig, TrainConfig
from fame_ray.data import decode, fame, manifest, transforms
from fame_ray.errors import UserError
from fame_ray.runtime import ResourcePlan, cluster_cpus, plan_resources
from fame_ray.storage import Location

log = logging.getLogger(__name__)

FAILURE_COUNTER = "fame_ray_decode_failures"
# Keep at most this many failing paths (with reasons) for the report; the count is exact.
FAILURE_EXAMPLES = 20
# Blocks per dataset: enough for parallel decode tasks and a per-epoch block shuffle,
# few enough that building a Kinetics-size dataset stays quick.
TARGET_BLOCKS = 1000


@ray.remote(num_cpus=0)
class FailureCounter:
    """Counts videos skipped because they failed to decode (a named actor per Ray job)."""

    def __init__(self):
        self.count = 0
        self.examples: list[tuple[str, str]] = []

    def add(self, path: str, reason: str) -> None:
        self.count += 1
        if len(self.examples) < FAILURE_EXAMPLES:
            self.examples.append((path, reason))

    def report(self) -> dict:
        return {"count": self.count, "examples": list(self.examples)}


_COUNTERS: dict = {}


def failure_counter():
    """The job's decode-failure counter actor (created on first use).

    The driver keeps a reference per Ray job, so the actor lives as long as the job
    (an actor nobody references any more is removed by Ray).
    """
    job = ray.get_runtime_context().get_job_id()
    if job not in _COUNTERS:
        _COUNTERS[job] = FailureCounter.options(name=FAILURE_COUNTER, get_if_exists=True).remote()
    return _COUNTERS[job]


def decode_failures() -> dict:
    """{"count": videos skipped so far in this Ray job, "examples": [(path, reason), ...]}."""
    return ray.get(failure_counter().report.remote())


def load_manifest(location: Location, data: DataConfig) -> pa.Table:
    """The manifest with a `video_index` column (row number), checked against the crop size."""
    table = manifest.read(location)
    if table.num_rows == 0:
        raise UserError(f"manifest {location} lists no videos", "run `fame-ray data prepare` on a dataset with videos")
    sizes = np.minimum(table["height"].to_numpy(), table["width"].to_numpy())
    known = sizes[sizes > 0]
    if known.size:
        row = int(np.argmin(np.where(sizes > 0, sizes, np.iinfo(np.int32).max)))
        transforms.check_crop_fits(data.crop_size, int(table["height"][row].as_py()), int(table["width"][row].as_py()), table["path"][row].as_py())
    return table.append_column("video_index", pa.array(np.arange(table.num_rows), pa.int64()))


def _blocks(table: pa.Table, seed: int | None) -> list[pa.Table]:
    """Rows shuffled once (seeded), cut into small blocks for parallel decoding."""
    if seed is not None:
        table = table.take(np.random.default_rng(seed).permutation(table.num_rows))
    rows_per_block = max(1, math.ceil(table.num_rows / TARGET_BLOCKS))
    return [table.slice(start, rows_per_block) for start in range(0, table.num_rows, rows_per_block)]


def _skip(row: dict, error: decode.DecodeError, counter) -> list:
    log.warning("skipping video: %s", error)
    # Waited for, so the count is up to date once the batch holding this row arrives;
    # a lost counter must not turn a skipped video into a failed job.
    try:
        ray.get(counter.add.remote(str(row["path"]), str(error)))
    except ray.exceptions.RayError as lost:
        log.warning("could not count the skipped video: %s", lost)
    return []


def _pretrain_rows(row: dict, data: DataConfig, source: Location, counter) -> list[dict]:
    """One manifest row -> [{"clip_q", "clip_k": uint8 T H W C, "label"}], or [] if it fails to decode."""
    rng = np.random.default_rng()
    start, end = int(row["start_frame"]), int(row["end_frame"])
    offsets = decode.random_offsets(end - start, data.clip_span, 2, rng)
    try:
        clips = decode.decode_clips(source.at(str(row["path"])), start, end, offsets, data.frames_per_clip, data.temporal_stride, data.decode_threads)
    except decode.DecodeError as error:
        return _skip(row, error, counter)
    query, key = (transforms.random_resized_crop(clip, data.crop_size, data.crop_scale, rng) for clip in clips)
    return [{"clip_q": query, "clip_k": key, "label": np.int64(row["label"])}]


def _channels_first(clips: np.ndarray) -> torch.Tensor:
    """uint8 B T H W C -> B C T H W (contiguous)."""
    return torch.from_numpy(np.ascontiguousarray(clips)).permute(0, 4, 1, 2, 3).contiguous()


def _fame_batch(batch: dict, beta: float, enabled: bool) -> dict:
    """A batch of clip pairs -> view_q (FAME-fused when enabled), view_k, label."""
    query = _channels_first(batch["clip_q"])
    if enabled and query.shape[0] > 1:
        generator = torch.Generator().manual_seed(int(np.random.default_rng().integers(2**62)))
        query = fame.fame_uint8(query, beta, generator)[0]
    key = _channels_first(batch["clip_k"])
    return {"view_q": query.numpy(), "view_k": key.numpy(), "label": np.asarray(batch["label"], dtype=np.int64)}


def pretrain_dataset(manifest_location: Location, cfg: PretrainConfig, plan: ResourcePlan, per_worker_batch: int = 0) -> ray.data.Dataset:
    """Streaming dataset of {"view_q", "view_k": uint8 B C T H W, "label": int64} batches.

    FAME permutes within batches of `per_worker_batch` (default global_batch // num_workers),
    the local batch of one worker, as the official code does per GPU. The block order is
    reshuffled every epoch (each new iteration of the dataset), clip positions and crops
    are drawn afresh each time.
    """
    batch_size = per_worker_batch or cfg.train.split_batch(cfg.train.num_workers)[0]
    table = load_manifest(manifest_location, cfg.data)
    seed = ray.data.RandomSeedConfig(seed=cfg.train.seed, reseed_after_execution=True)
    dataset = ray.data.from_arrow(_blocks(table, cfg.train.seed)).randomize_block_order(seed=seed)
    dataset = dataset.flat_map(
        _pretrain_rows,
        fn_kwargs={"data": cfg.data, "source": manifest_location, "counter": failure_counter()},
        num_cpus=plan.decode_cpus,
        compute=ray.data.TaskPoolStrategy(size=plan.decode_concurrency),
    )
    return dataset.map_batches(
        _fame_batch,
        fn_kwargs={"beta": cfg.fame.beta, "enabled": cfg.fame.enabled},
        batch_size=batch_size,
        batch_format="numpy",
        num_cpus=plan.fame_cpus,
        compute=ray.data.TaskPoolStrategy(size=plan.fame_concurrency),
    )


def _supervised_rows(row: dict, data: DataConfig, train: bool, source: Location, counter) -> list[dict]:
    """One manifest row -> 1 random clip (train) or eval_clips centre-cropped clips (eval)."""
    rng = np.random.default_rng()
    start, end = int(row["start_frame"]), int(row["end_frame"])
    if train:
        offsets = decode.random_offsets(end - start, data.clip_span, 1, rng)
    else:
        offsets = decode.uniform_offsets(end - start, data.clip_span, data.eval_clips)
    try:
        clips = decode.decode_clips(source.at(str(row["path"])), start, end, offsets, data.frames_per_clip, data.temporal_stride, data.decode_threads)
    except decode.DecodeError as error:
        return _skip(row, error, counter)
    rows = []
    for index, clip in enumerate(clips):
        cropped = transforms.random_resized_crop(clip, data.crop_size, data.crop_scale, rng) if train else transforms.center_crop(clip, data.crop_size)
        rows.append({"clip": np.ascontiguousarray(cropped.transpose(3, 0, 1, 2)), "label": np.int64(row["label"]), "video_index": np.int64(row["video_index"]), "clip_index": np.int64(index)})
    return rows


def supervised_dataset(manifest_location: Location, data: DataConfig, train: bool, seed: int = 0, data_cpus: float = 0.0) -> ray.data.Dataset:
    """Rows {"clip": uint8 C T H W, "label", "video_index", "clip_index"} (all int64 but clip).

    train=True: one random clip per video (random resized crop + flip), rows reshuffled
    per epoch; train=False: `data.eval_clips` uniformly spaced clips per video, centre
    crop, manifest order (video_index says which video a clip belongs to).
    `data_cpus` bounds the decode tasks (default: what `plan_resources` leaves for data
    next to one training worker).
    """
    data_cpus = data_cpus or plan_resources(cluster_cpus(), TrainConfig(), data).data_cpus
    concurrency = max(1, int(data_cpus))
    table = load_manifest(manifest_location, data)
    if train:
        seed_config = ray.data.RandomSeedConfig(seed=seed, reseed_after_execution=True)
        dataset = ray.data.from_arrow(_blocks(table, seed)).randomize_block_order(seed=seed_config)
    else:
        dataset = ray.data.from_arrow(_blocks(table, None))
    return dataset.flat_map(
        _supervised_rows,
        fn_kwargs={"data": data, "train": train, "source": manifest_location, "counter": failure_counter()},
        num_cpus=min(1.0, data_cpus / concurrency),
        compute=ray.data.TaskPoolStrategy(size=concurrency),
    )
