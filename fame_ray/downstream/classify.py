"""The Ray Train worker of a downstream run: finetune or linear-probe a pretrained encoder,
validating with multi-clip testing after every epoch. Plain PyTorch inside; Ray lines marked.

Official protocol (docs/recipe.md, "Finetuning and linear probing"): SGD with momentum and weight
decay, lr / 10 at each milestone epoch, dropout before the classifier; finetuning clips get the
official on-device augmentation (grayscale p=0.2, colour jitter (0.4, 0.4, 0.4, 0.1) p=0.8, then
the Kinetics normalisation); the linear probe trains on plain clips with the backbone frozen and
in eval mode, unnormalised as the official eval.py feeds them (`probe_inputs`).

Every epoch tests the validation split ('val': held out of the training split, what ASHA and the
choice of the best trial read); the test split ('test') is tested at epoch 0, every
`test_every` epochs and at the last epoch, as the official eval.py, and the best of those tests
is carried along (the paper's number). Multi-clip testing: data.eval_clips clips per video, the
video score as `video_score` says (eval.metrics). Without a validation split (val_fraction 0)
'val' is the test split itself, as in the paper's protocol.
With `train.micro_batch` each per-worker batch is taken that many clips at a time, gradients
accumulated over them, one optimizer step per batch (fame_ray.components.accumulation).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile

import numpy as np
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch import nn

from fame_ray.components import augment, schedule
from fame_ray.components.accumulation import micro_steps
from fame_ray.config import FinetuneConfig
from fame_ray.downstream import preflight
from fame_ray.downstream.search_space import Hyperparameters
from fame_ray.eval.metrics import multi_clip_metrics
from fame_ray.models.heads import build_classifier, trainable_parameters

log = logging.getLogger(__name__)
STATE_FILE = "finetune_state.pt"


def epoch_lrs(cfg: FinetuneConfig, trial: Hyperparameters, effective_batch: int):
    """The lr of every epoch of a trial: its lr scaled to the effective batch (`optim.base_batch`),
    then the schedule's factor per epoch (official: / 10 at epochs 60 and 120)."""
    optim = dataclasses.replace(cfg.optim, lr=trial.lr)
    return schedule.peak_lr(optim, effective_batch) * schedule.epoch_factors(optim, trial.epochs)


def on_device(model: nn.Module, cfg: FinetuneConfig, device: torch.device) -> nn.Module:
    """The model on its device (channels-last 3D on GPU where configured)."""
    model = model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed clip shapes: pick the fastest 3D conv kernels once
    if device.type == "cuda" and cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    return model


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    """SGD over the parameters that learn (only the classifier for the linear probe)."""
    return torch.optim.SGD(trainable_parameters(model), lr=lr, momentum=momentum, weight_decay=weight_decay)


def restore(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict | None) -> int:
    """Load a saved epoch into a model that is ALREADY on its device: the optimizer's momentum
    buffers then follow the parameters there (loaded before the move, they stayed on the CPU
    and the first GPU step failed). Returns the first epoch to run."""
    if state is None:
        return 0
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    log.info("resumed from epoch %d", state["epoch"])
    return state["epoch"] + 1


def _saved_state() -> dict | None:
    checkpoint = ray.train.get_checkpoint()  # Ray: set after a worker-group restart
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        return torch.load(os.path.join(directory, STATE_FILE), map_location="cpu", weights_only=True)


