"""The pretraining step: each method's query view over a full per-worker batch, the key view
untouched, per-step generators that make a step reproducible, and one SGD step."""

from __future__ import annotations

import pytest
import torch

from fame_ray.config import PretrainConfig, build, presets
from fame_ray.data.clips import fame
from fame_ray.pretrain import step


def _config(method: str) -> PretrainConfig:
    """The demo at 4x16x16, the whole batch at once (the micro batch a run plan resolves)."""
    return build(
        PretrainConfig,
        presets.demo_pretrain(),
        {"method": method, "data": {"frames_per_clip": 4, "crop_size": 16}, "train": {"micro_batch": 0}},
    )


def _batch(size=6, seed=0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    clips = lambda: torch.randint(0, 256, (size, 3, 4, 16, 16), generator=generator, dtype=torch.uint8)  # noqa: E731
    return {
        "view_q": clips(),
        "view_k": clips(),
        "mask": (torch.rand(size, 16, 16, generator=generator) < 0.5).to(torch.uint8),
        "label": torch.arange(size),
    }


def test_fame_with_the_mask_on_the_trainer_computes_the_batch_masks_before_the_merge():
    """fame.mask_on 'trainer': rows come without masks; the step computes them over the whole
    batch on its device and merges with them (the same permutation as with the data's masks)."""
    batch = _batch(size=6)
    del batch["mask"]
    cfg = build(PretrainConfig, _config("fame"), {"fame": {"mask_on": "trainer"}})
    fused = step.query_clips(batch, cfg, torch.Generator().manual_seed(3), torch.device("cpu"))
    expected = torch.Generator().manual_seed(3)
    permutation = torch.randperm(6, generator=expected)
    mask = fame.batch_masks(batch["view_q"], cfg.fame.beta, expected)
    assert torch.equal(fused, fame.merge(batch["view_q"], mask, permutation).float() / 255)
    assert not step.data_masks(cfg) and step.data_masks(_config("fame")) and not step.data_masks(_config("moco"))


def test_fame_fuses_every_clip_with_a_background_from_the_full_batch():
    batch = _batch(size=6)
    fused = step.query_clips(batch, _config("fame"), torch.Generator().manual_seed(3), torch.device("cpu"))
    query = batch["view_q"].float() / 255
    keep = batch["mask"].bool()[:, None, None]
    # Find, for every clip, which clip of the batch gave it its background.
    donors = []
    for index in range(6):
        matches = [
            other
            for other in range(6)
            if torch.equal(fused[index], torch.where(keep[index], query[index], query[other]))
        ]
        assert matches, f"clip {index} is not foreground + a background of the batch"
        donors.append(matches[0])
    assert sorted(donors) == list(range(6))  # one permutation over all six clips
    assert donors != list(range(6))  # seed 3 moves backgrounds around


def test_the_key_view_is_never_touched_and_moco_leaves_the_query():
    batch = _batch()
    generators = step.step_generators(0, 5, 0, torch.device("cpu"))
    plain = step.query_clips(batch, _config("moco"), generators["query"], torch.device("cpu"))
    torch.testing.assert_close(plain, batch["view_q"].float() / 255)
    for method in ("fame", "moco", "moco_be_mix"):
        _, key = step.views(
            batch, _config(method), step.step_generators(0, 5, 0, torch.device("cpu")), torch.device("cpu")
        )
        _, key_plain = step.views(
            batch, _config("moco"), step.step_generators(0, 5, 0, torch.device("cpu")), torch.device("cpu")
        )
        torch.testing.assert_close(key, key_plain)


def test_the_frame_mixing_ablation_changes_the_query_only():
    batch = _batch()
    erased = step.query_clips(batch, _config("moco_be_mix"), torch.Generator().manual_seed(1), torch.device("cpu"))
    assert not torch.allclose(erased, batch["view_q"].float() / 255)


def _be_batch(size=6) -> dict:
    batch = _batch(size)
    batch["view_n"] = torch.randint(0, 256, batch["view_q"].shape, generator=torch.Generator().manual_seed(9)).to(
        torch.uint8
    )
    return batch


def test_background_erasing_mixes_the_anchor_only_and_keeps_positive_and_negative():
    """BE as released: the anchor (view_q) gets the static-frame mixing after its colour
    augmentation; the positive (view_k) and the intra-video negative (view_n) are only augmented."""
    batch = _be_batch()
    cpu = torch.device("cpu")
    be = step.views(batch, _config("be"), step.step_generators(0, 5, 0, cpu), cpu)
    assert len(be) == 3
    # With a mixing weight of 0 (be.alpha=0), the anchor is the augmented clip itself.
    unmixed = build(PretrainConfig, _config("be"), {"be": {"alpha": 0.0}})
    plain = step.views(batch, unmixed, step.step_generators(0, 5, 0, cpu), cpu)
    torch.testing.assert_close(be[1], plain[1])
    torch.testing.assert_close(be[2], plain[2])
    assert not torch.allclose(be[0], plain[0])


def test_background_erasing_steps_with_one_pass_and_enqueues_one_batch_of_keys():
    config = _config("be")
    torch.manual_seed(0)
    model, optimizer = step.build_training(config, torch.device("cpu"))
    before = {name: p.detach().clone() for name, p in model.encoder_q.named_parameters()}
    loss, acc1 = step.train_step(
        model,
        optimizer,
        _be_batch(8),
        0.05,
        step.step_generators(0, 0, 0, torch.device("cpu")),
        config,
        torch.device("cpu"),
    )
    assert torch.isfinite(loss) and 0 <= float(acc1) <= 1
    assert int(model.queue_ptr) == 8  # one pass: the positives' keys only
    assert any(not torch.equal(before[n], p) for n, p in model.encoder_q.named_parameters())


def test_a_step_draws_the_same_numbers_for_the_same_seed_step_and_rank():
    batch = _batch()
    config = _config("fame")
    first = step.views(batch, config, step.step_generators(1, 9, 0, torch.device("cpu")), torch.device("cpu"))
    again = step.views(batch, config, step.step_generators(1, 9, 0, torch.device("cpu")), torch.device("cpu"))
    other = step.views(batch, config, step.step_generators(1, 10, 0, torch.device("cpu")), torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])


