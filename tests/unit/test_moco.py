"""MoCo: queue arithmetic, momentum update, gradients, a short training run, and 2 gloo workers."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from fame_ray.config import MoCoConfig, ModelConfig
from fame_ray.models.moco import MoCo, moco_for


class PlainNet(nn.Module):
    """A BatchNorm-free backbone: its features do not depend on the batch, so keys are exact."""

    feature_dim = 16

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 16, 3, stride=2, padding=1)

    def forward(self, x):
        return F.relu(self.conv(x)).mean(dim=(2, 3, 4))


def _moco(backbone=None, queue_size=32, momentum=0.999, mlp=True, seed=0):
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    return MoCo(
        backbone or PlainNet(),
        dim=8,
        queue_size=queue_size,
        momentum=momentum,
        temperature=0.1,
        mlp=mlp,
        generator=generator,
    )


def test_state_dict_layout():
    keys = (
        moco_for(
            ModelConfig(arch="tiny", embed_dim=128, mlp_head=True),
            MoCoConfig(queue_size=64, momentum=0.999, temperature=0.1),
        )
        .state_dict()
        .keys()
    )
    assert "encoder_q.backbone.stem.0.weight" in keys and "encoder_k.backbone.stem.0.weight" in keys
    assert {"encoder_q.head.0.weight", "encoder_q.head.2.weight", "queue", "queue_ptr"} <= set(keys)
    linear = moco_for(
        ModelConfig(arch="tiny", embed_dim=128, mlp_head=False),
        MoCoConfig(queue_size=64, momentum=0.999, temperature=0.1),
    ).state_dict()
    assert linear["encoder_q.head.weight"].shape == (128, 128)


def test_queue_pointer_and_contents():
    model = _moco(queue_size=32)
    assert torch.allclose(model.queue.norm(dim=0), torch.ones(32))
    keys = F.normalize(torch.randn(8, 8), dim=1)
    for step in range(4):
        model.enqueue(keys + step)
        assert int(model.queue_ptr) == (8 * (step + 1)) % 32
    assert torch.equal(model.queue[:, 8:16], (keys + 1).T)
    model.enqueue(keys)
    assert int(model.queue_ptr) == 8 and torch.equal(model.queue[:, :8], keys.T)
    with pytest.raises(ValueError, match="does not fit"):
        model.enqueue(torch.randn(33, 8))


def test_queue_survives_an_elastic_resize_that_changes_the_batch():
    """Global batch 12 on 1..5 workers: 12 keys per pass, then 10 after a resize to 5 workers,
    with K = 60. The pointer stops being a multiple of the batch; the queue wraps around and
    always holds the newest K keys (the old slice assignment failed at 52 + 10 > 60)."""
    model = _moco(queue_size=60)
    written = []
    for step in range(12):
        count = 12 if step < 3 else 10
        keys = F.normalize(torch.randn(count, 8), dim=1)
        model.enqueue(keys)
        written.append(keys)
    newest = torch.cat(written)[-60:]
    pointer = int(model.queue_ptr)
    assert pointer == (3 * 12 + 9 * 10) % 60
    in_order = torch.cat([model.queue[:, pointer:], model.queue[:, :pointer]], dim=1).T
    assert torch.equal(in_order, newest)


def test_symmetric_step_enqueues_twice_and_updates_momentum_once():
    model = _moco(queue_size=32, momentum=0.5)
    with torch.no_grad():
        for param in model.encoder_k.parameters():
            param.zero_()
    q_params = [p.detach().clone() for p in model.encoder_q.parameters()]
    view_q, view_k = torch.randn(4, 3, 4, 16, 16), torch.randn(4, 3, 4, 16, 16)
    out = model(view_q, view_k)
    assert int(model.queue_ptr) == 8  # 2 passes x batch 4
    for param_q, param_k in zip(q_params, model.encoder_k.parameters()):
        assert torch.allclose(param_k, 0.5 * param_q)  # 0.5 * 0 + 0.5 * q, once
    assert out.logits[0].shape == (4, 33)
    # Pass 1 keys (plain view through the key encoder) sit in the first 4 queue columns.
    expected = F.normalize(model.encoder_k(view_k), dim=1)
    assert torch.allclose(model.queue[:, :4].T, expected, atol=1e-6)
    assert torch.allclose(model.queue[:, 4:8].T, F.normalize(model.encoder_k(view_q), dim=1), atol=1e-6)


def test_key_encoder_gets_no_gradients_and_loss_is_sane():
    model = moco_for(
        ModelConfig(arch="tiny", embed_dim=32, mlp_head=True),
        MoCoConfig(queue_size=64, momentum=0.999, temperature=0.1),
        torch.Generator().manual_seed(0),
    )
    out = model(torch.randn(4, 3, 4, 32, 32), torch.randn(4, 3, 4, 32, 32))
    out.loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in model.encoder_k.parameters())
    assert all(p.grad is not None for p in model.encoder_q.parameters())
    assert torch.isfinite(out.loss) and 0.0 <= float(out.acc1) <= 1.0
    assert not out.acc1.requires_grad


def test_loss_decreases_on_an_easy_task():
    """Fresh clips each step, key = query + small noise: once the random initial queue has been
    replaced by real keys (after 4 steps), the loss must fall as the encoder learns."""
    torch.manual_seed(1)
    model = moco_for(
        ModelConfig(arch="tiny", embed_dim=32, mlp_head=True),
        MoCoConfig(queue_size=64, momentum=0.9, temperature=0.2),
        torch.Generator().manual_seed(0),
    )
    optimizer = torch.optim.SGD(model.encoder_q.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(20):
        clips = torch.randn(8, 3, 4, 16, 16)
        out = model(clips + 0.1 * torch.randn_like(clips), clips + 0.1 * torch.randn_like(clips))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(float(out.loss.detach()))
    assert sum(losses[-4:]) / 4 < sum(losses[4:8]) / 4 - 0.2


def test_bf16_autocast_logits_are_float32():
    model = _moco()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(4, 3, 4, 16, 16), torch.randn(4, 3, 4, 16, 16))
    assert out.logits[0].dtype == torch.float32 and torch.isfinite(out.loss)
    assert model.queue.dtype == torch.float32


# ---------------------------------------------------------------------------------------
# Two gloo workers (torch.multiprocessing, no Ray)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world: int, port: int):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        _check_exact_keys(rank, world)
        _check_training_steps(rank, world)
        # Both ranks leave together: tearing gloo down while the peer still has work in
        # flight aborts the process ("terminate called without an active exception").
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _gather(tensor):
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor)
    return torch.cat(parts)


def _check_exact_keys(rank, world):
    """With a BN-free backbone, the queue must hold exactly the keys of all ranks, in rank order."""
    model = _moco(queue_size=32, seed=0)
    model.generator.manual_seed(100 + rank)  # ranks draw different permutations; rank 0's wins
    torch.manual_seed(10 + rank)
    view_q, view_k = torch.randn(4, 3, 4, 16, 16), torch.randn(4, 3, 4, 16, 16)
    out = model(view_q, view_k)
    assert int(model.queue_ptr) == 2 * 4 * world
    with torch.no_grad():
        keys_1 = F.normalize(model.encoder_k(_gather(view_k)), dim=1)
        keys_2 = F.normalize(model.encoder_k(_gather(view_q)), dim=1)
        mine = F.normalize(model.encoder_q(view_q), dim=1)
    assert torch.allclose(model.queue[:, :8].T, keys_1, atol=1e-5)
    assert torch.allclose(model.queue[:, 8:16].T, keys_2, atol=1e-5)
    # The positive logit pairs each query with ITS OWN key after the unshuffle.
    positive = (mine * keys_1[rank * 4 : (rank + 1) * 4]).sum(dim=1) / 0.1
    assert torch.allclose(out.logits[0][:, 0], positive, atol=1e-4)


def _check_training_steps(rank, world):
    """Tiny (with BN) under DDP: two optimizer steps; both ranks' queues stay identical."""
    model = moco_for(
        ModelConfig(arch="tiny", embed_dim=16, mlp_head=True),
        MoCoConfig(queue_size=32, momentum=0.99, temperature=0.1),
        torch.Generator().manual_seed(rank),
    )
    torch.manual_seed(0)
    ddp = nn.parallel.DistributedDataParallel(model, broadcast_buffers=False)
    optimizer = torch.optim.SGD(model.encoder_q.parameters(), lr=0.01)
    torch.manual_seed(20 + rank)
    for _step in range(2):
        out = ddp(torch.randn(4, 3, 4, 32, 32), torch.randn(4, 3, 4, 32, 32))
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        assert torch.isfinite(out.loss)
    assert int(model.queue_ptr) == 0  # 2 steps x 2 passes x 8 keys = 32 = K
    queues = _gather(model.queue[None])
    assert torch.equal(queues[0], queues[1])
    weights = _gather(model.encoder_k.backbone.stem[0].weight.detach()[None])
    assert torch.equal(weights[0], weights[1])


