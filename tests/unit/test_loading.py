"""Loading pretrained backbones: the official FAME key layout (built here from our own
modules) with strict matching, fame-ray checkpoint and run directories, local and s3://."""

import functools
import io
import os
import re

import pytest
import torch
from torch import nn

from fame_ray import checkpoints as ckpt
from fame_ray.config import MoCoConfig, ModelConfig
from fame_ray.errors import UserError
from fame_ray.models import build_backbone
from fame_ray.models.loading import load_official_query_encoder, load_pretrained_backbone, resolve_weights
from fame_ray.models.moco import moco_for
from fame_ray.storage import Location


def official_checkpoint(arch: str, seed: int = 0) -> dict:
    """A fresh copy of the (cached) official checkpoint: tests may edit its dicts."""
    saved = _official_checkpoint(arch, seed)
    return {**saved, "state_dict": dict(saved["state_dict"])}


@functools.cache
def _official_checkpoint(arch: str, seed: int) -> dict:
    """What the official train.py saves: DDP-wrapped MoCo, head under fc (R(2+1)D) or id_head (I3D)."""
    torch.manual_seed(seed)
    backbone = build_backbone(arch)
    dim = backbone.feature_dim
    if arch == "i3d":
        head = {
            "id_head.2.weight": torch.randn(1024, 1024),
            "id_head.2.bias": torch.randn(1024),
            "id_head.4.weight": torch.randn(128, 1024),
            "id_head.4.bias": torch.randn(128),
        }
    else:
        head = {
            "fc.0.weight": torch.randn(dim, dim),
            "fc.0.bias": torch.randn(dim),
            "fc.2.weight": torch.randn(128, dim),
            "fc.2.bias": torch.randn(128),
        }
    encoder = {**{k: v + 0.5 if v.is_floating_point() else v for k, v in backbone.state_dict().items()}, **head}
    state = {f"module.encoder_q.{k}": v for k, v in encoder.items()}
    state.update({f"module.encoder_k.{k}": v.clone() for k, v in encoder.items()})
    state.update({"module.queue": torch.randn(128, 64), "module.queue_ptr": torch.zeros(1, dtype=torch.long)})
    return {"epoch": 200, "arch": arch, "state_dict": state, "optimizer": {}}


@pytest.mark.parametrize("arch", ["r2plus1d_18", "i3d"])
def test_official_layout_loads_strictly(arch):
    saved = official_checkpoint(arch)
    backbone, report = load_official_query_encoder(saved, arch)
    loaded = backbone.state_dict()
    for key, value in loaded.items():
        assert torch.equal(value, saved["state_dict"][f"module.encoder_q.{key}"]), key
    assert report["format"] == "official" and report["tensors"] == len(loaded)
    assert report["dropped"] == len(saved["state_dict"]) - len(loaded)


def test_official_without_ddp_prefix_and_without_wrapper():
    saved = official_checkpoint("r2plus1d_18")["state_dict"]
    bare = {k[len("module.") :]: v for k, v in saved.items()}
    backbone, _ = load_official_query_encoder(bare, "r2plus1d_18")
    assert torch.equal(backbone.stem[0].weight, saved["module.encoder_q.stem.0.weight"])


def test_wrong_arch_names_the_keys():
    saved = official_checkpoint("i3d")
    with pytest.raises(UserError) as error:
        load_official_query_encoder(saved, "r2plus1d_18")
    message = error.value.one_line()
    assert re.search(r"\d+ missing: layer1\.0\.conv1\.0\.0\.", message)
    assert re.search(r"\d+ unexpected: conv3d_1a_7x7\.", message)
    assert "more)" in message and "another architecture" in message


def test_shape_mismatch_is_reported():
    saved = official_checkpoint("r2plus1d_18")
    saved["state_dict"]["module.encoder_q.stem.0.weight"] = torch.randn(45, 3, 3, 7, 7)
    with pytest.raises(UserError, match=r"1 of another shape: stem.0.weight"):
        load_official_query_encoder(saved, "r2plus1d_18")


def test_old_checkpoint_without_num_batches_tracked_loads():
    saved = official_checkpoint("r2plus1d_18")
    state = {k: v for k, v in saved["state_dict"].items() if not k.endswith("num_batches_tracked")}
    _, report = load_official_query_encoder(state, "r2plus1d_18")
    assert report["filled_num_batches_tracked"] > 0


