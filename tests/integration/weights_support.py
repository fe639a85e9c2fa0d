"""Pretrained weights the downstream integration tests start from, so they need no pretraining."""

from __future__ import annotations


def write_tiny_official_pth(path) -> str:
    """Write the tiny backbone as the official FAME code saves a model (DDP-wrapped MoCo: the query
    encoder under module.encoder_q with its projection head, the key encoder, the queue) and return
    the path: loading keeps the query encoder's backbone (strictly) and drops the rest."""
    import torch

    from fame_ray.models import build_backbone

    backbone = build_backbone("tiny").state_dict()
    state = {f"module.encoder_q.{k}": v for k, v in backbone.items()}
    state.update({f"module.encoder_k.{k}": v.clone() for k, v in backbone.items()})
    state.update(
        {
            "module.encoder_q.fc.0.weight": torch.zeros(128, 128),
            "module.queue": torch.zeros(128, 64),
            "module.queue_ptr": torch.zeros(1, dtype=torch.long),
        }
    )
    torch.save({"epoch": 200, "arch": "tiny", "state_dict": state}, path)
    return str(path)
