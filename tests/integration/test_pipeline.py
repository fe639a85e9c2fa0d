"""Ray Data pipelines on a local 2-CPU Ray: each worker's pretraining stream (full batches with
masks, reproducible, resumable, reshuffled every epoch), a video that fails to decode, eval
clips, and Ray Train workers that hold CPUs without starving the data."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pytest
import torch

from fame_ray import config, runtime
from fame_ray.config import PretrainConfig, build, presets
from fame_ray.data import catalog, manifest
from fame_ray.data.clips import pipeline, sampling
from fame_ray.errors import ConfigError, UserError
from fame_ray.pretrain import step
from fame_ray.storage import Location

pytestmark = pytest.mark.ray

SMALL = {"frames_per_clip": 8, "temporal_stride": 2, "crop_size": 64, "eval_clips": 3}


def _cfg_values(synth_root):
    return {"data": {"dataset": "ucf101", "data_root": synth_root, **SMALL}, "moco": {"queue_size": 64}}


def _cfg(synth_root, method="fame", **train) -> PretrainConfig:
    values = {**_cfg_values(synth_root), "method": method, "train": {"global_batch": 8, "num_workers": 2, **train}}
    return build(PretrainConfig, presets.recipe_pretrain(), values)


@pytest.fixture(scope="module")
def train_manifest(synth_root):
    data = _cfg(synth_root).data
    return catalog.ensure(data, data.location())["train"]


def _shard(cfg, location, rank=0, world=2, first_step=0, total_steps=None, num_videos=None):
    num_videos = num_videos or manifest.read(location).num_rows
    per_worker, _ = cfg.train.split_batch(world)
    steps_per_epoch = num_videos // cfg.train.global_batch
    sampler = sampling.EpochSampler(num_videos, steps_per_epoch, per_worker, per_worker * world, rank, cfg.train.seed)
    total = total_steps or 3 * steps_per_epoch
    return pipeline.PretrainShard(location, cfg.data, sampler, first_step, total, cfg.method == "fame", cfg.fame.beta)


def _stream(shard, tasks=1):
    return [
        batch
        for steps in shard.segments()
        for batch in pipeline.pretrain_stream(shard, steps, tasks, 1.0).iter_batches()
    ]


def test_every_step_gets_a_full_batch_with_masks_on_a_dataset_that_is_no_multiple_of_it(
    ray_local, synth_root, train_manifest
):
    """16 training videos, global batch 6 on 2 workers: 2 steps per epoch, 4 videos left over each
    epoch (the old block-wise map cut FAME groups like that into full ones and a remainder)."""
    cfg = build(
        PretrainConfig,
        presets.recipe_pretrain(),
        {**_cfg_values(synth_root), "moco": {"queue_size": 60}, "train": {"global_batch": 6, "num_workers": 2}},
    )
    shard = _shard(cfg, train_manifest)
    assert manifest.read(train_manifest).num_rows % cfg.train.global_batch != 0
    batches = _stream(shard)
    assert len(batches) == shard.total_steps
    for batch in batches:
        assert batch["view_q"].shape == batch["view_k"].shape == (3, 3, 8, 64, 64) and batch["view_q"].dtype == np.uint8
        assert batch["mask"].shape == (3, 64, 64) and set(np.unique(batch["mask"])) <= {0, 1}
        assert batch["mask"].reshape(3, -1).sum(1).tolist() == [int(0.5 * 64 * 64)] * 3
        assert (batch["decode_ms"] > 0).all()
    # On the worker, the merge runs over exactly this full batch.
    fused = step.query_clips(
        {k: torch.from_numpy(v) for k, v in batches[0].items()},
        cfg,
        torch.Generator().manual_seed(0),
        torch.device("cpu"),
    )
    assert fused.shape == (3, 3, 8, 64, 64)


def test_plain_moco_streams_no_masks_and_the_two_views_differ(ray_local, synth_root, train_manifest):
    batches = _stream(_shard(_cfg(synth_root, "moco"), train_manifest, total_steps=2))
    assert "mask" not in batches[0]
    assert all((b["view_q"] != b["view_k"]).any() for b in batches)


def test_the_same_seed_gives_the_same_first_batch_bit_for_bit_on_every_rank(ray_local, synth_root, train_manifest):
    cfg = _cfg(synth_root)
    for rank in (0, 1):
        first = _stream(_shard(cfg, train_manifest, rank=rank, total_steps=1))[0]
        again = _stream(_shard(cfg, train_manifest, rank=rank, total_steps=1))[0]
        for name in ("view_q", "view_k", "mask", "label", "video_index"):
            assert np.array_equal(first[name], again[name]), name
    other_seed = build(
        PretrainConfig,
        presets.recipe_pretrain(),
        {**_cfg_values(synth_root), "train": {"global_batch": 8, "num_workers": 2, "seed": 1}},
    )
    assert not np.array_equal(_stream(_shard(other_seed, train_manifest, total_steps=1))[0]["view_q"], first["view_q"])


def test_a_resumed_stream_continues_exactly_where_the_run_stopped(ray_local, synth_root, train_manifest):
    cfg = _cfg(synth_root)
    whole = _stream(_shard(cfg, train_manifest, total_steps=3))
    resumed = _stream(_shard(cfg, train_manifest, first_step=2, total_steps=3))
    assert len(resumed) == 1
    for name in ("view_q", "mask", "video_index"):
        assert np.array_equal(whole[2][name], resumed[0][name])
    # Epochs 0, 1 and 2 (one step each) draw different videos.
    assert len({tuple(batch["video_index"]) for batch in whole}) == 3


def test_the_ray_data_stream_gives_the_same_rows_as_the_default_task_stream(ray_local, synth_root, train_manifest):
    """data.stream 'ray_data' (a Ray Data map_batches stream) against the default 'tasks' (one Ray
    task per step, two at once here): the same batches bit for bit, from a resumed step on; and
    the task stream's stats say what it delivered."""
    cfg = _cfg(synth_root)
    other = build(
        PretrainConfig,
        presets.recipe_pretrain(),
        {
            **_cfg_values(synth_root),
            "data": {**_cfg_values(synth_root)["data"], "stream": "ray_data"},
            "train": {"global_batch": 8, "num_workers": 2},
        },
    )
    shard = _shard(cfg, train_manifest, first_step=1, total_steps=4)
    tasks = pipeline.pretrain_stream(shard, range(1, 4), 2, 1.0)
    assert isinstance(tasks, pipeline.StepStream)
    by_tasks = list(tasks.iter_batches())
    by_ray_data = _stream(_shard(other, train_manifest, first_step=1, total_steps=4))
    assert len(by_tasks) == len(by_ray_data) == 3
    for ours, theirs in zip(by_tasks, by_ray_data):
        assert ours.keys() == theirs.keys()
        for name in ("view_q", "view_k", "mask", "label", "video_index"):
            assert np.array_equal(ours[name], theirs[name]), name
        assert ours["view_q"].flags.writeable
    assert "steps 2-4: 3 of 3 delivered, 4 rows each" in tasks.stats() and "2 at once x 1 CPU" in tasks.stats()