def test_official_file_on_disk(tmp_path):
    path = tmp_path / "checkpoint_0199.pth.tar"
    saved = official_checkpoint("r2plus1d_18", seed=1)
    torch.save(saved, path)
    backbone, report = load_pretrained_backbone(Location.parse(str(path)), "r2plus1d_18")
    assert torch.equal(
        backbone.layer4[1].conv2[1].running_mean, saved["state_dict"]["module.encoder_q.layer4.1.conv2.1.running_mean"]
    )
    assert report["source"] == str(path)
    with pytest.raises(UserError, match="another architecture"):
        load_pretrained_backbone(Location.parse(str(path)), "r3d_18")


def _write_checkpoint(directory, model: nn.Module, arch: str, step: int, complete: bool = True):
    state = {"model": model.state_dict(), "step": step, "epoch": 0}
    ckpt.write_local(str(directory), state, {"model": {"arch": arch}}, {"step": step})
    if not complete:
        os.remove(os.path.join(directory, ckpt.META_FILE))


def test_fame_ray_run_directory_resolves_to_latest_complete(tmp_path):
    torch.manual_seed(0)
    early, late = (
        moco_for(
            ModelConfig(arch="tiny", embed_dim=16, mlp_head=True),
            MoCoConfig(queue_size=32, momentum=0.99, temperature=0.1),
        ),
        moco_for(
            ModelConfig(arch="tiny", embed_dim=16, mlp_head=True),
            MoCoConfig(queue_size=32, momentum=0.99, temperature=0.1),
        ),
    )
    _write_checkpoint(tmp_path / ckpt.dir_name(5), early, "tiny", 5)
    _write_checkpoint(tmp_path / ckpt.dir_name(9), late, "tiny", 9, complete=False)
    assert resolve_weights(Location.parse(str(tmp_path)))[1].name == ckpt.dir_name(5)
    backbone, report = load_pretrained_backbone(Location.parse(str(tmp_path)), "tiny")
    assert report["step"] == 5 and report["format"] == "fame-ray"
    assert torch.equal(backbone.stem[0].weight, early.encoder_q.backbone.stem[0].weight)
    # An empty arch is taken from the checkpoint's config.
    _, report = load_pretrained_backbone(Location.parse(str(tmp_path / ckpt.dir_name(5))), "")
    assert report["arch"] == "tiny"


def test_fame_ray_checkpoint_of_another_arch_fails_early(tmp_path):
    _write_checkpoint(
        tmp_path / ckpt.dir_name(1),
        moco_for(
            ModelConfig(arch="tiny", embed_dim=16, mlp_head=True),
            MoCoConfig(queue_size=32, momentum=0.99, temperature=0.1),
        ),
        "tiny",
        1,
    )
    with pytest.raises(UserError, match="is a tiny model, not i3d"):
        load_pretrained_backbone(Location.parse(str(tmp_path)), "i3d")


def test_missing_or_empty_paths_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_pretrained_backbone(Location.parse(str(tmp_path / "nope.pth")), "tiny")
    with pytest.raises(UserError, match="no complete fame-ray checkpoint"):
        load_pretrained_backbone(Location.parse(str(tmp_path)), "tiny")


def test_official_file_on_s3(bucket, s3_server):
    # The official layout around the tiny backbone keeps the object small (moto is slow on 100 MB).
    buffer = io.BytesIO()
    saved = official_checkpoint("tiny", seed=2)
    torch.save(saved, buffer)
    uri = f"{bucket}/released/fame_tiny.pth.tar"
    Location.parse(uri, s3_server).write_bytes(buffer.getvalue())
    backbone, report = load_pretrained_backbone(Location.parse(uri, s3_server), "tiny")
    assert torch.equal(backbone.stem[0].weight, saved["state_dict"]["module.encoder_q.stem.0.weight"])
    assert report["source"] == uri and report["format"] == "official"


def _complete_tiny_checkpoint(directory) -> Location:
    _write_checkpoint(
        directory,
        moco_for(
            ModelConfig(arch="tiny", embed_dim=16, mlp_head=True),
            MoCoConfig(queue_size=32, momentum=0.99, temperature=0.1),
        ),
        "tiny",
        3,
    )
    return Location.parse(str(directory))


