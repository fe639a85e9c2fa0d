"""The memory estimate of a training worker, and the refusal of a run that cannot fit its nodes."""

from __future__ import annotations

import pytest
import torch

from fame_ray.config import FinetuneConfig, PretrainConfig, build, presets
from fame_ray.downstream.preflight import micro_batch_for as finetune_micro_batch
from fame_ray.errors import UserError
from fame_ray.models import memory
from fame_ray.models.backbones import build_backbone
from fame_ray.pretrain.plan import micro_batch_for, world_plans

GB = memory.GB


@pytest.mark.parametrize("arch", sorted(memory.ARCH_MEMORY))
def test_the_parameter_counts_are_the_backbones(arch):
    with torch.device("meta"):
        backbone = build_backbone(arch)
    cost = memory.ARCH_MEMORY[arch]
    assert cost.parameters == sum(p.numel() for p in backbone.parameters())
    assert cost.feature_dim == backbone.feature_dim


@pytest.mark.parametrize("task", ["finetune", "linear", "pretrain"])
@pytest.mark.parametrize("arch", sorted(memory.ARCH_MEMORY))
def test_more_clips_need_more_and_micro_batches_need_less(task, arch):
    workload = memory.Workload(task, arch, 16, 112)

    def total(batch, micro=0):
        return memory.worker_memory(workload, batch, micro).total

    assert total(8) < total(16) < total(64)
    assert total(64, 16) < total(64) and total(64, 4) < total(64, 16)
    assert total(64, 64) == total(64, 0) == total(64, 128)  # a micro batch of the whole batch is none
    assert total(64, 16) > total(16)  # the whole batch's inputs are still held
    parts = memory.worker_memory(workload, 64, 16).parts
    assert set(parts) == {"process", "weights and state", "inputs", "activations"} and all(
        v > 0 for v in parts.values()
    )


def test_the_architectures_rank_as_measured_and_scale_with_the_clip():
    finetune = {
        arch: memory.worker_memory(memory.Workload("finetune", arch, 16, 112), 64).total for arch in memory.ARCH_MEMORY
    }
    assert finetune["tiny"] < finetune["i3d"] < finetune["r3d_18"] < finetune["r2plus1d_18"]
    # R(2+1)D-18, 64 clips of 16x112x112 at once on CPU: about 32 GB (measured slope 2.2-2.3 kB a voxel).
    assert 25 * GB < finetune["r2plus1d_18"] < 40 * GB
    small, large = (
        memory.worker_memory(memory.Workload("finetune", "r2plus1d_18", frames, crop), 8).parts["activations"]
        for frames, crop in ((8, 112), (16, 224))
    )
    assert large == pytest.approx(8 * small)
    # MoCo runs two query forwards per clip before its backward.
    pretrain = memory.worker_memory(memory.Workload("pretrain", "r2plus1d_18", 16, 112), 64).parts["activations"]
    assert pretrain == pytest.approx(
        2 * memory.worker_memory(memory.Workload("finetune", "r2plus1d_18", 16, 112), 64).parts["activations"]
    )


R21D = memory.Workload("finetune", "r2plus1d_18", 16, 112)
_need = R21D.need


def test_a_batch_that_fits_passes_and_one_that_does_not_is_refused_with_the_micro_batch_that_fits():
    memory.check_fits(R21D, [memory.Placement(64)], 0, [64 * GB])
    with pytest.raises(UserError) as refused:
        memory.check_fits(R21D, [memory.Placement(64)], 0, [24 * GB])
    line = refused.value.one_line()
    assert (
        line.startswith("finetune needs ~")
        and "(r2plus1d_18, 16x112x112, 64 clips at once) but nodes have 24.0 GB: set --set train.micro_batch=" in line
    )
    micro = int(line.split("train.micro_batch=")[1].split()[0])
    assert 64 % micro == 0 and _need(64, micro) <= 24 * GB and _need(64, 2 * micro) > 24 * GB
    assert "\n" not in line


def test_even_one_clip_too_many_names_the_other_knobs():
    with pytest.raises(UserError, match="even one clip at a time needs ~.*lower data.crop_size"):
        memory.check_fits(R21D, [memory.Placement(64)], 0, [1.5 * GB])


def test_no_node_yet_skips_the_check(caplog):
    with caplog.at_level("INFO"):
        memory.check_fits(memory.Workload("pretrain", "i3d", 64, 224), [memory.Placement(512)], 0, [])
    assert "memory check skipped" in caplog.text


def test_workers_that_share_a_node_share_its_memory():
    one = _need(16, 0)
    memory.check_fits(R21D, [memory.Placement(16, workers_per_node=1)], 0, [one * 1.1])
    with pytest.raises(UserError, match="for 2 workers each: set --set train.micro_batch="):
        memory.check_fits(R21D, [memory.Placement(16, workers_per_node=2)], 0, [one * 1.1])