def test_one_task_stream_runs_across_segments_and_keeps_stats_of_each(ray_local, synth_root, train_manifest):
    """`pretrain_batches` on the default stream: one stream over every step left (no cold start at
    an epoch), its stats handed over per segment (an epoch here) as each one ends; left early, the
    segment it was in is reported as far as it went."""
    shard = _shard(_cfg(synth_root), train_manifest, first_step=1, total_steps=12)
    per_epoch = shard.sampler.steps_per_epoch
    assert per_epoch < 6 and len(shard.segments()) > 2
    kept = []
    batches = pipeline.pretrain_batches(shard, 1, 1.0, lambda steps, stats: kept.append((steps, stats())))
    taken = [next(batches) for _ in range(per_epoch)]  # the rest of epoch 0, and one step of epoch 1
    assert all(batch["view_q"].shape[0] == 4 and isinstance(batch["view_q"], torch.Tensor) for batch in taken)
    assert [steps for steps, _ in kept] == [range(1, per_epoch)]
    assert f"steps 2-{per_epoch}: {per_epoch - 1} of {per_epoch - 1} delivered" in kept[0][1]
    batches.close()  # as the worker loop does at its last step: the steps submitted ahead are cancelled
    assert [steps for steps, _ in kept] == [range(1, per_epoch), range(per_epoch, 2 * per_epoch)]
    assert f"1 of {per_epoch} delivered" in kept[1][1]


