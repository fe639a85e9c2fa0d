"""Checks a downstream run makes before any trial starts, and what it reads up front.

Every bad input ends here as one `UserError` (the CLI prints one line, exits 2): a dataset
that is not where it should be (with where to get it), a pretrained checkpoint that does
not exist or holds another architecture, labels that do not match the class list, a batch
whose workers cannot fit the nodes' memory (`micro_batch_for`, once Ray is up, which also
resolves `train.micro_batch: auto`).
Also reads the pretraining recipe from the checkpoint's config.yaml, for the results table.
"""

from __future__ import annotations

import dataclasses
import logging
import math

from fame_ray import checkpoints
from fame_ray.config import DATASET_DIRS, FinetuneConfig, ModelConfig
from fame_ray.data import catalog, manifest, ready
from fame_ray.data.catalog.datasets import DATASET_SOURCES
from fame_ray.errors import UserError
from fame_ray.models import memory
from fame_ray.models.loading import load_pretrained_backbone
from fame_ray.storage import Location

log = logging.getLogger(__name__)


def check_data_root(cfg: FinetuneConfig) -> Location:
    """The dataset root, after checking it exists ('synthetic' is written on first use)."""
    data, root = cfg.data, cfg.data_location()
    if data.dataset in ("synthetic", "csv") or root.exists():
        return root
    source = DATASET_SOURCES.get(data.dataset)
    where = f"get it from {source} and " if source else ""
    folder = DATASET_DIRS.get(data.dataset, data.dataset)
    raise UserError(
        f"{data.dataset} not found at {root}",
        (
            f"{where}lay it out as README.md 'Datasets' shows ({folder}/ with the official split files), then pass "
            "--data-root DIR or set $FAME_RAY_DATA"
        ),
    )


def check_pretrained(cfg: FinetuneConfig) -> Location:
    """The pretrained weights, after checking something is stored there."""
    if not cfg.pretrained:
        raise UserError(
            "no pretrained weights given",
            "pass --pretrained RUN_DIR, CHECKPOINT_DIR, s3://... or an official FAME .pth",
        )
    weights = cfg.pretrained_location()
    if not weights.exists():
        raise UserError(
            f"pretrained checkpoint {cfg.pretrained} does not exist",
            "give a fame-ray run or checkpoint directory (local or s3://) or an official FAME .pth file",
        )
    return weights


def checkpoint_config(weights: Location) -> tuple[dict, Location | None]:
    """(config.yaml of the checkpoint, the checkpoint dir it came from); ({}, None) when none.

    `weights` may be a checkpoint directory, a run directory (its latest complete checkpoint),
    or a file (an official .pth: no config).
    """
    if (weights / checkpoints.CONFIG_FILE).exists():
        return checkpoints.read_config(weights), weights
    latest = checkpoints.latest_complete(weights) if not weights.uri.endswith((".pth", ".pt", ".tar")) else None
    if latest is not None:
        return checkpoints.read_config(latest.location), latest.location
    return {}, None


def pretrain_recipe(config: dict, meta: dict | None = None) -> dict:
    """The settings that explain gaps between runs (schedule, MLP head, K, ...)."""
    if not config:
        return {}
    model, optim, train, moco, fame, data = (
        config.get(k) or {} for k in ("model", "optim", "train", "moco", "fame", "data")
    )
    mlp = model.get("mlp_head")
    recipe = {
        "dataset": data.get("dataset"),
        "arch": model.get("arch"),
        "epochs": train.get("epochs"),
        "global_batch": train.get("global_batch"),
        "lr": optim.get("lr"),
        "schedule": optim.get("schedule") if optim.get("schedule") != "step" else f"step {optim.get('milestones')}",
        # The same rule as the config's: an unset mlp_head means the official choice (on for every arch).
        "mlp_head": ModelConfig(mlp_head=mlp).use_mlp_head,
        "queue_size": moco.get("queue_size"),
        "fame": fame.get("enabled"),
        "fame_beta": fame.get("beta"),
        "crop_size": data.get("crop_size"),
        "frames_per_clip": data.get("frames_per_clip"),
    }
    if meta and "step" in meta:
        recipe["steps"] = meta["step"]
    return {k: v for k, v in recipe.items() if v is not None}


def resolve_arch(given: str | None, ckpt_config: dict, default: str) -> str:
    """--arch if given, else the checkpoint's model.arch, else the config default."""
    from_checkpoint = (ckpt_config.get("model") or {}).get("arch")
    if given and from_checkpoint and given != from_checkpoint:
        raise UserError(
            f"--arch {given} does not match the checkpoint, which holds a {from_checkpoint} backbone",
            f"drop --arch or use --arch {from_checkpoint}",
        )
    return given or from_checkpoint or default


