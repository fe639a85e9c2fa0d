"""The protocol settings as the official code has them: the presets' values, the heads, the data
path's geometry and Background Erasing's views, and docs/recipe.md's table, which must be the
code's (every row with the test that pins it)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from fame_ray.commands import common
from fame_ray.config import FinetuneConfig, PretrainConfig, build, presets, protocol
from fame_ray.data.clips import pipeline, sampling
from fame_ray.data.manifest import DECORD
from fame_ray.data.transcode import EncodeSettings
from fame_ray.errors import UserError
from fame_ray.models.backbones import build_backbone
from fame_ray.models.heads import build_classifier
from fame_ray.storage import Location

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "docs" / "recipe.md"


def _finetune(flags: dict, dataset=None, preset=None, overrides=None) -> FinetuneConfig:
    """The config `fame-ray finetune` assembles from these flags."""
    return common.assemble(FinetuneConfig, presets.FINETUNE, flags, dataset, None, preset, overrides)


def test_the_finetune_recipe_is_eval_sh():
    """eval.sh: lr 0.025, wd 1e-4, 150 epochs, lr/10 at 60 and 120, batch 128; eval.py: momentum
    0.9, dropout 0.7, the lr never scaled with the batch."""
    cfg = _finetune({"data": {"dataset": "ucf101"}}, dataset="ucf101")
    assert cfg.preset == "recipe" and cfg.mode == "finetune"
    optim = cfg.optim
    assert (optim.lr, optim.momentum, optim.weight_decay, optim.base_batch) == (0.025, 0.9, 1e-4, 0)
    assert (optim.schedule, optim.milestones, cfg.train.epochs, cfg.train.global_batch) == ("step", (60, 120), 150, 128)
    assert cfg.dropout == 0.7


def test_linear_mode_gets_the_official_probe_and_explicit_values_win():
    """eval.py --freeze defaults: lr 30, momentum 0.9, wd 0, 100 epochs, lr/10 at 60 and 80, batch
    256; chosen by --mode linear alone (flags and --set still win; --preset and --config choose)."""
    probe = _finetune({"mode": "linear"})
    assert probe.preset == "linear" and probe.mode == "linear" and probe.data.dataset == "ucf101"
    optim = probe.optim
    assert (optim.lr, optim.momentum, optim.weight_decay, optim.base_batch) == (30.0, 0.9, 0.0, 0)
    assert (optim.schedule, optim.milestones, probe.train.epochs, probe.train.global_batch) == (
        "step",
        (60, 80),
        100,
        256,
    )
    assert _finetune({"data": {"dataset": "hmdb51"}, "mode": "linear"}, dataset="hmdb51").optim.lr == 30.0
    assert _finetune({}, overrides=["mode=linear"]).preset == "linear"
    explicit = _finetune({"mode": "linear", "train": {"epochs": 7}}, overrides=["optim.lr=3"])
    assert (explicit.train.epochs, explicit.optim.lr, explicit.optim.weight_decay) == (7, 3.0, 0.0)
    assert _finetune({"mode": "linear"}, preset="recipe").optim.lr == 0.025
    demo = _finetune({"data": {"dataset": "synthetic"}, "mode": "linear"}, dataset="synthetic")
    assert (demo.preset, demo.optim.lr, demo.optim.weight_decay, demo.model.arch) == ("demo-linear", 30.0, 0.0, "tiny")
    assert presets.choose(None, None, None) == "demo" and presets.choose(None, "x.yaml", None, "linear") == "recipe"


@pytest.mark.parametrize("arch", ["r2plus1d_18", "i3d"])
def test_classifier_heads_are_initialised_and_dropped_out_as_the_official(arch):
    """eval.py:197-199 draws R(2+1)D's fc N(0, 0.01) with zero bias; backbone/i3d.py:273 keeps
    PyTorch's default Linear. The probe: no dropout for R(2+1)D (eval.py:191), 0.7 for I3D (eval.py:201)."""
    with torch.device("meta"):
        backbone = build_backbone(arch)
    torch.manual_seed(0)
    model = build_classifier(backbone.to_empty(device="cpu"), 101, "finetune", 0.7, arch)
    weight, bias = model.fc.weight.detach(), model.fc.bias.detach()
    if arch == "r2plus1d_18":
        assert abs(float(weight.std()) - 0.01) < 0.001 and torch.count_nonzero(bias) == 0
    else:  # kaiming_uniform(a=sqrt(5)): uniform within 1/sqrt(fan_in), bias too
        bound = 1 / backbone.feature_dim**0.5
        assert float(weight.abs().max()) <= bound and float(weight.std()) > 0.5 * bound / 3**0.5
        assert torch.count_nonzero(bias) == bias.numel()
    assert model.dropout.p == 0.7
    probe = build_classifier(backbone, 101, "linear", 0.7, arch)
    assert probe.dropout.p == (0.7 if arch == "i3d" else 0.0)


