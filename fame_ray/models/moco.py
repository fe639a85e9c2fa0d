"""MoCo v2 as the official FAME code builds it (He et al. arXiv 1911.05722; Chen et al.
arXiv 2003.04297; FAME: Ding et al. arXiv 2109.15130, official `moco/builder.py`).

- `encoder_q` = backbone + projection head (MLP fc-ReLU-fc, or one linear layer), output
  `dim` (128), L2-normalised. `encoder_k` is its momentum copy (m = 0.999), never trained
  by gradients.
- A queue of `queue_size` negatives (buffer `queue`, dim x K, and `queue_ptr`), fed with
  the keys of ALL workers (all_gather) when a process group is initialised.
- Shuffle-BN: the key batch is shuffled across workers before the key encoder (all_gather +
  a permutation broadcast from rank 0) and unshuffled after, so BatchNorm statistics cannot
  leak which key is the positive. On one worker (no process group) the batch is shuffled
  locally, which is what shuffle-BN reduces to.
- Symmetric step (docs/recipe.md): loss = 0.5 * (L(q=fused, k=plain) + L(q=plain, k=fused)); the
  momentum update runs once per step (first pass); both passes enqueue their keys, so
  2 x global batch keys enter the queue per step. As the official code, the first pass
  enqueues its keys before the second pass computes its logits (`enqueue_between_passes`),
  and acc@1 is computed on the average of the two passes' logits. That order is a quirk: the
  second pass's query is the plain clip, and the queue then holds that very clip's key from
  the first pass, a near-copy of the query that outscores the true positive once the key
  encoder has caught up; with the queues of a short run (a few hundred keys) it drags acc@1
  down to chance as learning proceeds. `enqueue_between_passes=False` enqueues both passes'
  keys after both losses (fame-ray's option, `moco.enqueue: after_both`).

State dict layout (what fame-ray checkpoints hold under "model"):
    encoder_q.backbone.<backbone names>   encoder_q.head.*   (head: `0`,`2` MLP; or `weight`,`bias`)
    encoder_k.backbone.*                  encoder_k.head.*
    queue (dim x K), queue_ptr (1,)
The official layout is `module.encoder_q.<backbone names>` with the head under `fc.*`
(R(2+1)D) or `id_head.*` (I3D); fame_ray.models.loading maps between the two.

Micro batches (gradient accumulation, `train.micro_batch`): `prepare_keys` does the once-per-step
work on the whole per-worker batch: the momentum update, every key (through the key encoder a
micro batch at a time), the queue as each pass scores against it, and the enqueue of all keys;
`forward(..., keys=keys.rows(rows))` then runs the query side of one micro batch. Called
without `keys`, `forward` does both on its batch, exactly the official step. Shuffle-BN and
the query encoder's BatchNorm then see micro batches (statistics per micro batch, like a
smaller per-GPU batch); without BatchNorm the accumulated step equals the full-batch step.

Shared with DCLR (fame_ray.models.dclr): `concat_all_gather`, `momentum_update`, the ring
buffer `ring_write` and shuffle-BN `shuffled_forward`.

Device-agnostic: every tensor follows the input's device. Under DDP, wrap this module as a
whole; `broadcast_buffers=False` avoids re-sending the (identical) queue every step.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from fame_ray.config import MoCoConfig, ModelConfig
from fame_ray.models.backbones import build_backbone


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@torch.no_grad()
def concat_all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` (N,...) from every rank in rank order (no gradient); itself alone without a group."""
    if not _distributed():
        return tensor
    gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, tensor.contiguous())
    return torch.cat(gathered, dim=0)


@torch.no_grad()
def momentum_update(online: nn.Module, target: nn.Module, momentum: float) -> None:
    """target <- m * target + (1 - m) * online, parameter by parameter (buffers stay the target's own)."""
    params_q = [p.detach() for p in online.parameters()]
    params_k = list(target.parameters())
    torch._foreach_mul_(params_k, momentum)
    torch._foreach_add_(params_k, params_q, alpha=1.0 - momentum)


@torch.no_grad()
def ring_write(queue: torch.Tensor, queue_ptr: torch.Tensor, columns: torch.Tensor) -> None:
    """Write `columns` (queue's shape with N in the last dim) into `queue` (..., K) at queue_ptr,
    wrapping past the end, and advance the pointer by N (mod K); both stay on the device.

    A ring rather than the official slice assignment (which asserts K % N == 0): equal to it
    whenever that assertion holds, and still correct when N does not divide K (DCLR's recipe,
    K 2048 with batch 40) or changes mid-run (an elastic resize)."""
    count, size = columns.shape[-1], queue.shape[-1]
    if count > size:
        raise ValueError(f"a batch of {count} keys does not fit a queue of {size}")
    slots = (queue_ptr + torch.arange(count, device=queue_ptr.device)) % size
    queue.index_copy_(queue.dim() - 1, slots, columns.to(queue.dtype))
    queue_ptr.copy_((queue_ptr + count) % size)


