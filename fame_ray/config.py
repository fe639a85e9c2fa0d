"""One typed config tree: dataclasses with a docstring per field, validated on creation.

The config flows one way: CLI -> config -> `train_loop_config` (as a plain dict) ->
rebuilt with `from_dict` as the first line of every Ray worker function. It is saved
beside every checkpoint, so a run can be resumed or reproduced from storage alone.

Defaults are the official FAME recipe (../shared/FAME.md); named presets (`PRESETS`)
return complete configs for the demo and the paper's settings.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fame_ray.errors import ConfigError

DATASETS = ("synthetic", "ucf101", "hmdb51", "diving48", "kinetics400", "folder", "csv")
ARCHS = ("tiny", "r3d_18", "r2plus1d_18", "i3d")
# Folder name of each dataset under the data home, as its publisher ships it.
DATASET_DIRS = {
    "synthetic": "synthetic",
    "ucf101": "UCF101",
    "hmdb51": "hmdb51",
    "diving48": "Diving48",
    "kinetics400": "kinetics400",
}
# Classes per dataset; used to check split files against what the dataset should hold.
NUM_CLASSES = {"ucf101": 101, "hmdb51": 51, "diving48": 48, "kinetics400": 400}
# Kinetics-400 statistics, as used by the official code for normalisation.
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


def data_home() -> str:
    """Where datasets live when no --data-root is given: $FAME_RAY_DATA (a folder or an
    s3:// prefix) or ~/fame-ray-data."""
    home = os.environ.get("FAME_RAY_DATA", "") or str(Path.home() / "fame-ray-data")
    return home.rstrip("/") if "://" in home else str(Path(home).expanduser())


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass
class DataConfig:
    """Which videos, and how clips are cut from them."""

    dataset: str = "synthetic"
    """Dataset name: one of DATASETS ('synthetic' is written on first use)."""
    data_root: str = ""
    """Dataset folder or s3:// prefix; empty means <data home>/<dataset folder>."""
    split: int = 1
    """Official split (1..3 for UCF101 and HMDB51; 1 for the others)."""
    manifest_dir: str = ""
    """Where Parquet manifests are written and read; empty means <data_root>/.fame-ray."""
    csv_path: str = ""
    """For dataset 'csv': the `path,label` list file."""
    frames_per_clip: int = 16
    """Frames in one clip (official: 16)."""
    temporal_stride: int = 2
    """Take every n-th frame inside a clip (official: 2)."""
    crop_size: int = 112
    """Side of the square training crop, in pixels."""
    crop_scale: tuple[float, float] = (0.2, 1.0)
    """Area range of the random resized crop (official: 0.2 to 1)."""
    eval_clips: int = 10
    """Clips per video at test time, uniformly spaced (official: 10)."""
    decode_threads: int = 1
    """decord threads per decoding task."""
    data_cpus: float = 0.0
    """CPUs kept for Ray Data's decode/FAME tasks; 0 = what training workers leave free."""

    def __post_init__(self):
        self.crop_scale = tuple(float(v) for v in self.crop_scale)
        _check(self.dataset in DATASETS, f"unknown dataset '{self.dataset}': expected one of {', '.join(DATASETS)}")
        _check(self.split in (1, 2, 3), f"data.split must be 1, 2 or 3, got {self.split}")
        _check(self.frames_per_clip > 0, f"data.frames_per_clip must be positive, got {self.frames_per_clip}")
        _check(self.temporal_stride > 0, f"data.temporal_stride must be positive, got {self.temporal_stride}")
        _check(self.crop_size >= 8, f"data.crop_size must be at least 8, got {self.crop_size}")
        low, high = self.crop_scale
        _check(len(self.crop_scale) == 2 and 0 < low <= high <= 1, f"data.crop_scale must be (low, high) with 0 < low <= high <= 1, got {self.crop_scale}")
        _check(self.eval_clips > 0, f"data.eval_clips must be positive, got {self.eval_clips}")
        _check(self.decode_threads >= 0, "data.decode_threads must be >= 0")
        _check(self.data_cpus >= 0, "data.data_cpus must be >= 0")
        _check(self.dataset != "csv" or bool(self.csv_path), "dataset 'csv' needs data.csv_path (--csv FILE)")

    @property
    def clip_span(self) -> int:
        """Frames of the source video one clip covers."""
        return (self.frames_per_clip - 1) * self.temporal_stride + 1

    def resolved_root(self) -> str:
        """The data root, with the documented default filled in."""
        if self.data_root:
            return self.data_root if "://" in self.data_root else str(Path(self.data_root).expanduser())
        return f"{data_home()}/{DATASET_DIRS.get(self.dataset, self.dataset)}"


@dataclass
class FameConfig:
    """Foreground-background merging (FAME.md)."""

    enabled: bool = True
    """Off gives the plain MoCo baseline."""
    beta: float = 0.5
    """Share of pixels kept as foreground (official: 0.5)."""

    def __post_init__(self):
        _check(0 < self.beta <= 1, f"fame.beta must be in (0, 1], got {self.beta}")


@dataclass
class ModelConfig:
    """Backbone and projection head."""

    arch: str = "r2plus1d_18"
    """Backbone: one of ARCHS."""
    mlp_head: bool | None = None
    """MLP projection head (Linear-ReLU-Linear); None = the official choice, on for every arch.

    The official train.py passes mlp=False for I3D, but that flag only replaces an `fc`
    layer; its I3D pretrains through `id_head` (pool, Linear 1024-1024, ReLU, Linear
    1024-128), which is an MLP head all the same (backbone/i3d.py of Mark12Ding/FAME)."""
    embed_dim: int = 128
    """Output dimension of the projection (official: 128)."""

    def __post_init__(self):
        _check(self.arch in ARCHS, f"unknown arch '{self.arch}': expected one of {', '.join(ARCHS)}")
        _check(self.embed_dim > 0, "model.embed_dim must be positive")

    @property
    def use_mlp_head(self) -> bool:
        return self.mlp_head if self.mlp_head is not None else True


@dataclass
class MoCoConfig:
    """MoCo v2 as the official FAME code runs it."""

    queue_size: int = 65536
    """Negatives in the queue K (official: 65536 for Kinetics-400, 2048 for UCF101)."""
    momentum: float = 0.999
    """Key encoder momentum m."""
    temperature: float = 0.1
    """Softmax temperature."""
    symmetric: bool = True
    """Symmetric loss: (q=fused, k=plain) and (q=plain, k=fused), averaged."""
    shuffle_bn: bool = True
    """Shuffle the key batch across workers before the key encoder (shuffle-BN)."""

    def __post_init__(self):
        _check(self.queue_size > 0, "moco.queue_size must be positive")
        _check(0 <= self.momentum < 1, "moco.momentum must be in [0, 1)")
        _check(self.temperature > 0, "moco.temperature must be positive")


@dataclass
class OptimConfig:
    """SGD and its schedule."""

    lr: float = 0.01
    """Learning rate at `base_batch` (official: 0.01 at batch 64); scaled linearly by global batch."""
    base_batch: int = 64
    """Global batch at which `lr` applies."""
    momentum: float = 0.9
    """SGD momentum."""
    weight_decay: float = 1e-4
    """SGD weight decay."""
    schedule: str = "cosine"
    """'cosine' (official) or 'step' (milestones below, x0.1 each)."""
    milestones: tuple[int, ...] = (120, 160)
    """Epochs at which the 'step' schedule divides lr by 10."""
    warmup_epochs: float = 0.0
    """Linear warmup length in epochs (the official recipe has none)."""

    def __post_init__(self):
        self.milestones = tuple(int(m) for m in self.milestones)
        _check(self.lr > 0, f"optim.lr must be positive, got {self.lr}")
        _check(self.base_batch > 0, "optim.base_batch must be positive")
        _check(self.schedule in ("cosine", "step"), f"optim.schedule must be 'cosine' or 'step', got '{self.schedule}'")
        _check(self.warmup_epochs >= 0, "optim.warmup_epochs must be >= 0")
        _check(self.weight_decay >= 0, "optim.weight_decay must be >= 0")


@dataclass
class TrainConfig:
    """The Ray Train run: workers, batch, length, precision, checkpoints."""

    epochs: int = 200
    """Passes over the training split (official: 200)."""
    max_steps: int = 0
    """Stop after this many optimizer steps (0 = run all epochs)."""
    global_batch: int = 64
    """Clips per step over all workers (official: 64); kept when the worker count changes."""
    num_workers: int = 1
    """Training workers (the maximum when elastic)."""
    min_workers: int = 0
    """Elastic lower bound; 0 = fixed at num_workers."""
    use_gpu: bool = False
    """One GPU per worker, nccl, bf16 autocast."""
    cpus_per_worker: float = 0.0
    """CPUs each training worker holds; 0 = sized so Ray Data always keeps CPUs."""
    amp: bool = True
    """bf16 autocast on GPU (ignored on CPU)."""
    channels_last: bool = True
    """channels-last 3D memory format on GPU."""
    compile: bool = False
    """torch.compile the encoders."""
    checkpoint_every: int = 200
    """Save a checkpoint every N steps (and always at the end)."""
    keep_checkpoints: int = 3
    """How many checkpoints storage keeps."""
    log_every: int = 10
    """Steps between progress lines and metric records."""
    max_failures: int = 3
    """Worker-group failures retried from the latest checkpoint (-1 = forever)."""
    seed: int = 0
    """Seed of every random generator (per worker offset by rank)."""
    async_checkpoint: bool = True
    """Upload checkpoints in the background (Ray Train's ASYNC mode); a failed upload fails the run attempt."""
    elastic_resize_s: float = 60.0
    """Elastic runs: seconds between checks whether more workers fit (Ray Train's resize interval)."""
    worker_resources: dict = field(default_factory=dict)
    """Extra Ray resources each training worker holds, e.g. {'trainer_slot': 1} to pin workers to nodes."""

    def __post_init__(self):
        _check(self.elastic_resize_s >= 0, "train.elastic_resize_s must be >= 0")
        _check(self.epochs > 0, "train.epochs must be positive")
        _check(self.max_steps >= 0, "train.max_steps must be >= 0")
        _check(self.global_batch > 0, "train.global_batch must be positive")
        _check(self.num_workers > 0, "train.num_workers must be positive")
        _check(0 <= self.min_workers <= self.num_workers, "train.min_workers must be between 0 and num_workers")
        _check(self.global_batch >= self.num_workers, f"train.global_batch ({self.global_batch}) is smaller than the number of workers ({self.num_workers}): give each worker at least one clip")
        _check(self.cpus_per_worker >= 0, "train.cpus_per_worker must be >= 0")
        _check(self.checkpoint_every > 0, "train.checkpoint_every must be positive")
        _check(self.keep_checkpoints > 0, "train.keep_checkpoints must be positive")
        _check(self.log_every > 0, "train.log_every must be positive")


@dataclass
class StorageConfig:
    """Where runs live: a local folder or an S3-compatible prefix."""

    path: str = ""
    """Runs root: local path or s3://bucket/prefix; empty = ./fame-ray-runs."""
    s3_endpoint: str = ""
    """S3 endpoint URL (MinIO, Ceph, R2...); empty = AWS_ENDPOINT_URL or AWS itself."""
    run_name: str = ""
    """Run name; the same name resumes the run. Empty = derived from dataset and arch."""
    resume: str = ""
    """Resume this existing run (an error if it does not exist)."""

    def resolved_path(self) -> str:
        if not self.path:
            return str(Path("fame-ray-runs").absolute())
        return self.path if "://" in self.path else str(Path(self.path).expanduser().absolute())


@dataclass
class PretrainConfig:
    """Everything a pretraining run needs."""

    data: DataConfig = field(default_factory=DataConfig)
    fame: FameConfig = field(default_factory=FameConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    moco: MoCoConfig = field(default_factory=MoCoConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    preset: str = ""
    """Name of the preset this config started from."""

    def __post_init__(self):
        global_batch = self.train.global_batch
        _check(self.moco.queue_size % global_batch == 0, f"moco.queue_size ({self.moco.queue_size}) must be divisible by train.global_batch ({global_batch}), as the official code asserts")

    def run_name(self) -> str:
        return self.storage.run_name or f"pretrain-{self.data.dataset}-{self.model.arch}"


@dataclass
class FinetuneConfig:
    """Downstream finetune / linear probe / retrieval (official protocol in FAME.md)."""

    data: DataConfig = field(default_factory=lambda: DataConfig(dataset="ucf101"))
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=150, global_batch=128, checkpoint_every=1000))
    storage: StorageConfig = field(default_factory=StorageConfig)
    pretrained: str = ""
    """Pretrained weights: a fame-ray checkpoint (local or s3://) or an official FAME .pth."""
    mode: str = "finetune"
    """'finetune' (all layers) or 'linear' (frozen backbone, linear classifier)."""
    lr: float = 0.025
    """Learning rate (official finetune: 0.025)."""
    weight_decay: float = 1e-4
    """SGD weight decay (official: 1e-4)."""
    momentum: float = 0.9
    """SGD momentum."""
    dropout: float = 0.7
    """Dropout before the classifier (official: 0.7)."""
    milestones: tuple[int, ...] = (60, 120)
    """Epochs at which lr is divided by 10 (official: 60, 120)."""
    samples: int = 1
    """Ray Tune trials."""
    search_space: dict = field(default_factory=dict)
    """Tune search space: {param: [values]} (grid) or {param: {loguniform|uniform|choice: ...}}."""
    max_concurrent: int = 0
    """Trials at once; 0 = as many as the cluster fits."""
    trial_failures: int = 1
    """Retries of a failed trial before it is reported as failed."""
    preset: str = ""

    def __post_init__(self):
        self.milestones = tuple(int(m) for m in self.milestones)
        _check(self.mode in ("finetune", "linear"), f"mode must be 'finetune' or 'linear', got '{self.mode}'")
        _check(self.lr > 0, "lr must be positive")
        _check(0 <= self.dropout < 1, "dropout must be in [0, 1)")
        _check(self.samples > 0, "samples must be positive")
        _check(self.dataset_ok(), f"dataset '{self.data.dataset}' has no labels to finetune on")

    def dataset_ok(self) -> bool:
        return self.data.dataset in DATASETS

    def run_name(self) -> str:
        return self.storage.run_name or f"{self.mode}-{self.data.dataset}-split{self.data.split}-{self.model.arch}"


# ---------------------------------------------------------------------------------------
# dict <-> dataclass, YAML, overrides


def to_dict(config: Any) -> dict:
    """A plain, YAML- and JSON-safe dict (tuples become lists)."""

    def plain(value):
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(config))