def load_backbone(weights: Location, arch: str):
    """Load the query encoder (strict key matching); a mismatch is a UserError naming keys."""
    try:
        return load_pretrained_backbone(weights, arch)
    except UserError:
        raise
    except (RuntimeError, KeyError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"cannot load {weights} as a {arch} backbone: {first}",
            "check --arch against the checkpoint (fame-ray runs show RUN prints its arch)",
        ) from None


def check_labels(num_classes: int, tables: dict) -> None:
    """Every manifest label must index the class list; both subsets must be non-empty.

    `tables`: {'train': pyarrow Table, 'test': ...} with a 'label' column.
    """
    for subset, table in tables.items():
        if table.num_rows == 0:
            raise UserError(
                f"the {subset} split lists no usable videos",
                "check the split files and the videos they name (fame-ray data prepare shows what was skipped)",
            )
        labels = table.column("label").to_pylist()
        bad = sorted({label for label in labels if not 0 <= label < num_classes})
        if bad:
            raise UserError(
                f"the {subset} split uses class indices {bad[:5]} but the class list has {num_classes} classes",
                "use split files and the class list of the same release",
            )


def micro_batch_for(cfg: FinetuneConfig, num_classes: int, node_memory: list[float]) -> FinetuneConfig:
    """`cfg` with the micro batch its trials take: `train.micro_batch: auto` resolved to the largest
    that fits a node by the estimate (fame_ray.models.memory, one log line), a number kept after
    checking that it fits (refused with the one that would). `node_memory`: bytes of each node
    that can host a worker (runtime.node_memory). GPU runs keep their activations in GPU memory,
    which Ray does not report: no check, and 'auto' takes the whole batch at once."""
    requested = cfg.train.micro_batch
    if cfg.train.use_gpu:
        log.info(
            "finetune on GPUs: activations live in GPU memory, which Ray does not report: memory check skipped%s",
            "; train.micro_batch auto: the whole per-worker batch at once" if requested == "auto" else "",
        )
        micro = 0 if requested == "auto" else requested
    else:
        micro = memory.choose_micro_batch(
            workload(cfg, num_classes), [placement(cfg, node_memory)], requested, node_memory
        )
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, micro_batch=micro))


def workload(cfg: FinetuneConfig, num_classes: int) -> memory.Workload:
    """What one worker of a trial runs, for the memory estimate."""
    task = "finetune" if cfg.mode == "finetune" else "linear"
    return memory.Workload(task, cfg.model.arch, cfg.data.frames_per_clip, cfg.data.crop_size, classes=num_classes)


def placement(cfg: FinetuneConfig, node_memory: list[float]) -> memory.Placement:
    """A trial's per-worker batch, and how many of its workers share a node (spread over all)."""
    batch, _ = cfg.train.split_batch(cfg.train.num_workers)
    return memory.Placement(batch, math.ceil(cfg.train.num_workers / max(len(node_memory), 1)))


def prepare(cfg: FinetuneConfig, explicit_arch: str | None = None):
    """All up-front work of a downstream run, in the order that fails fastest.

    Returns (cfg with the backbone's arch filled in, info dict: class_names, manifests,
    recipe, checkpoint_dir, load_report). Raises UserError before anything is launched.
    """
    check_data_root(cfg)
    weights = check_pretrained(cfg)
    ckpt_config, ckpt_dir = checkpoint_config(weights)
    arch = resolve_arch(explicit_arch, ckpt_config, cfg.model.arch)
    cfg = dataclasses.replace(cfg, pretrained=weights.uri, model=dataclasses.replace(cfg.model, arch=arch))
    _, load_report = load_backbone(weights, arch)
    source = cfg.data_location()
    manifests = ready.manifests(cfg.data, source)  # rebuilt here if the dataset changed since
    class_names = catalog.class_names(cfg.data, source)
    check_labels(len(class_names), {subset: manifest.read(location) for subset, location in manifests.items()})
    meta = _checkpoint_meta(ckpt_dir)
    info = {
        "class_names": class_names,
        "manifests": manifests,
        "recipe": pretrain_recipe(ckpt_config, meta),
        "checkpoint_dir": (ckpt_dir or weights).uri,
        "load_report": _plain(load_report),
    }
    return cfg, info


def _checkpoint_meta(ckpt_dir: Location | None) -> dict:
    if ckpt_dir is None:
        return {}
    try:
        return checkpoints.read_meta(ckpt_dir)
    except (OSError, ValueError):
        return {}


def _plain(report):
    """A loading report as JSON-safe data (dict, dataclass or text)."""
    if dataclasses.is_dataclass(report):
        report = dataclasses.asdict(report)
    if isinstance(report, dict):
        return {str(k): (list(v) if isinstance(v, (set, tuple)) else v) for k, v in report.items()}
    return str(report) if report is not None else None