@torch.no_grad()
def shuffled_forward(fn, tensors: tuple[torch.Tensor, ...], generator: torch.Generator | None) -> torch.Tensor:
    """fn(*tensors) -> N,... computed on a shuffled batch and returned in the input's order
    (shuffle-BN). `tensors` share their leading batch dim; the permutation is drawn from
    `generator` (CPU; the global RNG when None). Distributed: the batch of ALL workers is
    gathered, shuffled with rank 0's permutation (broadcast), each rank runs `fn` on its share,
    and every rank gets back the rows of its own inputs. One worker: a local shuffle."""
    local = tensors[0].shape[0]
    device = tensors[0].device
    if not _distributed():
        order = torch.randperm(local, generator=generator).to(device)
        return fn(*(tensor[order] for tensor in tensors))[torch.argsort(order)]
    everything = [concat_all_gather(tensor) for tensor in tensors]
    order = torch.randperm(everything[0].shape[0], generator=generator).to(device)
    dist.broadcast(order, src=0)
    rank = dist.get_rank()
    mine = order.view(-1, local)[rank]
    restore = torch.argsort(order).view(-1, local)[rank]
    return concat_all_gather(fn(*(tensor[mine] for tensor in everything)))[restore]


def projection_head(in_dim: int, out_dim: int, mlp: bool) -> nn.Module:
    """MoCo v2 head: Linear(in, in), ReLU, Linear(in, out) when `mlp`, else Linear(in, out)."""
    if mlp:
        return nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), nn.Linear(in_dim, out_dim))
    return nn.Linear(in_dim, out_dim)


class Encoder(nn.Module):
    """Backbone + projection head: B,C,T,H,W -> B,dim (not normalised)."""

    def __init__(self, backbone: nn.Module, dim: int, mlp: bool):
        super().__init__()
        self.backbone = backbone
        self.head = projection_head(backbone.feature_dim, dim, mlp)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(clips))


@dataclass
class MoCoOutput:
    """One symmetric MoCo step: `loss` (scalar, with grad), `acc1` (scalar in [0,1], no grad),
    `logits` (the two passes' B,1+K logits, no grad)."""

    loss: torch.Tensor
    acc1: torch.Tensor
    logits: tuple[torch.Tensor, torch.Tensor]


@dataclass
class MoCoKeys:
    """The keys of one per-worker batch (B,dim, normalised) and the queue (dim,K) each pass's
    queries are scored against: pass 1 (query = view_q, key = view_k) and, when symmetric,
    pass 2 (query = view_k, key = view_q)."""

    first: torch.Tensor
    second: torch.Tensor | None
    negatives: tuple[torch.Tensor, torch.Tensor | None]

    def rows(self, rows: slice) -> MoCoKeys:
        """The keys of the clips in `rows` (a micro batch), with the same negatives."""
        second = self.second[rows] if self.second is not None else None
        return MoCoKeys(self.first[rows], second, self.negatives)