def _nested_type(cls, name):
    hints = typing.get_type_hints(cls)
    hint = hints[name]
    return hint if dataclasses.is_dataclass(hint) else None


def from_dict(cls, values: dict | None, where: str = ""):
    """Build `cls` from a nested dict; unknown keys are an error that suggests the right one."""
    values = dict(values or {})
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{where}{close[0]}'?" if close else f"; known keys: {', '.join(known)}"
            raise ConfigError(f"unknown config key '{where}{key}'{hint}")
        nested = _nested_type(cls, key)
        if nested is not None:
            if not isinstance(value, dict):
                raise ConfigError(f"config key '{where}{key}' must be a mapping")
            kwargs[key] = from_dict(nested, value, where=f"{where}{key}.")
        else:
            kwargs[key] = _coerce(cls, key, value, where)
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ConfigError(f"bad config for '{where or cls.__name__}': {error}") from None


def _coerce(cls, key: str, value: Any, where: str):
    """Check a leaf value against its annotation (bool, int, float, str, tuple, dict)."""
    hint = typing.get_type_hints(cls)[key]
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    name = f"{where}{key}"
    try:
        if hint is bool:
            if isinstance(value, str):
                lowered = value.lower()
                if lowered not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                    raise ValueError(value)
                return lowered in ("true", "1", "yes", "on")
            if not isinstance(value, (bool, int)):
                raise ValueError(value)
            return bool(value)
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if hint is float:
            return float(value)
        if hint is str:
            return str(value)
        if origin is tuple:
            if isinstance(value, str):
                value = [v for v in value.replace("[", "").replace("]", "").split(",") if v.strip()]
            item = args[0] if args else str
            return tuple(item(v) for v in value)
        if origin is dict or hint is dict:
            if isinstance(value, str):
                value = yaml.safe_load(value)
            if not isinstance(value, dict):
                raise ValueError(value)
            return value
    except (TypeError, ValueError):
        raise ConfigError(f"config key '{name}' has a bad value {value!r} (expected {getattr(hint, '__name__', hint)})") from None
    return value


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Apply `section.key=value` strings (values parsed as YAML) to a nested dict."""
    values = dict(values)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value (e.g. train.epochs=5)")
        dotted, raw = item.split("=", 1)
        parsed = yaml.safe_load(raw) if raw else ""
        node = values
        parts = dotted.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        node[parts[-1]] = parsed
    return values


def merge(base: dict, update: dict) -> dict:
    """Deep-merge `update` into a copy of `base`."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_yaml(path: str | Path) -> dict:
    """Read a YAML config file into a dict (an error names the file if it is missing or bad)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist", "give the path of a YAML file, e.g. jobs/pretrain-ucf101-r21d.yaml")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return values


# ---------------------------------------------------------------------------------------
# named presets: complete configs


def demo_pretrain() -> dict:
    """A few minutes on 2 CPUs: tiny backbone on the built-in synthetic dataset."""
    return {
        "preset": "demo",
        "data": {"dataset": "synthetic", "frames_per_clip": 8, "temporal_stride": 2, "crop_size": 64, "eval_clips": 2},
        "model": {"arch": "tiny", "mlp_head": True},
        "moco": {"queue_size": 512},
        "optim": {"lr": 0.05, "base_batch": 16, "warmup_epochs": 1},
        "train": {"epochs": 6, "global_batch": 16, "num_workers": 2, "checkpoint_every": 20, "log_every": 5},
    }


def ucf101_r21d_pretrain() -> dict:
    """UCF101 pretraining with R(2+1)D-18 at 16x112x112 (K=2048, as the official code)."""
    return {
        "preset": "ucf101-r21d",
        "data": {"dataset": "ucf101", "crop_size": 112},
        "model": {"arch": "r2plus1d_18"},
        "moco": {"queue_size": 2048},
        "train": {"epochs": 200, "global_batch": 64},
    }


def k400_i3d_pretrain() -> dict:
    """Kinetics-400 pretraining with I3D at 16x224x224, the paper's headline setting."""
    return {
        "preset": "k400-i3d",
        "data": {"dataset": "kinetics400", "crop_size": 224},
        "model": {"arch": "i3d"},
        "moco": {"queue_size": 65536},
        "train": {"epochs": 200, "global_batch": 64, "num_workers": 8, "use_gpu": True},
    }