def test_train_step_learns_something_and_returns_device_scalars():
    config = _config("fame")
    torch.manual_seed(0)
    model, optimizer = step.build_training(config, torch.device("cpu"))
    batch = _batch(size=8)
    losses = []
    for index in range(3):
        loss, acc1 = step.train_step(
            model,
            optimizer,
            batch,
            0.05,
            step.step_generators(0, index, 0, torch.device("cpu")),
            config,
            torch.device("cpu"),
        )
        losses.append(float(loss))
        assert loss.dim() == 0 and 0 <= float(acc1) <= 1
    assert all(torch.isfinite(torch.tensor(losses)))
    assert int(model.queue_ptr) == (3 * 2 * 8) % config.moco.queue_size


def test_flops_per_clip_are_counted_and_grow_with_the_clip():
    """The bench's FLOPs come from torch's counter on a real forward and backward: twice the
    frames, about twice the FLOPs; MFU is only claimed on a GPU whose peak is known."""
    from fame_ray.bench import train as bench_train
    from fame_ray.config import PretrainConfig, build

    cfg = bench_train.bench_config(False, [])
    longer = build(PretrainConfig, cfg, {"data": {"frames_per_clip": 2 * cfg.data.frames_per_clip}})
    flops, double = bench_train.step_flops_per_clip(cfg), bench_train.step_flops_per_clip(longer)
    assert flops > 1e7 and 1.8 < double / flops < 2.2
    on_cpu = bench_train.utilisation(flops, 100.0, None)
    assert abs(on_cpu["achieved_tflops"] - flops * 100 / 1e12) < 1e-12 and "mfu" not in on_cpu
    on_h200 = bench_train.utilisation(flops, 100.0, "NVIDIA H200")
    assert on_h200["peak_bf16_tflops"] == 989.4 and on_h200["mfu"] == on_h200["achieved_tflops"] / 989.4
    assert bench_train.utilisation(flops, 100.0, "Some Other GPU")["mfu"] is None


