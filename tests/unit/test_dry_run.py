"""`--dry-run`: the resolved config, the protocol and the plan, and nothing trains; and
`train.micro_batch: auto` on the official R(2+1)D finetune on a 24 GB node."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from fame_ray.commands import dry_run
from fame_ray.commands.finetune import downstream_config
from fame_ray.components.accumulation import micro_batches
from fame_ray.config import FinetuneConfig, build, presets
from fame_ray.downstream import classify, preflight
from fame_ray.models import memory
from fame_ray.models.backbones import build_backbone
from fame_ray.models.heads import build_classifier

REPO = Path(__file__).resolve().parents[2]
FAME_RAY = os.path.join(os.path.dirname(sys.executable), "fame-ray")
GB = memory.GB


def _listing(place: Path) -> list[str]:
    return sorted(str(path) for path in place.rglob("*"))


def test_finetune_linear_dry_run_shows_the_official_probe_and_trains_nothing(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "FAME_RAY_DEBUG")}
    env.update({"PYTHONPATH": str(REPO), "FAME_RAY_DATA": str(tmp_path / "data"), "HOME": str(tmp_path)})
    before = _listing(tmp_path)
    done = subprocess.run(
        [FAME_RAY, "finetune", "--mode", "linear", "--dry-run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "# fame-ray finetune --mode linear: dry run, nothing trains" in out and "preset: linear" in out
    for row in (
        "| linear probe optimizer | SGD lr 30, momentum 0.9, weight decay 0, the same lr at any batch |",
        "| linear probe schedule | 100 epochs, lr / 10 at epochs 60, 80 |",
        "| linear probe batch | 256 clips |",
        "| linear probe backbone | frozen, in eval mode (I3D too) |",
        "| linear probe inputs | unnormalised in training, as the official |",
        "| training videos and choice | train on the training split minus a validation split",
    ):
        assert row in out, row
    assert "| micro batch |" in out and "| memory | ~" in out and "| CPUs per trial |" in out
    assert "pretrained weights: a run would stop here: no pretrained weights given" in out
    assert "starting a local Ray" not in done.stderr and "local Ray" not in out
    assert _listing(tmp_path) == before  # nothing written: no run, no dataset, no manifests


def _official_r21d(path: Path) -> str:
    """An official-layout FAME .pth of R(2+1)D-18 with random weights (module.encoder_q.*, head under fc)."""
    torch.manual_seed(0)
    backbone = build_backbone("r2plus1d_18")
    head = {"fc.0.weight": torch.randn(512, 512), "fc.0.bias": torch.zeros(512), "fc.2.weight": torch.randn(128, 512)}
    head["fc.2.bias"] = torch.zeros(128)
    state = {f"module.encoder_q.{k}": v for k, v in {**backbone.state_dict(), **head}.items()}
    torch.save({"epoch": 200, "arch": "r2plus1d_18", "state_dict": state}, path)
    return str(path)


def test_the_official_r21d_finetune_fits_a_24_gb_node_with_no_flag(tmp_path, caplog):
    """fame-ray finetune --pretrained official_r21d.pth --arch r2plus1d_18 on the recipe (batch
    128 at 16x112x112): refused before at 24 GB ("set train.micro_batch=16"); now accepted, one
    log line with the micro batch and the estimate."""
    flags = {
        "data": {"dataset": "ucf101", "data_root": str(tmp_path / "UCF101")},
        "model": {"arch": "r2plus1d_18"},
        "pretrained": _official_r21d(tmp_path / "official_r21d.pth"),
        "storage": {"path": str(tmp_path / "runs")},
    }
    cfg, arch = downstream_config(flags, "ucf101", "r2plus1d_18", None, None, None)
    assert cfg.train.micro_batch == "auto" and cfg.train.global_batch == 128
    where = dry_run.Machine("a 24 GB node", 16.0, 0.0, [24 * GB])
    with caplog.at_level("INFO"):
        text = dry_run.finetune(cfg, arch, where)
    assert "- memory: ok" in text and "- pretrained weights: ok" in text and "- architecture: ok" in text
    lines = [r.getMessage() for r in caplog.records if "train.micro_batch auto" in r.getMessage()]
    assert len(lines) == 1 and "clips at a time (per-worker batch 128)" in lines[0], lines
    micro = preflight.micro_batch_for(cfg, 101, [24 * GB]).train.micro_batch
    assert 0 < micro < 128 and 128 % micro == 0 and f"| micro batch | {micro} (train.micro_batch: auto) |" in text


def _probe_step(micro_batch: int):
    """One linear-probe step of the tiny backbone on 8 clips (frozen backbone in eval mode: the
    step cannot depend on how the batch is cut)."""
    torch.manual_seed(0)
    model = build_classifier(build_backbone("tiny"), 4, "linear", 0.0, "tiny")
    optimizer = classify.build_optimizer(model, 30.0, 0.0, 0.9)
    clips = torch.rand(8, 3, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    loss, correct = classify.train_step(model, optimizer, clips, labels, micro_batch)
    return loss, model.fc.weight.grad.clone(), model.fc.weight.detach().clone()


def test_auto_gives_the_step_of_an_explicit_micro_batch():
    """On a node that fits 2 of 8 clips at a time, 'auto' resolves to 2 (not a whole batch), and
    the step equals the explicit micro batch's and the whole batch's (same loss, gradients, weights)."""
    cfg = build(
        FinetuneConfig,
        presets.demo_linear_probe(),
        {"pretrained": "x", "data": {"frames_per_clip": 4, "crop_size": 16}, "train": {"global_batch": 8}},
    )
    workload = preflight.workload(cfg, 4)
    node = workload.need(8, 2) + (workload.need(8, 4) - workload.need(8, 2)) / 2
    resolved = preflight.micro_batch_for(cfg, 4, [node]).train.micro_batch
    assert resolved == 2 and len(micro_batches(8, resolved)) == 4
    auto, explicit, whole = _probe_step(resolved), _probe_step(2), _probe_step(0)
    for got, want in zip(auto, explicit):
        assert torch.equal(got, want)
    for got, want in zip(auto, whole):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_pretrain_and_retrieve_dry_runs_show_their_settings_and_plan(tmp_path):
    from fame_ray.config import PretrainConfig

    where = dry_run.Machine("a test node", 8.0, 0.0, [16 * GB])
    cfg = build(
        PretrainConfig,
        presets.demo_pretrain(),
        {
            "method": "be",
            "data": {"data_root": str(tmp_path / "synthetic")},
            "train": {"num_workers": 4, "min_workers": 2},
        },
    )
    text = dry_run.pretrain(cfg, where)
    assert "| Background Erasing views | as released" in text and "| resize kernel | bilinear, no antialiasing" in text
    assert "| workers | 2-4 |" in text and "| on 3 worker(s) | 10 clips per worker (global 30)" in text
    assert "| micro batch | the whole per-worker batch (train.micro_batch: auto) |" in text
    assert "train manifest: not prepared yet" in text and not (tmp_path / "synthetic").exists()
    fame = dry_run.pretrain(build(PretrainConfig, cfg, {"method": "fame"}), where)
    assert "Background Erasing" not in fame
    retrieval = dry_run.retrieve(build(FinetuneConfig, presets.recipe_finetune(), {"pretrained": ""}), None, where)
    assert "| retrieval | as the official |" in retrieval and "| encoder actors | 1 |" in retrieval
