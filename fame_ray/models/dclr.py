"""DCLR: Dual Contrastive Learning for spatio-temporal Representation (Ding, Qian, Xiong, ACM MM
2022, arXiv 2207.05340; official code github.com/Mark12Ding/DCLR, `moco/builder.py::MoCo_View`,
`view_resnet.py`, `main_view.py`), beside MoCo (fame_ray.models.moco), as the official code
computes it with its released defects fixed (docs/dclr.md lists each one and its fix).

Views of one clip pair (q, k) of a video, B,C,T,H,W each, augmented and normalised by the caller:
- RGB: the clip; static: one frame of the raw clip repeated over T (`static_view`), cropped and
  augmented on its own; dynamic: the frame difference of the augmented RGB clip (`dynamic_view`),
  derived here.
- One backbone runs the three views of a clip stacked along the batch (B*3, as the official
  code). From its last-stage features (`feature_map`) five heads embed (official names):
    fvv  the RGB features, average pooled
    fvs  the RGB features pooled under the static view's activation map (static-related RGB)
    fvd  the RGB features pooled under the dynamic view's activation map (dynamic-related RGB)
    fsv  the static view's features; fdv the dynamic view's features
  An activation map is a feature map summed over channels (B,1,T',H',W'); as a pooling weight
  it is divided by its own mean. The maps come from the momentum encoder before its update
  (official: a separate no-grad pass over each clip's three views).
- Five contrasts, each query embedding against the other clip's key embedding and a queue of
  past ones (logits B,1+K at temperature T):
    vv: fvv(q) . fvv(k)   vs: fvs(q) . fsv(k)   vd: fvd(q) . fdv(k)
    sv: fsv(q) . fvs(k)   dv: fdv(q) . fvd(k)
  each scored with a multi-positive NCE (official MultiNCELoss): the key and the `topk` queue
  entries nearest to the query clip (by the pre-update key encoder's static embedding for vs
  and sv, dynamic for vd and dv, the sum of both softmaxed similarities for vv) are positives.
- loss = vv + (vs + sv) + (vd + dv) + map_weight * map, with map the mean squared difference
  between the query clip's RGB activation map and the key clip's static + dynamic maps. All
  three maps come from the momentum encoder under no_grad, as in the official code: the term
  carries no gradient, it is logged (docs/dclr.md, "the activation-map term").
- Seven queues (`queues`, 7 x dim x K, one pointer): past key embeddings of the five heads
  (index order vv, vs, vd, sv, dv) and the pre-update key encoder's static and dynamic
  embeddings (rs, rd) that pick the extra positives. A ring buffer (`ring_write`).
- Queue warm-up: the official loop takes no optimizer step in the first 256 iterations
  (`warmup_steps`, data for the training loop; the model does not act on it).

State dict layout (fame-ray checkpoints, "model"): encoder_q.backbone.<backbone names>,
encoder_q.{fvv,fvs,fvd,fsv,fdv}.*, encoder_k.* (the same), queues, queue_ptr. The query
backbone sits where a MoCo checkpoint has it, so finetuning loads either the same way
(fame_ray.models.loading); official DCLR checkpoints hold module.encoder_q.<backbone names>
and module.encoder_q.{fvv,...}.* (loading.load_official_dclr_query_encoder).

Micro batches: `prepare_keys` does the once-per-step work on the whole per-worker batch (the
pre-update maps and positives, the momentum update, the keys, the queues as the batch scores
against them, the enqueue), the key encoder taking `micro_batch` clips at a time;
`forward(..., keys=keys.rows(rows))` then runs the query side of one micro batch. The query
side's BatchNorm sees micro batches; without BatchNorm the accumulated step equals the
full-batch step. Device-agnostic; one worker or DDP (wrap the module as a whole).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from fame_ray.config import DCLRConfig
from fame_ray.models.backbones import build_backbone
from fame_ray.models.moco import concat_all_gather, momentum_update, projection_head, ring_write, shuffled_forward

HEADS = ("fvv", "fvs", "fvd", "fsv", "fdv")
QUEUES = ("vv", "vs", "vd", "sv", "dv", "rs", "rd")
# The five contrasts (official logit names): query head i against key head KEY_OF[i] and its
# queue, with the positives of set POSITIVES_OF[i] (0: RGB, 1: static, 2: dynamic).
PAIRS = ("vv", "vs", "vd", "sv", "dv")
KEY_OF = (0, 3, 4, 1, 2)
POSITIVES_OF = (0, 1, 2, 1, 2)


def dynamic_view(clips: torch.Tensor, wrap: bool = True) -> torch.Tensor:
    """B,C,T,H,W -> B,C,T,H,W frame differences x_t - x_{t-1} of the augmented, normalised clip.

    As the official `video - torch.roll(video, 1, 2)`, frame 0 is x_0 - x_{T-1} (the roll wraps
    around: a jump across the whole clip); `wrap=False` makes frame 0 zero instead."""
    difference = clips - torch.roll(clips, 1, dims=2)
    if not wrap:
        difference[:, :, 0] = 0
    return difference


def static_view(clips: torch.Tensor, index: torch.Tensor, frames: int) -> torch.Tensor:
    """B,C,T_raw,H,W (any dtype, e.g. the raw uint8 clip before the temporal stride) and index
    (B,) -> B,C,frames,H,W: frame index[b] of clip b repeated `frames` times (contiguous).

    The official dataset draws one index in [0, T_raw) per sample (T_raw = 32 raw frames for a
    16-frame clip at stride 2) and uses it for both clips of the pair; the static view is then
    cropped and augmented independently of the RGB clip."""
    picked = clips[torch.arange(clips.shape[0], device=clips.device), :, index.to(clips.device)]
    return picked.unsqueeze(2).expand(-1, -1, frames, -1, -1).contiguous()


def activation_map(features: torch.Tensor) -> torch.Tensor:
    """B,C,T',H',W' -> B,1,T',H',W': the features summed over channels."""
    return features.sum(dim=1, keepdim=True)


def _pool(features: torch.Tensor) -> torch.Tensor:
    return F.adaptive_avg_pool3d(features, 1).flatten(1)


def weighted_pool(features: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """B,C,T',H',W' features and B,1,T',H',W' activation map -> B,C: the average of features x
    (map / its mean over T',H',W'), i.e. the features pooled with the map as weights. The
    mean is floored at the smallest normal float: an all-zero map (official: a division by zero,
    NaN) pools to zeros."""
    mean = weights.flatten(1).mean(dim=1).clamp_min(torch.finfo(weights.dtype).tiny)
    return _pool(features * (weights / mean.view(-1, 1, 1, 1, 1)))


def multi_positive_nce(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Batch mean of -log(softmax mass on the positives): logits B,1+K (column 0: the key),
    positives B,P distinct queue columns in [0, K) (official MultiNCELoss, in log-sum-exp form)."""
    chosen = torch.cat([logits[:, :1], logits.gather(1, positives + 1)], dim=1)
    return (torch.logsumexp(logits, dim=1) - torch.logsumexp(chosen, dim=1)).mean()


class DCLREncoder(nn.Module):
    """One backbone (with `feature_map`) and the five heads fvv, fvs, fvd, fsv, fdv."""

    def __init__(self, backbone: nn.Module, dim: int, mlp: bool):
        super().__init__()
        if not callable(getattr(backbone, "feature_map", None)):
            name = type(backbone).__name__
            raise TypeError(f"DCLR needs a backbone with feature_map(x) -> B,C,T',H',W'; {name} has none")
        self.backbone = backbone
        for name in HEADS:
            setattr(self, name, projection_head(backbone.feature_dim, dim, mlp))

    def feature_maps(self, rgb: torch.Tensor, static: torch.Tensor, dynamic: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Three B,C,T,H,W views -> their last-stage features (3 x B,C',T',H',W'), from ONE
        backbone pass over the views stacked per clip (BatchNorm sees all 3B clips, as official)."""
        batch = rgb.shape[0]
        maps = self.backbone.feature_map(torch.stack([rgb, static, dynamic], dim=1).flatten(0, 1))
        return maps.unflatten(0, (batch, 3)).unbind(1)

    def embed(
        self,
        rgb: torch.Tensor,
        static: torch.Tensor,
        dynamic: torch.Tensor,
        static_map: torch.Tensor,
        dynamic_map: torch.Tensor,
    ) -> torch.Tensor:
        """Features of the three views and the pooling maps -> B,5,dim (float32, L2-normalised):
        fvv, fvs, fvd, fsv, fdv in that order."""
        outputs = [
            self.fvv(_pool(rgb)),
            self.fvs(weighted_pool(rgb, static_map)),
            self.fvd(weighted_pool(rgb, dynamic_map)),
            self.fsv(_pool(static)),
            self.fdv(_pool(dynamic)),
        ]
        return F.normalize(torch.stack(outputs, dim=1).float(), dim=2)

    def probe(self, rgb: torch.Tensor, static: torch.Tensor, dynamic: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Features of the three views -> (RGB, static, dynamic activation maps B,1,T',H',W';
        B,2,dim the normalised fsv and fdv embeddings): the official `train=False` pass."""
        refs = torch.stack([self.fsv(_pool(static)), self.fdv(_pool(dynamic))], dim=1)
        return activation_map(rgb), activation_map(static), activation_map(dynamic), F.normalize(refs.float(), dim=2)


@dataclass
class DCLROutput:
    """One DCLR step: `loss` (scalar, with grad), `acc1` (share of RGB-RGB queries whose key
    scores highest, no grad), `terms` (no grad): the five NCE terms vv, vs, vd, sv, dv, the
    unweighted activation-map term "map" and "contrastive", the sum of the five (what the
    gradient comes from: at init the weighted map term is most of `loss`, docs/dclr.md)."""

    loss: torch.Tensor
    acc1: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class DCLRKeys:
    """The key side of one per-worker batch (`DCLR.prepare_keys`), row-aligned with the batch:
    keys B,5,dim (the key clip's five embeddings, post-update key encoder, shuffle-BN);
    static_map, dynamic_map B,1,T',H',W' (the pre-update key encoder's maps of the QUERY clip's
    static and dynamic views, which weight the query's RGB features); positives B,3,topk (queue
    columns counted as positives for the RGB, static and dynamic sets); map_error B (per clip
    mean squared map difference); negatives 5,dim,K (the queues before this batch entered)."""

    keys: torch.Tensor
    static_map: torch.Tensor
    dynamic_map: torch.Tensor
    positives: torch.Tensor
    map_error: torch.Tensor
    negatives: torch.Tensor

    def rows(self, rows: slice) -> DCLRKeys:
        """The key side of the clips in `rows` (a micro batch), with the same negatives."""
        return DCLRKeys(
            self.keys[rows],
            self.static_map[rows],
            self.dynamic_map[rows],
            self.positives[rows],
            self.map_error[rows],
            self.negatives,
        )


def _chunks(tensors: tuple[torch.Tensor, ...], micro_batch: int) -> list[tuple[torch.Tensor, ...]]:
    """The tensors (same leading B) split into chunks of `micro_batch` rows (0 = one chunk)."""
    size = tensors[0].shape[0]
    step = micro_batch if 0 < micro_batch < size else size
    return list(zip(*(tensor.split(step) for tensor in tensors)))


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class DCLR(nn.Module):
    """Query encoder, momentum key encoder and seven queues;
    `forward(rgb_q, rgb_k, static_q, static_k)` is one step."""

    def __init__(
        self,
        backbone: nn.Module,
        dim: int = 128,
        queue_size: int = 2048,
        momentum: float = 0.999,
        temperature: float = 0.07,
        topk: int = 5,
        mlp: bool = True,
        map_weight: float = 0.1,
        warmup_steps: int = 256,
        shuffle_bn: bool = True,
        dynamic_wrap: bool = True,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        # The same checks as the config (ConfigError on a bad value).
        DCLRConfig(queue_size, momentum, temperature, topk, mlp, map_weight, warmup_steps, shuffle_bn, dynamic_wrap)
        self.queue_size, self.momentum, self.temperature, self.topk = queue_size, momentum, temperature, topk
        self.map_weight, self.shuffle_bn, self.dynamic_wrap = map_weight, shuffle_bn, dynamic_wrap
        # Steps at the start of a run that take no optimizer step (for the training loop to honour).
        self.warmup_steps = warmup_steps
        # Draws the shuffle-BN permutation (on rank 0 when distributed); CPU, seeded by the caller.
        self.generator = generator
        self.encoder_q = DCLREncoder(backbone, dim, mlp)
        self.encoder_k = copy.deepcopy(self.encoder_q)
        for param in self.encoder_k.parameters():
            param.requires_grad = False
        self.register_buffer("queues", F.normalize(torch.randn(len(QUEUES), dim, queue_size), dim=1))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @property
    def backbone(self) -> nn.Module:
        """The query encoder's backbone (what downstream tasks load)."""
        return self.encoder_q.backbone

    @torch.no_grad()
    def momentum_update(self) -> None:
        """k <- m * k + (1 - m) * q over all parameters (backbone and heads)."""
        momentum_update(self.encoder_q, self.encoder_k, self.momentum)

    @torch.no_grad()
    def enqueue(self, columns: torch.Tensor) -> None:
        """Put N,7,dim embeddings of all workers (QUEUES order) into the queues at queue_ptr."""
        ring_write(self.queues, self.queue_ptr, concat_all_gather(columns).permute(1, 2, 0))

    @torch.no_grad()
    def _probe(self, views: tuple[torch.Tensor, ...], micro_batch: int) -> tuple[torch.Tensor, ...]:
        """The key encoder's maps and static/dynamic embeddings of (rgb, static, dynamic) views,
        without shuffle-BN (official), `micro_batch` clips at a time."""
        parts = [self.encoder_k.probe(*self.encoder_k.feature_maps(*chunk)) for chunk in _chunks(views, micro_batch)]
        return tuple(torch.cat(part) for part in zip(*parts))

    def _embed_keys(self, rgb, static, dynamic, static_map, dynamic_map) -> torch.Tensor:
        return self.encoder_k.embed(*self.encoder_k.feature_maps(rgb, static, dynamic), static_map, dynamic_map)

    @torch.no_grad()
    def _keys(
        self, inputs: tuple[torch.Tensor, ...], generator: torch.Generator | None, micro_batch: int
    ) -> torch.Tensor:
        """B,5,dim key embeddings of (rgb, static, dynamic, static map, dynamic map); with
        shuffle-BN the maps travel with their clips (the official code left them unshuffled)."""
        generator = generator if generator is not None else self.generator
        keys = []
        for chunk in _chunks(inputs, micro_batch):
            if not self.shuffle_bn:
                keys.append(self._embed_keys(*chunk))
                continue
            # Under CUDA autocast the first convolution reads bf16 anyway: gathering the clips
            # in bf16 is exact and halves the bytes every worker receives.
            if _distributed() and chunk[0].is_cuda and torch.is_autocast_enabled("cuda"):
                dtype = torch.get_autocast_dtype("cuda")
                chunk = tuple(tensor.to(dtype) for tensor in chunk[:3]) + chunk[3:]
            keys.append(shuffled_forward(self._embed_keys, chunk, generator))
        return torch.cat(keys)

    @torch.no_grad()
    def _positives(self, refs: torch.Tensor) -> torch.Tensor:
        """B,2,dim static/dynamic embeddings of the query clip -> B,3,topk queue columns: the
        nearest rs entries (static set), rd entries (dynamic set) and, for the RGB set, the top
        of the sum of both similarities, each softmaxed over the queue first (official)."""
        with torch.autocast(device_type=refs.device.type, enabled=False):
            static = torch.softmax(refs[:, 0].float() @ self.queues[5].float(), dim=1)
            dynamic = torch.softmax(refs[:, 1].float() @ self.queues[6].float(), dim=1)
            sets = [static + dynamic, static, dynamic]
            return torch.stack([torch.topk(similarity, self.topk, dim=1).indices for similarity in sets], dim=1)

    @torch.no_grad()
    def prepare_keys(
        self,
        rgb_q: torch.Tensor,
        rgb_k: torch.Tensor,
        static_q: torch.Tensor,
        static_k: torch.Tensor,
        generator: torch.Generator | None = None,
        micro_batch: int = 0,
    ) -> DCLRKeys:
        """Once per step, over the whole per-worker batch (B,C,T,H,W views, normalised): the
        pre-update key encoder's maps and positives, the momentum update, the keys, a copy of
        the queues the batch scores against, and the enqueue of all seven embeddings."""
        views_q = (rgb_q, static_q, dynamic_view(rgb_q, self.dynamic_wrap))
        views_k = (rgb_k, static_k, dynamic_view(rgb_k, self.dynamic_wrap))
        rgb_map_q, static_map_q, dynamic_map_q, refs_q = self._probe(views_q, micro_batch)
        _, static_map_k, dynamic_map_k, refs_k = self._probe(views_k, micro_batch)
        self.momentum_update()
        keys = self._keys(views_k + (static_map_k, dynamic_map_k), generator, micro_batch)
        positives = self._positives(refs_q)
        # Official names: qvc against ksdc, the key clip's static + dynamic maps.
        map_error = (rgb_map_q - (static_map_k + dynamic_map_k)).float().pow(2).flatten(1).mean(dim=1)
        negatives = self.queues[: len(PAIRS)].clone()
        self.enqueue(torch.cat([keys, refs_k], dim=1))
        return DCLRKeys(keys, static_map_q, dynamic_map_q, positives, map_error, negatives)

    def _logits(self, queries: torch.Tensor, keys: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """B,5,dim queries, B,5,dim keys, 5,dim,K queues -> B,5,1+K float32 logits (positive
        first), query head i against key head KEY_OF[i] and that head's queue."""
        with torch.autocast(device_type=queries.device.type, enabled=False):
            paired = list(KEY_OF)
            positive = (queries * keys[:, paired].float()).sum(dim=2, keepdim=True)
            negative = torch.einsum("bic,ick->bik", queries, negatives[paired].detach().float())
            return torch.cat([positive, negative], dim=2) / self.temperature

    def forward(
        self,
        rgb_q: torch.Tensor,
        rgb_k: torch.Tensor,
        static_q: torch.Tensor,
        static_k: torch.Tensor,
        shuffle_generator: torch.Generator | None = None,
        keys: DCLRKeys | None = None,
    ) -> DCLROutput:
        """Views B,C,T,H,W float, augmented and normalised: the RGB clips q and k and their static
        views. `shuffle_generator` (CPU) draws this step's shuffle-BN order (default: the
        module's); `keys`: this batch's rows of `prepare_keys` (a micro batch), None = here."""
        if keys is None:
            keys = self.prepare_keys(rgb_q, rgb_k, static_q, static_k, shuffle_generator)
        features = self.encoder_q.feature_maps(rgb_q, static_q, dynamic_view(rgb_q, self.dynamic_wrap))
        queries = self.encoder_q.embed(*features, keys.static_map, keys.dynamic_map)
        logits = self._logits(queries, keys.keys, keys.negatives)
        nce = [multi_positive_nce(logits[:, i], keys.positives[:, POSITIVES_OF[i]]) for i in range(len(PAIRS))]
        terms = dict(zip(PAIRS, nce))
        terms["map"] = keys.map_error.mean()
        # The official sum: (vs + sv) + (vd + dv) + vv + 0.1 * map.
        terms["contrastive"] = (terms["vs"] + terms["sv"]) + (terms["vd"] + terms["dv"]) + terms["vv"]
        loss = terms["contrastive"] + self.map_weight * terms["map"]
        acc1 = (logits[:, 0].detach().argmax(dim=1) == 0).float().mean()
        return DCLROutput(loss, acc1, {name: value.detach() for name, value in terms.items()})


def dclr_for(
    arch: str,
    dim: int = 128,
    queue_size: int = 2048,
    momentum: float = 0.999,
    temperature: float = 0.07,
    topk: int = 5,
    mlp: bool = True,
    map_weight: float = 0.1,
    warmup_steps: int = 256,
    shuffle_bn: bool = True,
    dynamic_wrap: bool = True,
    generator: torch.Generator | None = None,
) -> DCLR:
    """DCLR around a fresh `build_backbone(arch)`; the keywords are DCLRConfig's fields
    (`dclr_for(arch, dim, **dataclasses.asdict(config), generator=...)`)."""
    return DCLR(
        build_backbone(arch),
        dim,
        queue_size,
        momentum,
        temperature,
        topk,
        mlp,
        map_weight,
        warmup_steps,
        shuffle_bn,
        dynamic_wrap,
        generator,
    )
