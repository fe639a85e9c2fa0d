"""Load a pretrained backbone: from the official FAME or DCLR code's checkpoints or from fame-ray's.

Official FAME checkpoints (`train.py::save_checkpoint`, `checkpoint_<epoch>.pth.tar`) are a dict
{"epoch", "arch", "state_dict", "optimizer"}; "state_dict" is the DDP-wrapped MoCo:
    module.encoder_q.<backbone names>      the query encoder (what we load)
    module.encoder_q.fc.{0,2}.*            R(2+1)D's MLP head (`fc.*` without --mlp)
    module.encoder_q.id_head.{2,4}.*       I3D's MLP head
    module.encoder_k.*, module.queue, module.queue_ptr
We strip `module.encoder_q.` (or `encoder_q.` when saved without DDP), drop the head keys
and load the rest into our backbone with strict key and shape matching. A finetuned
official checkpoint (keys `module.<backbone names>` and `module.fc.*`) loads the same way.

Official DCLR checkpoints (github.com/Mark12Ding/DCLR, `main_view.py`, same wrapper dict) hold
`MoCo_View`: module.encoder_q.<backbone names>, its five heads module.encoder_q.{fvv,fvs,fvd,
fsv,fdv}.{0,2}.*, module.encoder_k.*, seven module.queue_* and module.queue_ptr. They load the
same way with the five heads dropped (`load_official_dclr_query_encoder`; detected by its heads).
The released code builds its `r2plus1d_18` with one block per stage: such a checkpoint loads
as arch r2plus1d_10, and naming it r2plus1d_18 fails with that hint (docs/dclr.md).

fame-ray checkpoints (fame_ray.checkpoints):
    <storage>/<run>/checkpoint_<step:08d>/state.pt     torch.save dict; "model" = the MoCo
        state_dict (fame_ray.models.moco): encoder_q.backbone.<backbone names>,
        encoder_q.head.*, encoder_k.*, queue, queue_ptr (a leading `module.` is tolerated);
        or the DCLR one (fame_ray.models.dclr): encoder_q.backbone.*, encoder_q.{fvv,...}.*,
        encoder_k.*, queues, queue_ptr; only encoder_q.backbone.* is read from either
    <storage>/<run>/checkpoint_<step:08d>/config.yaml  the resolved PretrainConfig
        (model.arch is checked against the requested arch before loading)
    <storage>/<run>/checkpoint_<step:08d>/meta.json    written last; without it (or without
        state.pt) the checkpoint is incomplete: never chosen, and refused when named directly
A run directory (holding checkpoint_* subdirectories) resolves to its latest complete
checkpoint (`resolve_weights`). Paths may be local or s3:// (fame_ray.storage).

Every file is read with torch's safe loader (`checkpoints.torch_load`, weights_only=True): a
file holding Python objects other than tensors is refused, never executed.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from fame_ray import checkpoints
from fame_ray.errors import UserError
from fame_ray.models.backbones import build_backbone
from fame_ray.storage import Location

logger = logging.getLogger(__name__)

# Projection heads of the official encoders (FAME R(2+1)D: fc; FAME I3D: id_head; DCLR: its
# five heads); never backbone weights.
DCLR_HEAD_PREFIXES = ("fvv.", "fvs.", "fvd.", "fsv.", "fdv.")
HEAD_PREFIXES = ("fc.", "id_head.") + DCLR_HEAD_PREFIXES
_OFFICIAL_PREFIXES = ("module.encoder_q.", "encoder_q.")


def _require_state_dict(state) -> dict:
    """`state` itself when it maps parameter names (strings) to values; a UserError otherwise."""
    if isinstance(state, dict) and all(isinstance(key, str) for key in state):
        return state
    raise UserError(
        "the checkpoint holds no state dict (a mapping of parameter names to tensors)",
        "pass a .pth saved by the official FAME code or a fame-ray checkpoint",
    )


def _unwrap(checkpoint) -> dict:
    """The state dict inside a loaded checkpoint ('state_dict' key or the dict itself)."""
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        return _require_state_dict(checkpoint["state_dict"])
    return _require_state_dict(checkpoint)


def official_backbone_state(state_dict: dict) -> tuple[dict, list[str]]:
    """(backbone state dict, dropped keys) from an official FAME or DCLR state dict."""
    state_dict = _unwrap(state_dict)
    prefix = next((p for p in _OFFICIAL_PREFIXES if any(k.startswith(p) for k in state_dict)), None)
    if prefix is None:
        # A finetuned official model (DDP-wrapped classifier) or a bare backbone.
        prefix = "module." if all(k.startswith("module.") for k in state_dict) else ""
    kept, dropped = {}, []
    for key, value in state_dict.items():
        name = key[len(prefix) :] if key.startswith(prefix) else None
        if name is None or name.startswith(HEAD_PREFIXES):
            dropped.append(key)
        else:
            kept[name] = value
    return kept, dropped


def _names(keys, limit: int = 5) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return f"{shown} (+{len(keys) - limit} more)" if len(keys) > limit else shown


def load_backbone_state(backbone: nn.Module, state: dict, arch: str, source: str = "state dict") -> dict:
    """Load `state` into `backbone` with strict name and shape matching; UserError on mismatch.

    Only `num_batches_tracked` buffers (absent from PyTorch < 0.4.1 checkpoints) may be missing.
    """
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise UserError(
            f"{source} is not a state dict: {len(not_tensors)} entries are not tensors: {_names(not_tensors)}",
            "pass a .pth saved by the official FAME code or a fame-ray checkpoint",
        )
    expected = backbone.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {_names(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {_names(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} of another shape: {_names(shapes, 3)}")
    if problems:
        raise UserError(
            f"{source} does not fit the {arch} backbone, probably a checkpoint of another architecture; "
            + "; ".join(problems),
            "pass the --arch it was trained with",
        )
    filled = {**{k: v for k, v in expected.items() if k not in state}, **state}
    backbone.load_state_dict(filled, strict=True)
    return {"arch": arch, "tensors": len(state), "filled_num_batches_tracked": len(expected) - len(state)}


def official_method(state_dict: dict) -> str:
    """'dclr' when an official state dict's query encoder carries DCLR's heads, else 'fame'."""
    state_dict = _unwrap(state_dict)
    heads = tuple(f"{prefix}{head}" for prefix in (*_OFFICIAL_PREFIXES, "module.", "") for head in DCLR_HEAD_PREFIXES)
    return "dclr" if any(key.startswith(heads) for key in state_dict) else "fame"


def load_official_query_encoder(state_dict: dict, arch: str) -> tuple[nn.Module, dict]:
    """(backbone, report) from a state dict in the official FAME or DCLR layout (`module.encoder_q.*`)."""
    if official_method(state_dict) == "dclr":
        return load_official_dclr_query_encoder(state_dict, arch)
    backbone = build_backbone(arch)
    state, dropped = official_backbone_state(state_dict)
    report = load_backbone_state(backbone, state, arch, "the official checkpoint")
    report.update(format="official", method="fame", dropped=len(dropped), dropped_sample=sorted(dropped)[:5])
    logger.info(
        "loaded %d tensors of an official FAME %s query encoder (%d head/key-encoder keys dropped)",
        len(state),
        arch,
        len(dropped),
    )
    return backbone, report


def load_official_dclr_query_encoder(state_dict: dict, arch: str) -> tuple[nn.Module, dict]:
    """(backbone, report) from an official DCLR state dict: the query encoder's backbone,
    strictly; its heads (fvv, fvs, fvd, fsv, fdv), the key encoder and the queues dropped."""
    if official_method(state_dict) != "dclr":
        raise UserError(
            "the checkpoint is not an official DCLR one (no encoder_q.fvv/fvs/fvd/fsv/fdv heads)",
            "pass a checkpoint saved by the official DCLR main_view.py",
        )
    state, dropped = official_backbone_state(state_dict)
    one_block = "layer1.0.conv1.0.0.weight" in state and not any(k.startswith("layer1.1.") for k in state)
    if arch == "r2plus1d_18" and one_block:
        raise UserError(
            "the official DCLR checkpoint has one block per stage (the released code builds its "
            "'r2plus1d_18' with layers [1, 1, 1, 1]), not R(2+1)D-18's two",
            "pass --arch r2plus1d_10",
        )
    backbone = build_backbone(arch)
    report = load_backbone_state(backbone, state, arch, "the official DCLR checkpoint")
    report.update(format="official", method="dclr", dropped=len(dropped), dropped_sample=sorted(dropped)[:5])
    logger.info(
        "loaded %d tensors of an official DCLR %s query encoder (%d head/key-encoder keys dropped)",
        len(state),
        arch,
        len(dropped),
    )
    return backbone, report


def fame_ray_backbone_state(model_state: dict) -> dict:
    """The query-encoder backbone of a fame-ray MoCo or DCLR state dict (`encoder_q.backbone.*`)."""
    _require_state_dict(model_state)
    prefixes = ("module.encoder_q.backbone.", "encoder_q.backbone.")
    prefix = next((p for p in prefixes if any(k.startswith(p) for k in model_state)), None)
    if prefix is None:
        raise UserError(
            "the fame-ray checkpoint has no query encoder (no 'encoder_q.backbone.*' keys)",
            "pass a checkpoint written by `fame-ray pretrain`",
        )
    return {k[len(prefix) :]: v for k, v in model_state.items() if k.startswith(prefix)}


def _fame_ray_model_state(checkpoint, where: str) -> dict:
    """The "model" state dict of a loaded fame-ray state.pt."""
    model = checkpoint.get("model") if isinstance(checkpoint, dict) else None
    if not isinstance(model, dict):
        raise UserError(
            f"{where} holds no fame-ray model state (a dict with a 'model' state dict)",
            "pass a checkpoint written by `fame-ray pretrain`, or its run directory",
        )
    return model


def resolve_weights(weights: Location) -> tuple[str, Location]:
    """('file', it) for a single torch file, ('checkpoint', dir) for a fame-ray checkpoint dir
    (a run directory resolves to its latest complete checkpoint)."""
    if not weights.exists():
        raise UserError(f"pretrained weights not found: {weights}", "check the path (local or s3://) and --s3-endpoint")
    if weights.is_file():
        return "file", weights
    if (weights / checkpoints.STATE_FILE).exists():
        if checkpoints.complete_meta(weights) is None:
            raise UserError(
                (
                    f"{weights} is an incomplete checkpoint (no valid {checkpoints.META_FILE}: its save or upload "
                    "was cut off)"
                ),
                "pass the run directory (its latest complete checkpoint is taken) or a complete checkpoint_* directory",
            )
        return "checkpoint", weights
    latest = checkpoints.latest_complete(weights)
    if latest is None:
        raise UserError(
            f"{weights} holds no complete fame-ray checkpoint",
            "pass a checkpoint_* directory, a run directory with one, or an official .pth file",
        )
    return "checkpoint", latest.location


def _checkpoint_arch(checkpoint: Location) -> str:
    if not (checkpoint / checkpoints.CONFIG_FILE).exists():
        return ""
    arch = (checkpoints.read_config(checkpoint).get("model") or {}).get("arch", "")
    return arch if isinstance(arch, str) else ""


def load_pretrained_backbone(weights: Location, arch: str) -> tuple[nn.Module, dict]:
    """(backbone, report) from a fame-ray checkpoint/run dir (MoCo or DCLR) or an official FAME or
    DCLR .pth (local or s3://).

    `arch` must be the checkpoint's; an empty `arch` takes it from a fame-ray checkpoint's
    config. A mismatch is a UserError that names the two architectures (or the keys).
    """
    kind, where = resolve_weights(weights)
    uri = where.uri
    if kind == "file":
        if not arch:
            raise UserError(
                "an official FAME or DCLR checkpoint does not say its architecture",
                "pass --arch (i3d or r2plus1d_18; r2plus1d_10 for the released DCLR code's net)",
            )
        checkpoint = checkpoints.torch_load(where.read_bytes(), uri)
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict):
            state, source = fame_ray_backbone_state(checkpoint["model"]), "fame-ray"
        else:
            backbone, report = load_official_query_encoder(checkpoint, arch)
            return backbone, {**report, "source": uri}
    else:
        saved_arch = _checkpoint_arch(where)
        if saved_arch and arch and saved_arch != arch:
            raise UserError(f"the checkpoint {uri} is a {saved_arch} model, not {arch}", f"pass --arch {saved_arch}")
        arch = arch or saved_arch
        state_file = where / checkpoints.STATE_FILE
        checkpoint = checkpoints.torch_load(state_file.read_bytes(), state_file.uri)
        state, source = fame_ray_backbone_state(_fame_ray_model_state(checkpoint, state_file.uri)), "fame-ray"
    backbone = build_backbone(arch)
    report = load_backbone_state(backbone, state, arch, f"the {source} checkpoint")
    report.update(format=source, source=uri, step=checkpoint.get("step"))
    logger.info("loaded the %s backbone of %s (step %s)", arch, uri, checkpoint.get("step"))
    return backbone, report
