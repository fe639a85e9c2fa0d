"""Bad pretraining input fails before any worker starts, with a one-line UserError; the run plan."""

from __future__ import annotations

import pytest

from fame_ray.commands.pretrain import parse_workers
from fame_ray.config import FinetuneConfig, PretrainConfig, build, presets
from fame_ray.errors import ConfigError, UserError
from fame_ray.pretrain.driver import preflight
from fame_ray.pretrain.plan import make_plan, total_steps
from fame_ray.runtime import ResourcePlan
from fame_ray.storage import Location


def _demo(**train):
    return build(PretrainConfig, presets.demo_pretrain(), {"train": train})


def test_workers_flag():
    assert parse_workers("4") == {"num_workers": 4, "min_workers": 0}
    assert parse_workers("2-8") == {"num_workers": 8, "min_workers": 2}
    for bad in ("x", "0", "4-2", "1-"):
        with pytest.raises(UserError):
            parse_workers(bad)


def test_preset_choice():
    assert presets.choose(None, None, None) == "demo"
    assert presets.choose(None, None, "synthetic") == "demo"
    assert presets.choose(None, None, "ucf101") == "recipe"
    assert presets.choose(None, "jobs/x.yaml", None) == "recipe"
    assert presets.choose("k400-i3d", None, None) == "k400-i3d"


def test_presets_are_complete_typed_configs():
    for name, make in presets.PRETRAIN.items():
        config = make()
        assert isinstance(config, PretrainConfig) and config.preset == name
    assert presets.FINETUNE["demo"]().model.arch == "tiny"


def test_batch_split_rounds_down():
    train = _demo(global_batch=16).train
    assert train.split_batch(2) == (8, 16)
    assert train.split_batch(3) == (5, 15)


def test_unknown_arch_and_small_batch():
    with pytest.raises(ConfigError, match="unknown arch"):
        build(PretrainConfig, presets.demo_pretrain(), overrides=["model.arch=resnet50"])
    with pytest.raises(ConfigError, match="smaller than the number of workers"):
        _demo(global_batch=1, num_workers=2)


def test_micro_batch_must_divide_the_per_worker_batch():
    assert _demo(global_batch=32, num_workers=2, micro_batch=4).train.micro_batch == 4
    assert _demo(global_batch=32, num_workers=2, micro_batch=16).train.micro_batch == 16
    with pytest.raises(
        ConfigError, match=r"train.micro_batch 6 does not divide the per-worker batch \(16\)"
    ) as refused:
        _demo(global_batch=32, num_workers=2, micro_batch=6)
    assert "--set train.micro_batch=4" in refused.value.one_line() and "\n" not in refused.value.one_line()
    # Elastic 1-3 workers: per-worker 32, 16 or 10 clips; 2 divides them all, 4 does not.
    _demo(global_batch=32, num_workers=3, min_workers=1, micro_batch=2)
    with pytest.raises(ConfigError, match=r"one of \[10, 16, 32\]") as refused:
        build(
            PretrainConfig,
            presets.demo_pretrain(),
            overrides=["train.num_workers=3", "train.min_workers=1", "train.micro_batch=4"],
        )
    assert "--set train.micro_batch=2" in refused.value.one_line()
    with pytest.raises(ConfigError, match="train.micro_batch must be 'auto' or a number >= 0"):
        _demo(micro_batch=-1)
    with pytest.raises(ConfigError, match=r"train.micro_batch must be 'auto' or a number >= 0 .*, got 'most'"):
        _demo(micro_batch="most")


def test_micro_batch_is_auto_by_default_and_a_number_wins():
    assert PretrainConfig().train.micro_batch == "auto" and FinetuneConfig().train.micro_batch == "auto"
    assert build(PretrainConfig, presets.demo_pretrain(), overrides=["train.micro_batch=8"]).train.micro_batch == 8
    assert build(PretrainConfig, {}, {"train": {"micro_batch": "auto"}}).train.micro_batch == "auto"


def test_queue_rule_is_the_official_one_and_elastic_batches_are_accepted():
    with pytest.raises(ConfigError, match="must be divisible by train.global_batch"):
        build(PretrainConfig, presets.demo_pretrain(), overrides=["moco.queue_size=100"])
    # 16 on 3 workers is an effective 15: the ring-buffer queue takes it (tests/unit/test_moco.py).
    _demo(global_batch=16, num_workers=3, min_workers=1)


def test_resume_of_a_missing_run(tmp_path):
    config = build(
        PretrainConfig, presets.demo_pretrain(), overrides=[f"storage.path={tmp_path}", "storage.resume=nope"]
    )
    with pytest.raises(UserError, match="no run named 'nope'"):
        preflight(config)


def test_total_steps():
    config = _demo(global_batch=16)
    assert total_steps(config, 100) == config.train.epochs * (100 // 16)
    assert total_steps(_demo(global_batch=16, max_steps=7), 100) == 7


def test_the_plan_holds_every_derived_value(tmp_path):
    config = build(
        PretrainConfig,
        presets.demo_pretrain(),
        {
            "train": {"num_workers": 3, "min_workers": 1, "global_batch": 12},
            "moco": {"queue_size": 120},
            "storage": {"path": str(tmp_path)},
        },
    )
    resources = ResourcePlan(0.5, 1.0)
    where = Location.parse(str(tmp_path / "m.parquet"))
    plan = make_plan(config, {"train": where, "test": where}, 100, resources, "abc")
    assert plan.steps_per_epoch == 100 // 12 and plan.total_steps == config.train.epochs * plan.steps_per_epoch
    assert plan.run.uri == str(tmp_path / "pretrain-synthetic-tiny")
    assert sorted(plan.worlds) == [1, 2, 3]
    assert plan.for_world(3).per_worker_batch == 4 and plan.for_world(3).effective_batch == 12
    assert plan.for_world(2).peak_lr == pytest.approx(config.optim.lr * 12 / config.optim.base_batch)