def test_the_task_stream_never_runs_more_tasks_than_the_plan_grants(ray_local):
    """The feeder of the default stream over 12 steps, 2 tasks, 4 steps ahead, a worker slower
    than its tasks: whenever a step starts, fewer than 2 run and fewer than 4 wait untaken (queued
    tasks beyond the plan would make an autoscaler add nodes); every step arrives, in order."""
    import time

    import ray

    @ray.remote(num_cpus=0.25)
    def rows(step):
        time.sleep(0.05)
        return step

    feeders, seen = [], []

    def submit(step):
        feeder = feeders[0]
        seen.append((len(feeder.running), len(feeder.running) + len(feeder.done)))
        return rows.remote(step)

    feeders.append(pipeline._StepFeeder(submit, range(12), tasks=2, ahead=4))
    feeder = feeders[0].start()
    taken = []
    for index in range(12):
        taken.append(ray.get(feeder.take(index)))
        time.sleep(0.15)  # the worker trains
    feeder.stop()
    assert taken == list(range(12)) and len(seen) == 12
    assert max(running for running, _ in seen) <= 1 and max(ahead for _, ahead in seen) <= 3, seen
    assert not feeder.thread.is_alive()


def test_a_video_that_fails_to_decode_is_replaced_and_counted(ray_local, synth_root, train_manifest, tmp_path):
    table = manifest.read(train_manifest)
    corrupt = tmp_path / "corrupt.avi"
    corrupt.write_bytes(os.urandom(4096))
    rows = table.to_pydict()
    rows["path"] = [str(corrupt)] + rows["path"][1:]
    location = Location.parse(str(tmp_path / "with_corrupt.parquet"))
    manifest.write(pa.Table.from_pydict(rows, schema=manifest.SCHEMA), location)
    before = pipeline.decode_failures()["count"]
    cfg = _cfg(synth_root)
    shard = _shard(cfg, location, total_steps=4)
    batches = _stream(shard) + _stream(_shard(cfg, location, rank=1, total_steps=4))
    assert all(len(batch["label"]) == 4 for batch in batches) and len(batches) == 8
    assert 0 not in {int(v) for batch in batches for v in batch["video_index"]}
    failures = pipeline.decode_failures()
    assert failures["count"] > before and any(path == str(corrupt) for path, _ in failures["examples"])


def test_eval_dataset_gives_uniform_clips_per_video(ray_local, synth_root):
    data = _cfg(synth_root).data
    uri = catalog.ensure(data, data.location())["test"]
    videos = manifest.read(uri).num_rows
    rows = pipeline.supervised_dataset(uri, data, train=False, data_cpus=1.0).take_all()
    assert len(rows) == videos * data.eval_clips
    assert rows[0]["clip"].shape == (3, 8, 64, 64) and rows[0]["clip"].dtype == np.uint8
    pairs = {(int(r["video_index"]), int(r["clip_index"])) for r in rows}
    assert pairs == {(v, c) for v in range(videos) for c in range(data.eval_clips)}


@pytest.mark.parametrize("blocks", [32, 1])
def test_train_supervised_dataset_reshuffles_all_videos_every_epoch(
    ray_local, synth_root, train_manifest, monkeypatch, blocks
):
    # One block of every row: the shuffle moves rows, not only blocks (a block-order shuffle keeps manifest order).
    monkeypatch.setattr(pipeline, "SHUFFLE_BLOCKS", blocks)
    data = _cfg(synth_root).data
    dataset = pipeline.supervised_dataset(train_manifest, data, train=True, data_cpus=1.0)
    epochs = [[int(r["video_index"]) for r in dataset.iter_rows()] for _ in range(3)]
    assert all(sorted(order) == list(range(manifest.read(train_manifest).num_rows)) for order in epochs)
    assert len({tuple(order) for order in epochs}) == 3
    assert all(order != sorted(order) for order in epochs)