def demo_finetune() -> dict:
    """Finetune the tiny backbone on the synthetic dataset in a few minutes on CPU."""
    return {
        "preset": "demo",
        "data": {"dataset": "synthetic", "frames_per_clip": 8, "crop_size": 64, "eval_clips": 2},
        "model": {"arch": "tiny"},
        "train": {"epochs": 3, "global_batch": 16, "num_workers": 1, "log_every": 5},
        "lr": 0.05,
        "dropout": 0.5,
        "milestones": [2],
    }


PRETRAIN_PRESETS = {"demo": demo_pretrain, "ucf101-r21d": ucf101_r21d_pretrain, "k400-i3d": k400_i3d_pretrain, "recipe": lambda: {"preset": "recipe"}}
FINETUNE_PRESETS = {"demo": demo_finetune, "recipe": lambda: {"preset": "recipe"}}


def preset(table: dict, name: str) -> dict:
    if name not in table:
        raise ConfigError(f"unknown preset '{name}': expected one of {', '.join(table)}")
    return table[name]()


def build(cls, preset_values: dict, file_values: dict | None = None, flag_values: dict | None = None, overrides: list[str] | None = None):
    """Preset, then YAML file, then CLI flags, then `key=value` overrides; validated once."""
    values = merge(preset_values, file_values or {})
    values = merge(values, flag_values or {})
    values = apply_overrides(values, overrides or [])
    return from_dict(cls, values)
