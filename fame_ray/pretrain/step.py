"""One MoCo + FAME training step, and what it needs: model, optimizer, lr, generators.

Plain PyTorch; no Ray here (the worker loop in fame_ray.pretrain.worker calls it). The batch
holds uint8 B,C,T,H,W clips from the Ray Data pipeline: "view_q" (FAME-fused when FAME is
on) and "view_k" (plain). On the device: augmentation per clip (fame_ray.pretrain.augment),
bf16 autocast and channels-last 3D on GPU, symmetric MoCo loss, one SGD step.
"""

from __future__ import annotations

import torch
from torch import nn

from fame_ray.config import PretrainConfig
from fame_ray.models.moco import MoCo, moco_for
from fame_ray.pretrain import augment


def new_generators(seed: int, rank: int, device: torch.device) -> dict[str, torch.Generator]:
    """Explicit generators: 'augment' (on the device, per rank), 'shuffle' (CPU, shuffle-BN order)."""
    return {
        "augment": augment.make_generator(seed * 1000 + rank, device),
        "shuffle": augment.make_generator(seed * 1000 + 997, "cpu"),
    }


def build_training(cfg: PretrainConfig, device: torch.device, generators: dict) -> tuple[MoCo, torch.optim.Optimizer]:
    """MoCo on `device` (channels-last 3D and torch.compile where configured) and its SGD."""
    moco = moco_for(
        cfg.model.arch, cfg.model.embed_dim, cfg.moco.queue_size, cfg.moco.momentum, cfg.moco.temperature,
        cfg.model.use_mlp_head, cfg.moco.symmetric, cfg.moco.shuffle_bn, generators["shuffle"],
    ).to(device)
    if device.type == "cuda" and cfg.train.channels_last:
        moco = moco.to(memory_format=torch.channels_last_3d)
    if cfg.train.compile:
        # nn.Module.compile keeps the state_dict keys (no `_orig_mod.` prefix).
        moco.encoder_q.compile()
        moco.encoder_k.compile()
    params = [p for p in moco.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=cfg.optim.lr, momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay)
    return moco, optimizer


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DDP (its state_dict has no `module.` prefix)."""
    return getattr(model, "module", model)


def _views(batch: dict, generator: torch.Generator, cfg: PretrainConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 B,C,T,H,W views -> augmented, normalised float on the device."""
    views = []
    for key in ("view_q", "view_k"):
        clips = augment.augment(batch[key].to(device, non_blocking=True), generator)
        if device.type == "cuda" and cfg.train.channels_last:
            clips = clips.contiguous(memory_format=torch.channels_last_3d)
        views.append(clips)
    return views[0], views[1]


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: dict, lr: float, generators: dict,
               cfg: PretrainConfig, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step on one batch; returns (loss, acc@1) as 0-dim tensors on the device (no sync)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    view_q, view_k = _views(batch, generators["augment"], cfg, device)
    use_bf16 = device.type == "cuda" and cfg.train.amp
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
        output = model(view_q, view_k)
    optimizer.zero_grad(set_to_none=True)
    output.loss.backward()
    optimizer.step()
    return output.loss.detach(), output.acc1.detach()