@pytest.mark.timeout(300)
def test_torch_trainer_workers_on_two_cpus_do_not_starve_their_streams(ray_local, synth_root, train_manifest, tmp_path):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    def pull_two_batches(loop_config):  # nested: pickled by value for the workers
        import tempfile

        import ray.train

        context = ray.train.get_context()
        shard = loop_config["shards"][context.get_world_rank()]
        tasks, task_cpus = loop_config["plan"].per_rank(context.get_world_size())
        shapes = []
        for steps in shard.segments():
            for batch in pipeline.pretrain_stream(shard, steps, tasks, task_cpus).iter_torch_batches():
                shapes.append([list(batch["view_q"].shape), list(batch["mask"].shape)])
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = ray.train.Checkpoint.from_directory(folder) if context.get_world_rank() == 0 else None
            ray.train.report({"shapes": shapes}, checkpoint=checkpoint)

    cfg = _cfg(synth_root)
    plan = runtime.plan_resources(2, cfg.train, cfg.data)
    assert plan.cpus_per_worker * 2 + plan.data_cpus == pytest.approx(2) and plan.data_cpus >= 1
    shards = [_shard(cfg, train_manifest, rank=rank, total_steps=2) for rank in (0, 1)]
    trainer = TorchTrainer(
        pull_two_batches,
        train_loop_config={"shards": shards, "plan": plan},
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": plan.cpus_per_worker}),
        run_config=RunConfig(name="pipeline-test", storage_path=str(tmp_path)),
    )
    result = trainer.fit()
    assert result.error is None
    assert result.metrics["shapes"] == [[[4, 3, 8, 64, 64], [4, 64, 64]]] * 2


@pytest.mark.parametrize(
    "cpus,workers,per_worker,data_cpus", [(2, 2, 0.5, 1.0), (2, 1, 1.0, 1.0), (16, 8, 1.0, 8.0), (1, 1, 0.5, 0.5)]
)
def test_plan_always_leaves_cpus_for_data(cpus, workers, per_worker, data_cpus):
    plan = runtime.plan_resources(cpus, config.TrainConfig(num_workers=workers, global_batch=8), config.DataConfig())
    assert (plan.cpus_per_worker, plan.data_cpus) == (per_worker, data_cpus)
    tasks, task_cpus = plan.per_rank(workers)
    assert tasks * task_cpus * workers <= plan.data_cpus + 1e-9 and task_cpus > 0


def test_plan_rejects_workers_that_take_every_cpu():
    with pytest.raises(ConfigError, match="no CPU for data"):
        runtime.plan_resources(2, config.TrainConfig(num_workers=2, cpus_per_worker=1.0), config.DataConfig())


def test_crop_larger_than_videos_is_rejected_before_decoding(synth_root, train_manifest):
    data = config.DataConfig(dataset="ucf101", data_root=synth_root, crop_size=200)
    with pytest.raises(UserError, match="data.crop_size"):
        pipeline.load_manifest(train_manifest, data)


def test_preview_command_writes_a_picture(ray_local, synth_root, train_manifest, tmp_path):
    import typer
    from PIL import Image
    from typer.testing import CliRunner

    from fame_ray.commands.data_preview import preview

    app = typer.Typer()
    app.command()(preview)
    out = tmp_path / "fame.png"
    result = CliRunner().invoke(
        app,
        [
            "--dataset",
            "ucf101",
            "--data-root",
            synth_root,
            "--clips",
            "3",
            "--set",
            "data.crop_size=64",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    image = Image.open(out)
    # 3 rows of 64-pixel tiles; 4 original frames + mask + 4 merged frames per row.
    assert image.width > 9 * 64 and image.height > 3 * 64
