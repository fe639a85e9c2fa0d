"""Gradient accumulation: one optimizer step over a per-worker batch taken in micro batches.

    optimizer.zero_grad(set_to_none=True)
    for rows, share in micro_steps(model, len(clips), cfg.train.micro_batch):
        (loss_of(model(clips[rows])) * share).backward()
    optimizer.step()

Each chunk's mean loss is scaled by its share of the batch, so the summed gradients are those
of the whole batch's mean loss: the global batch and the learning rate of the protocol stay as
they are, while activation memory follows the micro batch. Under DDP every chunk but the last
runs inside `no_sync()` (forward and backward), so gradients are all-reduced once per step.
Plain PyTorch, used by pretraining (`fame_ray.pretrain.step`) and finetuning
(`fame_ray.downstream.classify`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext

from torch import nn


def micro_batches(size: int, micro_batch: int) -> list[slice]:
    """Row slices of the chunks a batch of `size` clips is split into: `micro_batch` clips each
    (the last may be smaller), or one chunk when micro_batch is 0 or at least `size`."""
    step = micro_batch if 0 < micro_batch < size else max(size, 1)
    return [slice(start, min(start + step, size)) for start in range(0, size, step)]


def micro_steps(model: nn.Module, size: int, micro_batch: int) -> Iterator[tuple[slice, float]]:
    """(rows, share of the batch) per chunk; the caller's forward and backward of a chunk run
    inside DDP's `no_sync()` for all but the last chunk (a no-op without DDP)."""
    chunks = micro_batches(size, micro_batch)
    for index, rows in enumerate(chunks):
        last = index == len(chunks) - 1
        with nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync():
            yield rows, (rows.stop - rows.start) / size
