"""Ray Data pipeline on a local 2-CPU Ray: batch shapes, FAME on the query view, skipped
corrupt videos, eval clips, and Ray Train workers that hold CPUs without starving the data."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pytest

from fame_ray import config, runtime
from fame_ray.data import catalog, manifest, pipeline
from fame_ray.errors import ConfigError
from fame_ray.storage import Location

pytestmark = pytest.mark.ray

SMALL = {"frames_per_clip": 8, "temporal_stride": 2, "crop_size": 64, "eval_clips": 3}


def _cfg(synth_root, **train):
    values = {"data": {"dataset": "ucf101", "data_root": synth_root, **SMALL}, "moco": {"queue_size": 64}, "train": {"global_batch": 8, "num_workers": 2, **train}}
    return config.from_dict(config.PretrainConfig, values)


@pytest.fixture(scope="module")
def train_manifest(synth_root):
    data = _cfg(synth_root).data
    return catalog.manifest_location(data, data.location(), "train")


def test_pretrain_batches_have_views_and_labels(ray_local, synth_root, train_manifest):
    cfg = _cfg(synth_root)
    rows = manifest.read(train_manifest).num_rows
    batches = list(pipeline.pretrain_dataset(train_manifest, cfg, runtime.plan_resources(2, cfg.train, cfg.data), per_worker_batch=4).iter_batches(batch_size=4, batch_format="numpy", drop_last=True))
    assert len(batches) == rows // 4
    first = batches[0]
    assert first["view_q"].shape == first["view_k"].shape == (4, 3, 8, 64, 64)
    assert first["view_q"].dtype == np.uint8 and first["label"].dtype == np.int64
    labels = np.concatenate([b["label"] for b in batches])
    assert set(labels) <= set(manifest.read(train_manifest)["label"].to_pylist())
    # Two clips at independent positions and crops: the views differ.
    assert any((b["view_q"] != b["view_k"]).any() for b in batches)


def test_fame_off_gives_plain_query_clips(ray_local, synth_root, train_manifest):
    cfg = _cfg(synth_root)
    cfg.fame.enabled = False
    batch = pipeline.pretrain_dataset(train_manifest, cfg, runtime.plan_resources(2, cfg.train, cfg.data), per_worker_batch=4).take_batch(4)
    assert batch["view_q"].shape == (4, 3, 8, 64, 64)


def test_corrupt_video_is_skipped_and_counted(ray_local, synth_root, train_manifest, tmp_path):
    table = manifest.read(train_manifest)
    corrupt = tmp_path / "corrupt.avi"
    corrupt.write_bytes(os.urandom(4096))
    bad = table.slice(0, 1).to_pydict()
    bad["path"] = [str(corrupt)]
    uri = Location.parse(str(tmp_path / "with_corrupt.parquet"))
    manifest.write(pa.concat_tables([table, pa.Table.from_pydict(bad, schema=manifest.SCHEMA)]), uri)
    before = pipeline.decode_failures()["count"]
    cfg = _cfg(synth_root)
    total = sum(len(b["label"]) for b in pipeline.pretrain_dataset(uri, cfg, runtime.plan_resources(2, cfg.train, cfg.data), per_worker_batch=4).iter_batches(batch_size=None, batch_format="numpy"))
    assert total == table.num_rows
    failures = pipeline.decode_failures()
    assert failures["count"] == before + 1
    assert any(path == str(corrupt) for path, _ in failures["examples"])


def test_eval_dataset_gives_uniform_clips_per_video(ray_local, synth_root):
    data = _cfg(synth_root).data
    uri = catalog.manifest_location(data, data.location(), "test")
    videos = manifest.read(uri).num_rows
    rows = pipeline.supervised_dataset(uri, data, train=False).take_all()
    assert len(rows) == videos * data.eval_clips
    assert rows[0]["clip"].shape == (3, 8, 64, 64) and rows[0]["clip"].dtype == np.uint8
    pairs = {(int(r["video_index"]), int(r["clip_index"])) for r in rows}
    assert pairs == {(v, c) for v in range(videos) for c in range(data.eval_clips)}


def test_train_supervised_dataset_one_clip_per_video(ray_local, synth_root, train_manifest):
    data = _cfg(synth_root).data
    rows = pipeline.supervised_dataset(train_manifest, data, train=True).take_all()
    assert sorted(int(r["video_index"]) for r in rows) == list(range(manifest.read(train_manifest).num_rows))


@pytest.mark.timeout(300)
def test_torch_trainer_on_two_cpus_does_not_starve_the_data(ray_local, synth_root, train_manifest, tmp_path):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    def pull_two_batches(loop_config):  # nested: pickled by value for the workers
        import tempfile

        import ray.train

        shard = ray.train.get_dataset_shard("train")
        shapes = []
        for index, batch in enumerate(shard.iter_torch_batches(batch_size=loop_config["batch"], drop_last=True)):
            shapes.append([list(batch["view_q"].shape), list(batch["view_k"].shape), str(batch["label"].dtype)])
            if index == 1:
                break
        # Ray Train V2 keeps metrics only when they come with a checkpoint (rank 0's).
        with tempfile.TemporaryDirectory() as folder:
            checkpoint = ray.train.Checkpoint.from_directory(folder) if ray.train.get_context().get_world_rank() == 0 else None
            ray.train.report({"shapes": shapes}, checkpoint=checkpoint)

    cfg = _cfg(synth_root)
    plan = runtime.plan_resources(2, cfg.train, cfg.data)
    assert plan.cpus_per_worker * 2 + plan.data_cpus == pytest.approx(2) and plan.data_cpus >= 1
    dataset = pipeline.pretrain_dataset(train_manifest, cfg, plan)
    trainer = TorchTrainer(
        pull_two_batches,
        train_loop_config={"batch": cfg.train.split_batch(cfg.train.num_workers)[0]},
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": plan.cpus_per_worker}),
        datasets={"train": dataset},
        run_config=RunConfig(name="pipeline-test", storage_path=str(tmp_path)),
    )
    result = trainer.fit()
    assert result.error is None
    assert result.metrics["shapes"] == [[[4, 3, 8, 64, 64], [4, 3, 8, 64, 64], "torch.int64"]] * 2


@pytest.mark.parametrize("cpus,workers,per_worker,data_cpus", [(2, 2, 0.5, 1.0), (2, 1, 1.0, 1.0), (16, 8, 1.0, 8.0), (1, 1, 0.5, 0.5)])
def test_plan_always_leaves_cpus_for_data(cpus, workers, per_worker, data_cpus):
    plan = runtime.plan_resources(cpus, config.TrainConfig(num_workers=workers, global_batch=8), config.DataConfig())
    assert (plan.cpus_per_worker, plan.data_cpus) == (per_worker, data_cpus)
    decode_share = plan.decode_cpus * plan.decode_concurrency
    assert decode_share + plan.fame_cpus * plan.fame_concurrency <= plan.data_cpus + 1e-9
    assert decode_share > 0 and plan.fame_cpus > 0


def test_plan_rejects_workers_that_take_every_cpu():
    with pytest.raises(ConfigError, match="no CPU for data"):
        runtime.plan_resources(2, config.TrainConfig(num_workers=2, cpus_per_worker=1.0), config.DataConfig())


def test_crop_larger_than_videos_is_rejected_before_decoding(synth_root, train_manifest):
    from fame_ray.errors import UserError

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
    result = CliRunner().invoke(app, ["--dataset", "ucf101", "--data-root", synth_root, "--clips", "3", "--set", "data.crop_size=64", "--out", str(out)])
    assert result.exit_code == 0, result.output
    image = Image.open(out)
    # 3 rows of 64-pixel tiles; 4 original frames + mask + 4 merged frames per row.
    assert image.width > 9 * 64 and image.height > 3 * 64


def test_bench_reports_decode_and_pipeline_figures(synth_root, train_manifest):
    from fame_ray.bench import data as bench

    result = bench.run(synth_root, videos=8, batch=4, repeats=1, with_ray=False, overrides=["data.frames_per_clip=8", "data.crop_size=64"])
    figures = result["in_process"]["cpu"]
    assert result["setup"]["videos"] == 8 and result["machine"]["cores"] >= 1
    assert figures["decode_clips_per_s"] > 0 and 0 < figures["pipeline_vs_decode"] <= 1
    assert figures["fame_share_of_decode"] > 0
    assert set(result["met"]) == {"pipeline_vs_decode", "fame_share_of_decode"}
