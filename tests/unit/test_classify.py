"""The downstream worker's pieces: official finetuning augmentation, plain linear-probe inputs,
and a resume whose optimizer state follows the model onto its device."""

from __future__ import annotations

import pytest
import torch

from fame_ray.config import FinetuneConfig, build, presets
from fame_ray.downstream import classify
from fame_ray.models.backbones import build_backbone
from fame_ray.models.heads import build_classifier
from fame_ray.pretrain import augment


def _config(mode: str) -> FinetuneConfig:
    return build(FinetuneConfig, presets.demo_finetune(), {"mode": mode, "pretrained": "unused"})


def _clips(size=16):
    return torch.randint(0, 256, (size, 3, 4, 16, 16), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)


def test_finetuning_inputs_get_the_official_colour_augmentation():
    clips = _clips()
    plain = augment.to_input(clips, torch.device("cpu"))
    augmented = classify.training_inputs(clips, _config("finetune"), torch.device("cpu"), augment.make_generator(1), augment.make_generator(2))
    changed = [not torch.allclose(augmented[i], plain[i]) for i in range(len(clips))]
    # p(grayscale or jitter) = 1 - 0.8 * 0.2 = 0.84 per clip: most, not all, clips change.
    assert 8 <= sum(changed) < len(clips)
    grey = [torch.allclose(augmented[i, 0] * 0.22803 + 0.43216, augmented[i, 1] * 0.22145 + 0.394666, atol=1e-5) for i in range(len(clips))]
    assert any(grey), "no clip was turned grey"


def test_linear_probe_inputs_are_only_normalised():
    clips = _clips()
    inputs = classify.training_inputs(clips, _config("linear"), torch.device("cpu"), augment.make_generator(1), augment.make_generator(2))
    torch.testing.assert_close(inputs, augment.to_input(clips, torch.device("cpu")))


@pytest.mark.filterwarnings("ignore::UserWarning")  # meta parameters ignore the copied values
def test_a_resumed_optimizer_keeps_its_momentum_on_the_model_device():
    """The worker puts the model on its device before it builds and restores the optimizer;
    here the 'meta' device stands in for a GPU (restored before the move, the momentum
    buffers stayed on the CPU and the first GPU step failed, on every retry)."""
    config = _config("finetune")
    cpu_model = build_classifier(build_backbone("tiny"), 4, "finetune", 0.5)
    optimizer = classify.build_optimizer(cpu_model, 0.1, 1e-4, 0.9)
    cpu_model(torch.rand(2, 3, 4, 16, 16)).sum().backward()
    optimizer.step()
    state = {"model": cpu_model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3}

    model = classify.on_device(build_classifier(build_backbone("tiny"), 4, "finetune", 0.5), config, torch.device("meta"))
    resumed = classify.build_optimizer(model, 0.1, 1e-4, 0.9)
    assert classify.restore(model, resumed, state) == 4
    buffers = [resumed.state[p]["momentum_buffer"] for p in model.parameters() if p in resumed.state]
    assert buffers and all(buffer.device.type == "meta" for buffer in buffers)