class MoCo(nn.Module):
    """Query encoder, momentum key encoder and queue; `forward(view_q, view_k)` is one step."""

    def __init__(
        self,
        backbone: nn.Module,
        dim: int = 128,
        queue_size: int = 65536,
        momentum: float = 0.999,
        temperature: float = 0.1,
        mlp: bool = True,
        symmetric: bool = True,
        shuffle_bn: bool = True,
        generator: torch.Generator | None = None,
        enqueue_between_passes: bool = True,
    ):
        super().__init__()
        self.enqueue_between_passes = enqueue_between_passes
        self.queue_size = queue_size
        self.momentum = momentum
        self.temperature = temperature
        self.symmetric = symmetric
        self.shuffle_bn = shuffle_bn
        # Draws the shuffle-BN permutation (on rank 0 when distributed); CPU, seeded by the caller.
        self.generator = generator
        self.encoder_q = Encoder(backbone, dim, mlp)
        self.encoder_k = copy.deepcopy(self.encoder_q)
        for param in self.encoder_k.parameters():
            param.requires_grad = False
        self.register_buffer("queue", F.normalize(torch.randn(dim, queue_size), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @property
    def backbone(self) -> nn.Module:
        """The query encoder's backbone (what downstream tasks load)."""
        return self.encoder_q.backbone

    @torch.no_grad()
    def momentum_update(self) -> None:
        """k <- m * k + (1 - m) * q, parameter by parameter (buffers are the key encoder's own)."""
        momentum_update(self.encoder_q, self.encoder_k, self.momentum)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Put the keys of all workers (N,dim, normalised) into the queue at queue_ptr (a ring,
        `ring_write`: a write that runs past the end wraps to the start; no host sync)."""
        ring_write(self.queue, self.queue_ptr, concat_all_gather(keys).T)

    @torch.no_grad()
    def _keys(self, clips: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Key features B,dim (normalised) with shuffle-BN (across workers when distributed)."""
        if not self.shuffle_bn:
            return F.normalize(self.encoder_k(clips), dim=1)
        # Under CUDA autocast the encoder's first convolution reads the clips in bf16 anyway:
        # gathering them in bf16 is exact and halves the bytes every worker receives.
        if _distributed() and clips.is_cuda and torch.is_autocast_enabled("cuda"):
            clips = clips.to(torch.get_autocast_dtype("cuda"))
        return shuffled_forward(
            lambda chunk: F.normalize(self.encoder_k(chunk), dim=1),
            (clips,),
            generator if generator is not None else self.generator,
        )

    def _logits(self, query: torch.Tensor, keys: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """B,1+K logits in float32 (positive first) against `negatives`, the queue as it was
        before this pass's keys entered it."""
        query = F.normalize(query.float(), dim=1)
        with torch.autocast(device_type=query.device.type, enabled=False):
            positive = (query * keys.float()).sum(dim=1, keepdim=True)
            negative = query @ negatives.detach().float()
            return torch.cat([positive, negative], dim=1) / self.temperature

    def _batch_keys(self, clips: torch.Tensor, generator: torch.Generator | None, micro_batch: int) -> torch.Tensor:
        """Keys of every clip, `micro_batch` clips at a time through the key encoder (0 = all)."""
        step = micro_batch if 0 < micro_batch < clips.shape[0] else clips.shape[0]
        return torch.cat([self._keys(chunk, generator) for chunk in clips.split(step)])

    @torch.no_grad()
    def prepare_keys(
        self, view_q: torch.Tensor, view_k: torch.Tensor, generator: torch.Generator | None = None, micro_batch: int = 0
    ) -> MoCoKeys:
        """Once per step, over the whole per-worker batch: momentum update, keys of both views,
        the queue each pass scores against, and the enqueue of all keys (the first pass's
        before the second pass's negatives when `enqueue_between_passes`, as the official code;
        else both after). The official step runs the momentum update after the first query
        forward; the query encoder does not read the key encoder, so doing it first is the same."""
        self.momentum_update()
        first = self._batch_keys(view_k, generator, micro_batch)
        before = self.queue.clone()
        if not self.symmetric:
            self.enqueue(first)
            return MoCoKeys(first, None, (before, None))
        second = self._batch_keys(view_q, generator, micro_batch)
        if not self.enqueue_between_passes:
            self.enqueue(torch.cat([first, second]))
            return MoCoKeys(first, second, (before, before))
        self.enqueue(first)
        between = self.queue.clone()
        self.enqueue(second)
        return MoCoKeys(first, second, (before, between))

    def forward(
        self,
        view_q: torch.Tensor,
        view_k: torch.Tensor,
        shuffle_generator: torch.Generator | None = None,
        keys: MoCoKeys | None = None,
    ) -> MoCoOutput:
        """view_q (the FAME-fused clip), view_k (the plain clip): B,C,T,H,W float, normalised.
        `shuffle_generator` (CPU) draws this step's shuffle-BN order (default: the module's).
        `keys`: this batch's rows of `prepare_keys` (a micro batch); None = prepare them here."""
        if keys is None:
            keys = self.prepare_keys(view_q, view_k, shuffle_generator)
        logits_1 = self._logits(self.encoder_q(view_q), keys.first, keys.negatives[0])
        targets = torch.zeros(logits_1.shape[0], dtype=torch.long, device=logits_1.device)
        if not self.symmetric:
            return MoCoOutput(
                F.cross_entropy(logits_1, targets), _top1(logits_1), (logits_1.detach(), logits_1.detach())
            )
        logits_2 = self._logits(self.encoder_q(view_k), keys.second, keys.negatives[1])
        loss = 0.5 * (F.cross_entropy(logits_1, targets) + F.cross_entropy(logits_2, targets))
        # As the official train.py: acc@1 of the averaged logits.
        acc1 = _top1((logits_1.detach() + logits_2.detach()) / 2)
        return MoCoOutput(loss, acc1, (logits_1.detach(), logits_2.detach()))


def _top1(logits: torch.Tensor) -> torch.Tensor:
    """Share of rows whose positive (column 0) scores highest."""
    return (logits.detach().argmax(dim=1) == 0).float().mean()


def moco_for(model: ModelConfig, moco: MoCoConfig, generator: torch.Generator | None = None) -> MoCo:
    """MoCo around a fresh `build_backbone(model.arch)`, as the config's model and moco sections
    say; `generator` (CPU) draws the shuffle-BN orders."""
    return MoCo(
        build_backbone(model.arch),
        model.embed_dim,
        moco.queue_size,
        moco.momentum,
        moco.temperature,
        model.use_mlp_head,
        moco.symmetric,
        moco.shuffle_bn,
        generator,
        enqueue_between_passes=moco.enqueue == "between_passes",
    )
