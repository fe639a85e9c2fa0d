"""Bad pretraining input fails before any worker starts, with a one-line UserError."""

from __future__ import annotations

import pytest

from fame_ray import config as cfg
from fame_ray.commands.pretrain import choose_preset, parse_workers
from fame_ray.errors import ConfigError, UserError
from fame_ray.train.pretrain import split_batch, total_steps, validate


def _demo(**train):
    values = cfg.demo_pretrain()
    values["train"].update(train)
    return values


def test_workers_flag():
    assert parse_workers("4") == {"num_workers": 4, "min_workers": 0}
    assert parse_workers("2-8") == {"num_workers": 8, "min_workers": 2}
    for bad in ("x", "0", "4-2", "1-"):
        with pytest.raises(UserError):
            parse_workers(bad)


def test_preset_choice():
    assert choose_preset(None, None, None) == "demo"
    assert choose_preset(None, None, "synthetic") == "demo"
    assert choose_preset(None, None, "ucf101") == "recipe"
    assert choose_preset(None, "jobs/x.yaml", None) == "recipe"
    assert choose_preset("k400-i3d", None, None) == "k400-i3d"


def test_batch_split_rounds_down():
    assert split_batch(16, 2) == (8, 16)
    assert split_batch(16, 3) == (5, 15)


def test_unknown_arch_and_small_batch():
    with pytest.raises(ConfigError, match="unknown arch"):
        cfg.build(cfg.PretrainConfig, cfg.demo_pretrain(), overrides=["model.arch=resnet50"])
    with pytest.raises(ConfigError, match="smaller than the number of workers"):
        cfg.build(cfg.PretrainConfig, _demo(global_batch=1, num_workers=2))


def test_queue_must_divide_for_every_elastic_world_size(tmp_path):
    config = cfg.build(cfg.PretrainConfig, _demo(global_batch=16, num_workers=3, min_workers=1), overrides=[f"storage.path={tmp_path}"])
    with pytest.raises(ConfigError, match="effective global batch 15"):
        validate(config)
    validate(cfg.build(cfg.PretrainConfig, _demo(num_workers=2, min_workers=1), overrides=[f"storage.path={tmp_path}"]))


def test_resume_of_a_missing_run(tmp_path):
    config = cfg.build(cfg.PretrainConfig, cfg.demo_pretrain(), overrides=[f"storage.path={tmp_path}", "storage.resume=nope"])
    with pytest.raises(UserError, match="no run named 'nope'"):
        validate(config)


def test_total_steps():
    config = cfg.build(cfg.PretrainConfig, cfg.demo_pretrain())
    assert total_steps(config, 100) == config.train.epochs * (100 // 16)
    capped = cfg.build(cfg.PretrainConfig, _demo(max_steps=7))
    assert total_steps(capped, 100) == 7