def test_elastic_runs_get_a_micro_batch_that_divides_every_per_worker_batch():
    placements = [memory.Placement(32), memory.Placement(16), memory.Placement(8)]
    with pytest.raises(UserError) as refused:
        memory.check_fits(R21D, placements, 0, [_need(32, 4) * 1.01])
    assert "(r2plus1d_18, 16x112x112, 32 clips at once)" in str(refused.value) and "train.micro_batch=4 " in str(
        refused.value
    )


def _finetune(**train):
    return build(FinetuneConfig, presets.recipe_finetune(), {"pretrained": "unused", "train": train})


def test_an_explicit_micro_batch_is_checked_and_refused_with_the_one_that_fits():
    """Issue 12: R(2+1)D-18, one CPU worker, global batch 64 at 16x112x112, on a 24 GB node: an
    explicit 0 (the whole batch) is refused naming the micro batch that fits; 16 fits."""
    with pytest.raises(
        UserError,
        match=(
            r"finetune needs ~\d+\.\d GB per worker \(r2plus1d_18, 16x112x112, 64 clips at once\) but nodes have "
            r"24.0 GB: set --set train.micro_batch=\d+"
        ),
    ):
        finetune_micro_batch(_finetune(global_batch=64, micro_batch=0), 101, [24 * GB])
    assert finetune_micro_batch(_finetune(global_batch=64, micro_batch=16), 101, [24 * GB]).train.micro_batch == 16


def test_auto_takes_the_largest_micro_batch_that_fits_and_logs_it_in_one_line(caplog):
    with caplog.at_level("INFO"):
        resolved = finetune_micro_batch(_finetune(global_batch=64), 101, [24 * GB])
    micro = resolved.train.micro_batch
    assert 0 < micro < 64 and 64 % micro == 0
    assert _need(64, micro) <= 24 * GB and _need(64, 2 * micro) > 24 * GB
    lines = [r.getMessage() for r in caplog.records if "train.micro_batch auto" in r.getMessage()]
    assert len(lines) == 1 and f"{micro} clips at a time (per-worker batch 64), ~" in lines[0]
    assert "GB per worker (r2plus1d_18, 16x112x112); nodes have up to 24.0 GB" in lines[0]
    # A batch that fits whole: 0, the whole batch at once; GPUs: the whole batch (no estimate).
    assert finetune_micro_batch(_finetune(global_batch=64), 101, [512 * GB]).train.micro_batch == 0
    assert finetune_micro_batch(_finetune(global_batch=64, use_gpu=True), 101, [24 * GB]).train.micro_batch == 0
    # A frozen backbone keeps no activations for a backward: batch 128 fits whole; the official
    # probe's batch of 256 goes 128 clips at a time.
    linear = build(FinetuneConfig, presets.recipe_finetune(), {"pretrained": "x", "mode": "linear"})
    assert finetune_micro_batch(linear, 101, [24 * GB]).train.micro_batch == 0
    probe = build(FinetuneConfig, presets.linear_probe(), {"pretrained": "x"})
    assert finetune_micro_batch(probe, 101, [24 * GB]).train.micro_batch == 128


def test_auto_refuses_only_when_one_clip_at_a_time_does_not_fit():
    with pytest.raises(UserError, match=r"even one clip at a time, but nodes have 1.5 GB: lower data.crop_size"):
        finetune_micro_batch(_finetune(global_batch=64), 101, [1.5 * GB])


def test_pretrain_auto_divides_every_elastic_per_worker_batch():
    cfg = build(
        PretrainConfig,
        presets.ucf101_r21d_pretrain(),
        {"train": {"global_batch": 64, "num_workers": 4, "min_workers": 3}},
    )
    micro = micro_batch_for(cfg, world_plans(cfg), [20 * GB])
    batches = [world.per_worker_batch for world in world_plans(cfg).values()]
    assert micro > 0 and all(batch % micro == 0 for batch in batches), (micro, batches)


def test_pretrain_plan_refuses_i3d_at_64x224x224_on_any_node_of_today():
    cfg = build(
        PretrainConfig,
        presets.k400_i3d_pretrain(),
        {"data": {"frames_per_clip": 64}, "train": {"global_batch": 512, "num_workers": 1, "use_gpu": False}},
    )
    with pytest.raises(
        UserError,
        match=r"pretrain needs ~\d+\.\d GB per worker \(i3d, 64x224x224, 512 clips at once\) but nodes have 1024.0 GB",
    ):
        micro_batch_for(build(PretrainConfig, cfg, {"train": {"micro_batch": 0}}), world_plans(cfg), [1024 * GB])
    assert 512 % micro_batch_for(cfg, world_plans(cfg), [1024 * GB]) == 0  # auto: what fits
    demo = build(PretrainConfig, presets.demo_pretrain())
    assert micro_batch_for(demo, world_plans(demo), [8 * GB]) == 0