def test_clip_and_crop_defaults_are_the_official():
    for cfg in (PretrainConfig(), FinetuneConfig()):
        data = cfg.data
        assert (data.frames_per_clip, data.temporal_stride, data.crop_size, data.crop_scale) == (16, 2, 112, (0.2, 1.0))
        assert (data.test_crop, data.eval_clips, data.resize_antialias) == ("center", 10, False)
    assert (FinetuneConfig().video_score, FinetuneConfig().test_every) == ("official", 10)


def test_the_default_copy_keeps_the_frame_size_and_resizing_is_opt_in():
    """The official code reads UCF101 at 320x240: the default copy keeps every frame's size."""
    keep = EncodeSettings()
    assert keep.short_side == 0 and keep.frame_size(320, 240) == (320, 240) and keep.frame_size(341, 255) == (340, 254)
    assert "frame size kept (the official geometry)" in keep.describe()
    keep.check_crop(224)  # the original's frames serve the crops the original serves
    resized = EncodeSettings(short_side=128)
    assert resized.frame_size(320, 240) == (170, 128) and "a deviation from the official geometry" in resized.describe()
    with pytest.raises(UserError, match="--short-side must be 0 .keep the frame size. or an even number"):
        EncodeSettings(short_side=100)


def _write_video(path: Path, frames: int = 60, size: int = 64) -> str:
    """Frame t is a flat grey of brightness 4 * t: a decoded frame tells its index."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = size
        stream.pix_fmt, stream.options = "yuv420p", {"crf": "10"}
        for t in range(frames):
            image = np.full((size, size, 3), 4 * t, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return str(path)


def _one_video(tmp_path) -> tuple[dict, sampling.EpochSampler]:
    """The columns `pipeline.clip_pair` reads, for one 60-frame video of `_write_video`, and a
    one-video, one-clip-per-step sampler."""
    video = _write_video(tmp_path / "v.mp4")
    videos = {
        "path": [video],
        "label": np.array([0]),
        "start_frame": np.array([0]),
        "end_frame": np.array([60]),
        "decoder": [DECORD],
    }
    return videos, sampling.EpochSampler(1, 1, 1, 1, 0, 0)


def test_background_erasing_views_are_two_crops_of_one_segment_and_the_other_clip(tmp_path):
    """BE data/dataset.py:335-371: anchor and positive come from one segment (two augmentations),
    the negative from another segment of the same video."""
    cfg = build(PretrainConfig, presets.demo_pretrain(), {"method": "be", "data": {"frames_per_clip": 4}})
    videos, sampler = _one_video(tmp_path)
    shard = pipeline.PretrainShard(
        Location.parse(str(tmp_path / "m.parquet")), cfg.data, sampler, 0, 1, False, 0.5, True
    )
    for epoch in range(3):
        row = pipeline.clip_pair(videos, 0, epoch, shard)
        frames = {
            name: [round(float(row[name][:, t].mean()) / 4) for t in range(4)]
            for name in ("view_q", "view_k", "view_n")
        }
        assert frames["view_q"] == frames["view_k"] and frames["view_n"] != frames["view_q"], frames
        assert "mask" not in row
    plain = pipeline.PretrainShard(shard.manifest, cfg.data, sampler, 0, 1, True, 0.5)
    row = pipeline.clip_pair(videos, 0, 0, plain)
    assert "view_n" not in row and "mask" in row


def test_dclr_static_frames_are_one_raw_frame_of_each_clip_at_the_same_position(tmp_path):
    """DCLR dataset/ucf101_view.py:109-125: one index in [0, 32) of the raw frames of a 16-frame
    clip at stride 2, the same for both clips, each static frame cropped on its own. Here 4 frames
    at stride 2: index in [0, 8), odd raw frames (between the clip's own) included."""
    cfg = build(PretrainConfig, presets.demo_pretrain(), {"method": "dclr", "data": {"frames_per_clip": 4}})
    videos, sampler = _one_video(tmp_path)
    shard = pipeline.PretrainShard(
        Location.parse(str(tmp_path / "m.parquet")), cfg.data, sampler, 0, 1, False, statics=True
    )
    indices = set()
    for epoch in range(12):
        row = pipeline.clip_pair(videos, 0, epoch, shard)
        size = cfg.data.crop_size
        assert row["static_q"].shape == row["static_k"].shape == (3, size, size), row["static_q"].shape
        assert row["static_q"].dtype == np.uint8 and "mask" not in row
        frame = {name: round(float(row[name].mean()) / 4) for name in ("static_q", "static_k")}
        first = {name: round(float(row[name][:, 0].mean()) / 4) for name in ("view_q", "view_k")}
        index = frame["static_q"] - first["view_q"]
        assert frame["static_k"] - first["view_k"] == index and 0 <= index < 8, (frame, first)
        indices.add(index)
    assert any(index % 2 for index in indices), indices  # a raw frame the strided clip skips
    plain = pipeline.PretrainShard(shard.manifest, cfg.data, sampler, 0, 1, False)
    assert "static_q" not in pipeline.clip_pair(videos, 0, 0, plain)


def test_background_erasing_takes_the_run_s_moco_section():
    """BE's code uses T 0.07 and no shuffle-BN; fame-ray's 'be' follows the run's moco section
    (one recipe for every method), and the options reach the model."""
    from fame_ray.models.background_erasing import BackgroundErasingMoCo, background_erasing_for
    from fame_ray.pretrain import step

    cfg = build(
        PretrainConfig, presets.demo_pretrain(), {"method": "be", "moco": {"temperature": 0.07, "shuffle_bn": False}}
    )
    model, _ = step.build_training(cfg, torch.device("cpu"))
    assert isinstance(model, BackgroundErasingMoCo) and model.temperature == 0.07 and not model.shuffle_bn
    assert not model.symmetric
    default = background_erasing_for(PretrainConfig().model, PretrainConfig().moco)
    assert (default.temperature, default.shuffle_bn) == (0.1, True)


def _docs_table() -> list[list[str]]:
    """The rows of docs/recipe.md's "Protocol settings" table."""
    text = RECIPE.read_text()
    section = text.split("## Protocol settings", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines[2:]]


def test_the_protocol_table_in_docs_is_the_code_s():
    """Every setting of config.protocol, in order, with its official value, the default config's
    value and the option, as docs/recipe.md prints them."""
    rows = _docs_table()
    assert [row[0] for row in rows] == [setting.name for setting in protocol.SETTINGS]
    for row, setting in zip(rows, protocol.SETTINGS):
        name, official, default, option, _ = row
        assert official == setting.official, name
        assert default == setting.value(protocol.default_config(setting)), name
        assert option == setting.option, name


def test_every_row_of_the_table_has_a_test_that_exists():
    for row in _docs_table():
        cited = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", row[4])
        assert cited, f"{row[0]}: no test named"
        for path, name in cited:
            source = (ROOT / path).read_text()
            assert re.search(rf"^def {name}\(", source, re.M), f"{row[0]}: {path}::{name} does not exist"


def test_each_task_shows_its_settings():
    linear = [s.name for s in protocol.for_task("linear", presets.linear_probe())]
    assert "linear probe optimizer" in linear and "finetune optimizer" not in linear
    assert "retrieval" in [s.name for s in protocol.for_task("retrieval")]
    fame = [s.name for s in protocol.for_task("pretrain", PretrainConfig())]
    be = [s.name for s in protocol.for_task("pretrain", PretrainConfig(method="be"))]
    assert not set(protocol.BACKGROUND_ERASING) & set(fame) and set(protocol.BACKGROUND_ERASING) <= set(be)
