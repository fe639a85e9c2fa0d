"""Ray Data pipeline on a local 2-CPU Ray: batch shapes, FAME on the query view, skipped
corrupt videos, eval clips, and Ray Train workers that hold CPUs without starving the data."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pytest

from fame_ray import config
from fame_ray.data import catalog, manifest, pipeline

pytestmark = pytest.mark.ray

SMALL = {"frames_per_clip": 8, "temporal_stride": 2, "crop_size": 64, "eval_clips": 3}


def _cfg(synth_root, **train):
    values = {"data": {"dataset": "ucf101", "data_root": synth_root, **SMALL}, "moco": {"queue_size": 64}, "train": {"global_batch": 8, "num_workers": 2, **train}}
    return config.from_dict(config.PretrainConfig, values)


@pytest.fixture(scope="module")
def train_manifest(synth_root):
    return catalog.manifest_uri(_cfg(synth_root).data, "train")


def test_pretrain_batches_have_views_and_labels(ray_local, synth_root, train_manifest):
    cfg = _cfg(synth_root)
    rows = manifest.read(train_manifest).num_rows
    batches = list(pipeline.pretrain_dataset(train_manifest, cfg, per_worker_batch=4).iter_batches(batch_size=4, batch_format="numpy", drop_last=True))
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
    batch = pipeline.pretrain_dataset(train_manifest, cfg, per_worker_batch=4).take_batch(4)
    assert batch["view_q"].shape == (4, 3, 8, 64, 64)


def test_corrupt_video_is_skipped_and_counted(ray_local, synth_root, train_manifest, tmp_path):
    table = manifest.read(train_manifest)
    corrupt = tmp_path / "corrupt.avi"
    corrupt.write_bytes(os.urandom(4096))
    bad = table.slice(0, 1).to_pydict()
    bad["path"] = [str(corrupt)]
    uri = str(tmp_path / "with_corrupt.parquet")
    manifest.write(pa.concat_tables([table, pa.Table.from_pydict(bad, schema=manifest.SCHEMA)]), uri)
    before = pipeline.decode_failures()["count"]
    cfg = _cfg(synth_root)
    total = sum(len(b["label"]) for b in pipeline.pretrain_dataset(uri, cfg, per_worker_batch=4).iter_batches(batch_size=None, batch_format="numpy"))
    assert total == table.num_rows
    failures = pipeline.decode_failures()
    assert failures["count"] == before + 1
    assert any(path == str(corrupt) for path, _ in failures["examples"])


def test_eval_dataset_gives_uniform_clips_per_video(ray_local, synth_root):
    data = _cfg(synth_root).data
    uri = catalog.manifest_uri(data, "test")
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


def _pull_two_batches(loop_config):
    import ray.train

    shard = ray.train.get_dataset_shard("train")
    shapes = []
    for index, batch in enumerate(shard.iter_torch_batches(batch_size=loop_config["batch"], drop_last=True)):
        shapes.append([list(batch["view_q"].shape), list(batch["view_k"].shape), str(batch["label"].dtype)])
        if index == 1:
            break
    ray.train.report({"shapes": shapes, "rank": ray.train.get_context().get_world_rank()})


@pytest.mark.timeout(300)
def test_torch_trainer_on_two_cpus_does_not_starve_the_data(ray_local, synth_root, train_manifest, tmp_path):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    cfg = _cfg(synth_root)
    plan = pipeline.plan_resources(2, cfg.train, cfg.data)
    assert plan.cpus_per_worker * 2 + plan.data_cpus == pytest.approx(2) and plan.data_cpus >= 1
    dataset = pipeline.pretrain_dataset(train_manifest, cfg, plan=plan)
    trainer = TorchTrainer(
        _pull_two_batches,
        train_loop_config={"batch": pipeline.per_worker_batch_size(cfg.train)},
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": plan.cpus_per_worker}),
        datasets={"train": dataset},
        run_config=RunConfig(name="pipeline-test", storage_path=str(tmp_path)),
    )
    result = trainer.fit()
    assert result.error is None
    assert result.metrics["shapes"] == [[[4, 3, 8, 64, 64], [4, 3, 8, 64, 64], "torch.int64"]] * 2