def _accumulation_run(micro_batch: int, enqueue: str):
    """One train_step of tiny MoCo (BatchNorm in eval mode: features do not depend on which
    clips share a batch) on 8 clips; returns the model, its optimizer, loss, acc@1 and the
    batch sizes the query encoder saw."""
    config = build(
        PretrainConfig,
        presets.demo_pretrain(),
        {
            "method": "fame",
            "data": {"frames_per_clip": 4, "crop_size": 16},
            "moco": {"enqueue": enqueue},
            "train": {"global_batch": 16, "num_workers": 2, "micro_batch": micro_batch},
        },
    )
    torch.manual_seed(0)
    model, optimizer = step.build_training(config, torch.device("cpu"))
    model.eval()
    seen = []
    model.encoder_q.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[0]))
    loss, acc1 = step.train_step(
        model,
        optimizer,
        _batch(size=8),
        0.05,
        step.step_generators(0, 0, 0, torch.device("cpu")),
        config,
        torch.device("cpu"),
    )
    return model, optimizer, loss, acc1, seen


@pytest.mark.parametrize("enqueue", ["between_passes", "after_both"])
def test_micro_batches_give_the_full_batch_step(enqueue):
    """train.micro_batch=4 on a batch of 8: the query encoder sees chunks of 4, yet parameters,
    momentum buffers, key encoder, queue and pointer end where the one-chunk step leaves them."""
    full, full_optimizer, full_loss, full_acc, full_seen = _accumulation_run(0, enqueue)
    micro, micro_optimizer, micro_loss, micro_acc, micro_seen = _accumulation_run(4, enqueue)
    assert full_seen == [8, 8] and micro_seen == [4, 4, 4, 4]  # two passes per chunk
    for (name, expected), actual in zip(full.state_dict().items(), micro.state_dict().values()):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6, msg=name)
    assert int(micro.queue_ptr) == int(full.queue_ptr) == 2 * 8
    for p_full, p_micro in zip(full.parameters(), micro.parameters()):
        if p_full.requires_grad:
            torch.testing.assert_close(p_micro.grad, p_full.grad, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(
                micro_optimizer.state[p_micro]["momentum_buffer"],
                full_optimizer.state[p_full]["momentum_buffer"],
                rtol=1e-5,
                atol=1e-6,
            )
    torch.testing.assert_close(micro_loss, full_loss)
    torch.testing.assert_close(micro_acc, full_acc)


def test_dclr_steps_warm_its_queues_up_first_then_learn():
    """DCLR through the pretraining step: four inputs (two clips, their static frames repeated over
    time), a warm-up step that moves the queues and not the weights, then a step that learns."""
    config = build(
        PretrainConfig,
        presets.demo_pretrain(),
        {
            "method": "dclr",
            "data": {"frames_per_clip": 4, "crop_size": 32},
            "dclr": {"queue_size": 24, "topk": 2},
            "train": {"global_batch": 6, "num_workers": 1, "micro_batch": 0},
        },
    )
    generator = torch.Generator().manual_seed(0)
    batch = {
        "view_q": torch.randint(0, 256, (6, 3, 4, 32, 32), generator=generator, dtype=torch.uint8),
        "view_k": torch.randint(0, 256, (6, 3, 4, 32, 32), generator=generator, dtype=torch.uint8),
        "static_q": torch.randint(0, 256, (6, 3, 32, 32), generator=generator, dtype=torch.uint8),
        "static_k": torch.randint(0, 256, (6, 3, 32, 32), generator=generator, dtype=torch.uint8),
    }
    cpu = torch.device("cpu")
    inputs = step.views(batch, config, step.step_generators(0, 0, 0, cpu), cpu)
    assert len(inputs) == 4 and all(view.shape == (6, 3, 4, 32, 32) for view in inputs)
    assert torch.allclose(inputs[2][:, :, 0], inputs[2][:, :, 3]), "a static view is one frame over time"
    model, optimizer = step.build_training(config, cpu)
    assert step.warmup_steps(config) == config.dclr.warmup_steps
    weights = [p.detach().clone() for p in model.encoder_q.parameters()]
    queues, pointer = model.queues.clone(), int(model.queue_ptr)
    step.train_step(model, optimizer, batch, 0.1, step.step_generators(0, 0, 0, cpu), config, cpu, learn=False)
    assert all(torch.equal(before, after) for before, after in zip(weights, model.encoder_q.parameters()))
    assert int(model.queue_ptr) == pointer + 6 and not torch.equal(queues, model.queues)
    loss, acc1 = step.train_step(model, optimizer, batch, 0.1, step.step_generators(0, 1, 0, cpu), config, cpu)
    assert torch.isfinite(loss) and 0 <= float(acc1) <= 1 and float(loss) < 1e3  # the map term is not in it
    assert any(not torch.equal(before, after) for before, after in zip(weights, model.encoder_q.parameters()))