def test_two_gloo_workers_share_one_queue():
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    mp.spawn(_worker, args=(2, _free_port()), nprocs=2, join=True)


def test_the_official_order_leaves_the_second_pass_its_own_clip_key_as_a_negative():
    """Official builder: pass 1 enqueues keys of view_k before pass 2 queries with view_k, so
    pass 2's queue holds each query's own clip (through the key encoder). 'after_both' does not."""
    clips = torch.rand(4, 3, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    others = torch.rand(4, 3, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    for between, expected in ((True, True), (False, False)):
        model = _moco(queue_size=32, momentum=0.0)  # key encoder = query encoder
        model.enqueue_between_passes = between
        with torch.no_grad():
            out = model(others, clips)
        own_key = out.logits[1][:, 1:].max(dim=1).values  # best negative of pass 2
        assert bool((own_key >= out.logits[1][:, 0] - 1e-4).all()) == expected


def test_background_erasing_loss_is_one_way_with_the_intra_video_negative():
    """BE as released (NCEAverage.py:173-229, pt.py:327-340): logits [q.k, q.queue, q.n] / T with
    the queue as before the step, cross-entropy on the positive, n through the query encoder with
    gradient, only the positives' keys enqueued."""
    from fame_ray.models.background_erasing import BackgroundErasingMoCo

    torch.manual_seed(0)
    model = BackgroundErasingMoCo(PlainNet(), dim=8, queue_size=32, temperature=0.1, shuffle_bn=False)
    anchor, positive, negative = (torch.randn(4, 3, 4, 8, 8) for _ in range(3))
    queue = model.queue.clone()
    output = model(anchor, positive, negative=negative)
    q = F.normalize(model.encoder_q(anchor), dim=1)
    k = F.normalize(model.encoder_k(positive), dim=1)
    n = F.normalize(model.encoder_q(negative), dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue, (q * n).sum(1, keepdim=True)], dim=1) / 0.1
    torch.testing.assert_close(output.logits[0], logits.detach())
    torch.testing.assert_close(output.loss, F.cross_entropy(logits, torch.zeros(4, dtype=torch.long)))
    assert int(model.queue_ptr) == 4  # one pass
    torch.testing.assert_close(model.queue[:, :4].T, k)
    # The negative goes through the query encoder with gradient (BE: feat_n = model(negative)).
    negative.requires_grad_()
    model(anchor, positive, negative=negative).loss.backward()
    assert negative.grad is not None and negative.grad.abs().sum() > 0
    plain = MoCo(PlainNet(), dim=8, queue_size=32, temperature=0.1, shuffle_bn=False, symmetric=False)
    plain.load_state_dict(model.state_dict())
    assert plain.state_dict().keys() == model.state_dict().keys()  # a BE checkpoint loads as MoCo's
    with pytest.raises(ValueError, match="intra-video negative"):
        model(anchor, positive)
