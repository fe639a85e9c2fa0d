"""One pretraining step, and what it needs: model, optimizer, per-step generators, query views.

Plain PyTorch; no Ray here (the worker loop in fame_ray.pretrain.worker calls it). The batch
holds one per-worker batch of uint8 B,C,T,H,W clips from the Ray Data pipeline: "view_q",
"view_k", for FAME the query clips' masks "mask" (B,H,W), and for Background Erasing "view_n"
(pipeline.clip_pair says what each view is). On the device:
- the method's query view: FAME merges each query clip's foreground with the background of
  another clip of this full batch (a random permutation); 'moco_be_mix' mixes a static frame of
  the clip into every frame (BE's augmentation); plain MoCo leaves it; the key view is never
  touched;
- augmentation per clip (fame_ray.components.augment) of the views, then normalisation;
- bf16 autocast and channels-last 3D on GPU, the symmetric MoCo loss, one SGD step;
- Background Erasing as released ('be', fame_ray.models.background_erasing): the anchor (view_q)
  gets the static-frame mixing after its colour augmentation (BE mixes its augmented,
  normalised clips; the mix commutes with the normalisation), view_k is the positive, view_n the
  intra-video negative through the query encoder, BE's one-way loss;
- with `train.micro_batch`, gradient accumulation: the key encoder's momentum update, the keys
  and the enqueue happen once for the full batch (`MoCo.prepare_keys`), the query side runs a
  micro batch at a time and its gradients add up (`fame_ray.components.accumulation`). Shuffle-BN
  and BatchNorm then see micro batches, like a smaller per-GPU batch.

Every random draw of a step comes from generators seeded by (seed, step, rank): a run is
reproducible from its seed, and a resumed run draws exactly what it would have drawn.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from fame_ray.components import augment
from fame_ray.components.accumulation import micro_steps
from fame_ray.config import PretrainConfig
from fame_ray.data.clips import fame
from fame_ray.models.background_erasing import background_erasing_for
from fame_ray.models.dclr import dclr_for
from fame_ray.models.moco import moco_for


def step_generators(seed: int, step: int, rank: int, device: torch.device) -> dict[str, torch.Generator]:
    """The generators of one step: 'augment' and 'query' on the device (per rank), 'order'
    (CPU, per rank: the jitter's order of operations) and 'shuffle' (CPU, the same on every
    rank: shuffle-BN's order, drawn on rank 0 and broadcast)."""
    return {
        "augment": augment.make_generator([seed, step, rank, 1], device),
        "query": augment.make_generator([seed, step, rank, 2], device),
        "order": augment.make_generator([seed, step, rank, 3], "cpu"),
        "shuffle": augment.make_generator([seed, step, 4], "cpu"),
    }


def build_model(cfg: PretrainConfig) -> nn.Module:
    """The method's model around a fresh backbone: MoCo (fame, moco, moco_be_mix), Background
    Erasing's MoCo (be) or DCLR."""
    generator = augment.make_generator([cfg.train.seed, 4])
    if cfg.method == "dclr":
        return dclr_for(cfg.model.arch, cfg.model.embed_dim, **dataclasses.asdict(cfg.dclr), generator=generator)
    if cfg.method == "be":
        return background_erasing_for(cfg.model, cfg.moco, generator)
    return moco_for(cfg.model, cfg.moco, generator)


def build_training(cfg: PretrainConfig, device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The model on `device` (channels-last 3D and torch.compile where configured) and its SGD."""
    model = build_model(cfg).to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed clip shapes: pick the fastest 3D conv kernels once
    if device.type == "cuda" and cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    if cfg.train.compile:
        # nn.Module.compile keeps the state_dict keys (no `_orig_mod.` prefix).
        model.encoder_q.compile()
        model.encoder_k.compile()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        params, lr=cfg.optim.lr, momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay
    )
    return model, optimizer


def warmup_steps(cfg: PretrainConfig) -> int:
    """Initial steps that take no optimizer step (DCLR fills its queues first; others: none)."""
    return cfg.dclr.warmup_steps if cfg.method == "dclr" else 0


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DDP (its state_dict has no `module.` prefix)."""
    return getattr(model, "module", model)


def data_masks(cfg: PretrainConfig) -> bool:
    """Do the decode tasks compute each query clip's FAME mask (method 'fame', fame.mask_on 'data')?"""
    return cfg.method == "fame" and cfg.fame.mask_on == "data"


def query_clips(batch: dict, cfg: PretrainConfig, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """The method's query view as float B,C,T,H,W in [0, 1] on the device (not yet augmented)."""
    clips = batch["view_q"].to(device, non_blocking=True)
    if cfg.method == "fame":
        permutation = torch.randperm(clips.shape[0], generator=generator, device=generator.device).to(device)
        if "mask" in batch:  # fame.mask_on 'data': computed by the decode tasks
            mask = batch["mask"].to(device, non_blocking=True)
        else:  # 'trainer': here, over the whole batch on the device
            mask = fame.batch_masks(clips, cfg.fame.beta, generator)
        clips = fame.merge(clips, mask, permutation)
    clips = augment.to_float(clips)
    if cfg.method == "moco_be_mix":
        clips = augment.background_erasing(clips, cfg.be.alpha, generator)
    return clips


def _background_erasing_views(batch: dict, cfg: PretrainConfig, generators: dict, device: torch.device) -> list:
    """BE's anchor, positive and negative, augmented; the anchor mixed with a static frame."""
    coloured = [
        augment.colour(
            augment.to_float(batch[name].to(device, non_blocking=True)),
            generators["augment"],
            augment.PRETRAIN,
            generators["order"],
        )
        for name in ("view_q", "view_k", "view_n")
    ]
    coloured[0] = augment.background_erasing(coloured[0], cfg.be.alpha, generators["query"])
    return [augment.normalize(clips) for clips in coloured]


def _augmented(clips: torch.Tensor, generators: dict, mean, std) -> torch.Tensor:
    """float B,C,T,H,W in [0, 1] -> the pretraining augmentation drawn per clip, normalised."""
    return augment.normalize(
        augment.colour(clips, generators["augment"], augment.PRETRAIN, generators["order"]), mean, std
    )


def views(batch: dict, cfg: PretrainConfig, generators: dict, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The model's inputs, augmented and normalised float B,C,T,H,W on the device: (query, key)
    for MoCo; (anchor, positive, intra-video negative) for Background Erasing; for DCLR (rgb_q,
    rgb_k, static_q, static_k), each augmented on its own with the ImageNet statistics of the
    official DCLR code, the static frames repeated over time."""
    with torch.autocast(device_type=device.type, enabled=False):
        key = augment.to_float(batch["view_k"].to(device, non_blocking=True))
        raw = []
        if cfg.method == "be":
            out = _background_erasing_views(batch, cfg, generators, device)
        elif cfg.method == "dclr":
            frames = key.shape[2]
            statics = [augment.to_float(batch[name].to(device, non_blocking=True)) for name in ("static_q", "static_k")]
            raw = [augment.to_float(batch["view_q"].to(device, non_blocking=True)), key]
            raw += [frame.unsqueeze(2).expand(-1, -1, frames, -1, -1).contiguous() for frame in statics]
            mean, std = augment.IMAGENET_MEAN, augment.IMAGENET_STD
        else:
            raw, mean, std = (
                [query_clips(batch, cfg, generators["query"], device), key],
                augment.KINETICS_MEAN,
                augment.KINETICS_STD,
            )
        if raw:
            out = [_augmented(clips, generators, mean, std) for clips in raw]
    if device.type == "cuda" and cfg.train.channels_last:
        out = [clips.contiguous(memory_format=torch.channels_last_3d) for clips in out]
    return tuple(out)


def accumulate(
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    shuffle_generator: torch.Generator,
    micro_batch: int,
    use_bf16: bool = False,
    learn: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of the method's loss over the whole batch (`inputs`: the B,C,T,H,W views of
    `views`), `micro_batch` clips at a time (0 = all at once), added to the parameters' .grad;
    returns (loss, acc@1) of the batch as 0-dim tensors. Keys, momentum update and enqueue happen
    once, for all clips. With `learn` off (DCLR's queue warm-up) nothing is differentiated: the
    queues and BatchNorm statistics move as in a real step, the parameters do not.

    The loss returned is what has a gradient: for DCLR, its contrastive terms without the
    activation-map term (which has none, docs/dclr.md)."""
    device_type = inputs[0].device.type
    with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=use_bf16):
        keys = unwrap(model).prepare_keys(*inputs, shuffle_generator, micro_batch)
    loss = acc1 = torch.zeros((), device=inputs[0].device)
    for rows, share in micro_steps(model, inputs[0].shape[0], micro_batch):
        with (
            torch.set_grad_enabled(learn),
            torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=use_bf16),
        ):
            output = model(*(view[rows] for view in inputs), keys=keys.rows(rows))
        if learn:
            (output.loss * share).backward()
        shown = output.terms["contrastive"] if hasattr(output, "terms") else output.loss
        loss = loss + shown.detach() * share
        acc1 = acc1 + output.acc1.detach() * share
    return loss, acc1


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: dict,
    lr: float,
    generators: dict,
    cfg: PretrainConfig,
    device: torch.device,
    learn: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step on one per-worker batch (in micro batches of `train.micro_batch` clips, a
    number: the run plan resolves 'auto', `RunPlan.worker_config`); returns (loss, acc1) as 0-dim
    tensors on the device (no sync). `learn` off: a warm-up step (keys and queues only, no
    optimizer step)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    if cfg.train.micro_batch == "auto":
        raise ValueError("train.micro_batch 'auto' reaches the step unresolved: run the config the plan resolves")
    inputs = views(batch, cfg, generators, device)
    use_bf16 = device.type == "cuda" and cfg.train.amp
    optimizer.zero_grad(set_to_none=True)
    loss, acc1 = accumulate(model, inputs, generators["shuffle"], cfg.train.micro_batch, use_bf16, learn)
    if learn:
        optimizer.step()
    return loss, acc1