@pytest.mark.parametrize("meta", [None, b"", b'{"step": "three"}'], ids=["no meta.json", "empty", "text step"])
def test_a_checkpoint_folder_without_a_valid_meta_is_refused(tmp_path, meta):
    checkpoint = _complete_tiny_checkpoint(tmp_path / ckpt.dir_name(3))
    if meta is None:
        os.remove(tmp_path / ckpt.dir_name(3) / ckpt.META_FILE)
    else:
        (tmp_path / ckpt.dir_name(3) / ckpt.META_FILE).write_bytes(meta)
    with pytest.raises(UserError) as error:
        load_pretrained_backbone(checkpoint, "tiny")
    line = error.value.one_line()
    assert "incomplete checkpoint" in line and "run directory" in line and "\n" not in line


@pytest.mark.parametrize(
    "text",
    ["- a\n- b\n", "just text\n", "model: tiny\n", "model: {arch: [1]\n"],
    ids=["a list", "a string", "a section that is not a mapping", "broken YAML"],
)
def test_a_config_yaml_that_is_not_a_fame_ray_config_is_one_line(tmp_path, text):
    checkpoint = _complete_tiny_checkpoint(tmp_path / ckpt.dir_name(3))
    (tmp_path / ckpt.dir_name(3) / ckpt.CONFIG_FILE).write_text(text)
    with pytest.raises(UserError) as error:
        load_pretrained_backbone(checkpoint, "")
    assert "config.yaml" in error.value.one_line() and "\n" not in error.value.one_line()


NOT_STATE_DICTS = {
    "a tensor": torch.zeros(3),
    "a list": [1, 2],
    "no model": {"step": 3},
    "model is a list": {"model": [torch.zeros(1)], "step": 3},
    "integer keys": {"model": {1: torch.zeros(1)}, "step": 3},
    "non-tensor values": {"model": {"encoder_q.backbone.stem.0.weight": [0.0]}, "step": 3},
}


@pytest.mark.parametrize("saved", NOT_STATE_DICTS.values(), ids=NOT_STATE_DICTS.keys())
def test_a_state_pt_that_is_not_a_state_dict_is_one_line(tmp_path, saved):
    checkpoint = _complete_tiny_checkpoint(tmp_path / ckpt.dir_name(3))
    torch.save(saved, tmp_path / ckpt.dir_name(3) / ckpt.STATE_FILE)
    with pytest.raises(UserError) as error:
        load_pretrained_backbone(checkpoint, "tiny")
    assert "\n" not in error.value.one_line()


@pytest.mark.parametrize(
    "saved",
    [torch.zeros(3), {1: torch.zeros(1)}, {"module.encoder_q.stem.0.weight": "text"}],
    ids=["a tensor", "integer keys", "a string value"],
)
def test_an_official_file_that_is_not_a_state_dict_is_one_line(tmp_path, saved):
    path = tmp_path / "weights.pth"
    torch.save(saved, path)
    with pytest.raises(UserError) as error:
        load_pretrained_backbone(Location.parse(str(path)), "tiny")
    assert "\n" not in error.value.one_line()


class _Planted:
    """Unpickling this would create a folder: the safe loader must refuse it, never run it."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.mkdir, (self.target,)


def test_a_file_with_python_objects_is_refused_in_fame_rays_words(tmp_path):
    planted = tmp_path / "planted"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "extra": _Planted(str(planted))}, path)
    with pytest.raises(UserError) as error:
        load_pretrained_backbone(Location.parse(str(path)), "tiny")
    line = error.value.one_line()
    assert "tensors only" in line and "never unpickles" in line
    assert "weights_only" not in line and "False" not in line  # no advice to turn the safe loader off
    assert not planted.exists()


def test_resume_state_with_python_objects_is_refused_in_fame_rays_words(tmp_path):
    checkpoint = _complete_tiny_checkpoint(tmp_path / ckpt.dir_name(3))
    torch.save(
        {"model": {}, "extra": _Planted(str(tmp_path / "planted"))}, tmp_path / ckpt.dir_name(3) / ckpt.STATE_FILE
    )
    with pytest.raises(UserError, match="tensors only") as error:
        ckpt.load_state(checkpoint)
    assert "weights_only" not in error.value.one_line() and not (tmp_path / "planted").exists()


def test_every_torch_load_in_the_package_is_weights_only():
    import ast
    from pathlib import Path

    package = Path(ckpt.__file__).resolve().parent
    calls = []
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "torch"
            ):
                safe = any(
                    k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                    for k in node.keywords
                )
                calls.append((f"{path.name}:{node.lineno}", safe))
    assert calls and all(safe for _, safe in calls), calls
