"""Gradient accumulation: how a batch is cut into micro batches, and, on 2 gloo workers under
DDP, that a micro-batched MoCo step equals the full-batch step with one all-reduce per step."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

from fame_ray.components.accumulation import micro_batches, micro_steps
from fame_ray.config import MoCoConfig, ModelConfig
from fame_ray.models.moco import moco_for
from fame_ray.pretrain.step import accumulate


def test_micro_batches_cover_the_batch_once():
    assert micro_batches(8, 0) == [slice(0, 8)]
    assert micro_batches(8, 8) == micro_batches(8, 16) == [slice(0, 8)]
    assert micro_batches(8, 4) == [slice(0, 4), slice(4, 8)]
    assert micro_batches(7, 3) == [slice(0, 3), slice(3, 6), slice(6, 7)]
    assert micro_batches(0, 4) == []


def test_micro_steps_share_adds_up_to_one_and_skips_no_sync_without_ddp():
    shares = [share for _, share in micro_steps(nn.Linear(1, 1), 7, 3)]
    assert shares == [3 / 7, 3 / 7, 1 / 7]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _step(micro_batch: int, rank: int):
    """One accumulated SGD step of DDP-wrapped tiny MoCo (BatchNorm in eval mode) on this rank's
    4 clips; returns the model and how many gradient buckets were all-reduced."""
    torch.manual_seed(0)
    model = moco_for(
        ModelConfig(arch="tiny", embed_dim=16, mlp_head=True),
        MoCoConfig(queue_size=32, momentum=0.99, temperature=0.1),
        torch.Generator().manual_seed(0),
    ).eval()
    ddp = nn.parallel.DistributedDataParallel(model, broadcast_buffers=False)
    calls = {"count": 0}

    def counting_allreduce(state, bucket):
        state["count"] += 1
        return default_hooks.allreduce_hook(None, bucket)

    ddp.register_comm_hook(calls, counting_allreduce)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    clips = torch.randn(2, 4, 3, 4, 16, 16, generator=torch.Generator().manual_seed(10 + rank))
    optimizer.zero_grad(set_to_none=True)
    accumulate(ddp, (clips[0], clips[1]), torch.Generator().manual_seed(5), micro_batch)
    optimizer.step()
    return model, calls["count"]


def _worker(rank: int, world: int, port: int):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        full, full_calls = _step(0, rank)
        micro, micro_calls = _step(2, rank)
        assert micro_calls == full_calls > 0  # no_sync: one all-reduce per bucket per step, not per chunk
        for (name, expected), actual in zip(full.state_dict().items(), micro.state_dict().values()):
            torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6, msg=name)
        weights = [torch.empty_like(micro.encoder_q.head[0].weight) for _ in range(world)]
        dist.all_gather(weights, micro.encoder_q.head[0].weight.detach().contiguous())
        assert torch.equal(weights[0], weights[1])  # the ranks took the same step
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_gloo_workers_accumulate_with_one_all_reduce():
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    mp.spawn(_worker, args=(2, _free_port()), nprocs=2, join=True)