def training_inputs(
    clips: torch.Tensor, cfg: FinetuneConfig, device: torch.device, generator: torch.Generator, order: torch.Generator
) -> torch.Tensor:
    """uint8 clips -> what the model trains on: augmented and normalised (finetune), or plain
    (linear probe): unnormalised in [0, 1] as the official eval.py trains its probe
    (`probe_inputs: official`), or normalised as at test time (`normalised`)."""
    if cfg.mode == "finetune":
        clips = augment.augment(clips.to(device, non_blocking=True), generator, augment.FINETUNE, order_generator=order)
    elif cfg.probe_inputs == "official":
        clips = augment.to_float(clips.to(device, non_blocking=True))
    else:
        clips = augment.to_input(clips, device)
    return (
        clips.contiguous(memory_format=torch.channels_last_3d)
        if device.type == "cuda" and cfg.train.channels_last
        else clips
    )


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    clips: torch.Tensor,
    labels: torch.Tensor,
    micro_batch: int,
    use_bf16: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step on a per-worker batch (B,C,T,H,W clips, B labels), `micro_batch` clips at a
    time with accumulated gradients (0 = all at once); returns (summed loss, correct clips) as
    0-dim tensors, without a host sync."""
    optimizer.zero_grad(set_to_none=True)
    loss_sum = correct = torch.zeros((), device=clips.device)
    for rows, share in micro_steps(model, len(labels), micro_batch):
        with torch.autocast(device_type=clips.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            logits = model(clips[rows])
            loss = nn.functional.cross_entropy(logits.float(), labels[rows])
        (loss * share).backward()
        loss_sum = loss_sum + loss.detach() * (rows.stop - rows.start)
        correct = correct + (logits.detach().argmax(1) == labels[rows]).sum()
    optimizer.step()
    return loss_sum, correct


def train_epoch(model, optimizer, batches, cfg: FinetuneConfig, device, seed: list[int]) -> dict:
    """One pass over the training shard; returns mean loss and clip accuracy."""
    model.train()
    losses, hits, seen = [], [], 0
    use_bf16 = device.type == "cuda" and cfg.train.amp
    for index, batch in enumerate(batches):
        generator = augment.make_generator([*seed, index], device)
        clips = training_inputs(batch["clip"], cfg, device, generator, augment.make_generator([*seed, index, 1]))
        labels = batch["label"].to(device).long()
        loss_sum, correct = train_step(model, optimizer, clips, labels, cfg.train.micro_batch, use_bf16)
        losses.append(loss_sum)
        hits.append(correct)
        seen += len(labels)
    loss_sum = float(torch.stack(losses).sum()) if losses else 0.0  # one sync per epoch
    correct = int(torch.stack(hits).sum()) if hits else 0
    return {"train_loss": loss_sum / max(seen, 1), "train_clip_top1": correct / max(seen, 1), "train_clips": seen}


@torch.no_grad()
def predict(model, batches, cfg: FinetuneConfig, device) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits `N K`, labels `N`, video_index `N` of every clip in an evaluation shard."""
    model.eval()
    use_bf16 = device.type == "cuda" and cfg.train.amp
    logits, labels, videos = [], [], []
    for batch in batches:
        clips = augment.to_input(batch["clip"], device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
            logits.append(model(clips).float().cpu().numpy())
        labels.append(batch["label"].cpu().numpy())
        videos.append(batch["video_index"].cpu().numpy())
    if not logits:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(logits), np.concatenate(labels), np.concatenate(videos)


def gather(parts: tuple) -> tuple:
    """Concatenate every worker's (logits, labels, video_index) on every worker."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return parts
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, parts)
    everyone = [p for p in everyone if len(p[1])]
    if not everyone:
        return parts
    return tuple(np.concatenate([p[i] for p in everyone]) for i in range(3))


def validate(model, batches, cfg: FinetuneConfig, device, prefix: str = "val") -> dict:
    """Multi-clip testing over a whole split (all workers' shards together), metrics named
    `<prefix>_<metric>`."""
    logits, labels, videos = gather(predict(model, batches, cfg, device))
    if not len(labels):
        logits = np.zeros((0, 1))
    metrics = multi_clip_metrics(logits, labels, videos, rule=cfg.video_score, arch=cfg.model.arch)
    return {f"{prefix}_{k}": v for k, v in metrics.items()}


def is_test_epoch(epoch: int, epochs: int, every: int) -> bool:
    """Whether the test split is tested after `epoch` (0-based) of `epochs`: the official
    eval.py tests when epoch % 10 == 0 and at the last epoch."""
    return epoch % every == 0 or epoch == epochs - 1


def track_test(tests: dict, epoch: int, metrics: dict) -> dict:
    """The test record carried through a trial, updated with one test (`metrics`: test_*):
    the latest test ("latest", its epoch) and the best by video top-1 ("best", its epoch), as
    the official eval.py keeps `best_acc1` (a later epoch wins only when strictly better)."""
    # Plain numbers: the record is saved in the epoch's checkpoint (torch.load weights_only).
    metrics = {k: v if isinstance(v, int) else float(v) for k, v in metrics.items()}
    out = {"latest": {**metrics, "test_epoch": epoch}, "best": tests.get("best")}
    best = out["best"]
    if best is None or metrics["test_video_top1"] > best["test_video_top1"]:
        out["best"] = {**metrics, "test_epoch": epoch}
    return out


def test_metrics(tests: dict) -> dict:
    """What every epoch reports of the test record: test_* of the latest test and test_best_*
    of the best one (empty before the first test)."""
    if not tests.get("latest"):
        return {}
    best = {f"test_best_{k.removeprefix('test_')}": v for k, v in tests["best"].items()}
    return {**tests["latest"], **best}


def build_model(cfg: FinetuneConfig, num_classes: int, dropout: float) -> nn.Module:
    """The pretrained query encoder + a new classifier (frozen backbone for the linear probe),
    initialised as the official code does for the backbone (models.heads)."""
    backbone, _ = preflight.load_backbone(cfg.pretrained_location(), cfg.model.arch)
    return build_classifier(backbone, num_classes, cfg.mode, dropout, cfg.model.arch)


def _report(metrics: dict, model, optimizer, epoch: int, rank: int, tests: dict) -> None:
    """Every worker reports each epoch; rank 0 attaches the checkpoint (with the test record)."""
    with tempfile.TemporaryDirectory() as directory:
        checkpoint = None
        if rank == 0:
            torch.save(
                {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch, "tests": tests},
                os.path.join(directory, STATE_FILE),
            )
            checkpoint = ray.train.Checkpoint.from_directory(directory)
        ray.train.report(metrics, checkpoint=checkpoint)  # Ray: to Tune via TuneReportCallback


def _evaluate(plain, shards: dict, cfg: FinetuneConfig, device, epoch: int, epochs: int, tests: dict, batch: int):
    """The epoch's validation metrics, and the test record after this epoch's test (if any).
    Without a test shard (no validation split: 'val' is the test split) the test is the validation."""
    metrics = validate(plain, shards["val"].iter_torch_batches(batch_size=batch), cfg, device)
    if is_test_epoch(epoch, epochs, cfg.test_every):
        if shards.get("test") is not None:
            tested = validate(plain, shards["test"].iter_torch_batches(batch_size=batch), cfg, device, "test")
        else:
            tested = {f"test_{k.removeprefix('val_')}": v for k, v in metrics.items()}
        tests = track_test(tests, epoch, tested)
    return metrics, tests


def train_loop_per_worker(loop_config: dict) -> None:
    """Ray Train worker: {"config": FinetuneConfig, "trial": Hyperparameters, "num_classes": int}."""
    cfg: FinetuneConfig = loop_config["config"]
    trial: Hyperparameters = loop_config["trial"]
    torch.manual_seed(cfg.train.seed)
    device = ray.train.torch.get_device()  # Ray: the worker's device
    context = ray.train.get_context()
    model = on_device(build_model(cfg, loop_config["num_classes"], trial.dropout), cfg, device)
    optimizer = build_optimizer(model, trial.lr, trial.weight_decay, cfg.optim.momentum)
    state = _saved_state()
    start = restore(model, optimizer, state)
    tests = (state or {}).get("tests") or {}
    model = ray.train.torch.prepare_model(model, move_to_device=False)  # Ray: DDP across the trial's workers
    plain = model.module if hasattr(model, "module") else model
    batch, effective_batch = cfg.train.split_batch(context.get_world_size())
    lrs = epoch_lrs(cfg, trial, effective_batch)
    shards = {name: ray.train.get_dataset_shard(name) for name in ("train", "val")}  # Ray
    shards["test"] = ray.train.get_dataset_shard("test") if loop_config.get("held_out") else None  # Ray
    # Testing takes micro batches too: its batch size changes nothing but memory.
    eval_batch = cfg.train.micro_batch or batch
    for epoch in range(start, trial.epochs):
        lr = float(lrs[epoch])
        for group in optimizer.param_groups:
            group["lr"] = lr
        seed = [cfg.train.seed, epoch, context.get_world_rank()]
        metrics = train_epoch(
            model, optimizer, shards["train"].iter_torch_batches(batch_size=batch, drop_last=False), cfg, device, seed
        )
        validation, tests = _evaluate(plain, shards, cfg, device, epoch, trial.epochs, tests, eval_batch)
        metrics.update({**validation, **test_metrics(tests)})
        metrics.update({"epoch": epoch, "lr": lr, "world_size": context.get_world_size()})
        _report(metrics, plain, optimizer, epoch, context.get_world_rank(), tests)
