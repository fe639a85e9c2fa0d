"""The config tree: typed dataclasses with a docstring per field, validated on creation.

The config flows one way: CLI flags -> `config.build` (preset, YAML, flags, `--set`) -> a typed
`PretrainConfig` / `FinetuneConfig` -> handed to the Ray workers as the object itself, next to
the run plan the driver derives from it. It is saved beside every checkpoint (`to_dict`), so a
run can be resumed or reproduced from storage alone.

Defaults are the official FAME recipe (see `fame_ray.data.clips.fame` and the README); named presets
(`fame_ray.config.presets`) return complete configs for the demo and the paper's settings.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from fame_ray.errors import ConfigError, UserError
from fame_ray.storage import Location, check_endpoint, check_uri, endpoint_url

DATASETS = ("synthetic", "ucf101", "hmdb51", "diving48", "kinetics400", "folder", "csv")
ARCHS = ("tiny", "r3d_18", "r2plus1d_18", "i3d")
STREAMS = ("tasks", "ray_data")  # data.stream: how a pretraining worker's rows are made
# Folder name of each dataset under the data home, as its publisher ships it.
DATASET_DIRS = {
    "synthetic": "synthetic",
    "ucf101": "UCF101",
    "hmdb51": "hmdb51",
    "diving48": "Diving48",
    "kinetics400": "kinetics400",
}

# A run lives in <storage>/<run name>/. Only a plain folder name keeps it there ('../x', '/x' and
# 'a/b' would put it elsewhere); no leading '.', so it is never '.', '..' or hidden.
RUN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
# Ray resources the resource plan sets itself (train.cpus_per_worker, train.use_gpu).
PLANNED_RESOURCES = ("CPU", "GPU")
# train.micro_batch: the largest micro batch the node's memory fits, chosen when the run is planned.
MICRO_BATCH_AUTO = "auto"


def data_home() -> str:
    """Where datasets live when no --data-root is given: $FAME_RAY_DATA (a folder or an
    s3:// prefix) or ~/fame-ray-data."""
    home = os.environ.get("FAME_RAY_DATA", "") or str(Path.home() / "fame-ray-data")
    return home.rstrip("/") if "://" in home else str(Path(home).expanduser())


def _check(condition: bool, message: str, hint: str = "") -> None:
    if not condition:
        raise ConfigError(message, hint)


def _check_finite(config, section: str) -> None:
    """Every float of a config section (a float key, or a number in a tuple of floats) is
    finite. inf passes checks such as `lr > 0` and `decode_timeout_s >= 0` and then breaks the
    run far from the flag (an inf timeout overflows the decode deadline); nan fails them with a
    puzzling message. No key takes inf or nan today: one that should would say so in its
    docstring and be left out here. Called first in every section's __post_init__."""
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        for number in value if isinstance(value, tuple) else (value,):
            _check(
                not isinstance(number, float) or math.isfinite(number),
                f"{section}{item.name} must be a finite number, got {number}",
                f"e.g. --set {section}{item.name}=<a number>",
            )


def _shown(text: str) -> str:
    """A user's value quoted for a one-line message (escapes newlines, cut when long)."""
    return repr(text[:64]) + ("..." if len(text) > 64 else "")


def _check_run_name(name: str, flag: str) -> None:
    _check(
        not name or RUN_NAME.fullmatch(name) is not None,
        f"{flag} {_shown(name)} is not a plain run name",
        "use up to 128 letters, digits, '.', '_' and '-', not starting with '.', e.g. my-run-2",
    )


def _check_location(uri: str, flag: str) -> None:
    """`uri` is a local path or s3://BUCKET/PREFIX (storage.check_uri), checked when the config
    is built, so that nothing is written anywhere before a bad one is refused."""
    try:
        check_uri(uri)
    except UserError as error:
        raise ConfigError(f"{flag}: {error.message}", error.hint) from None


def _check_endpoint(endpoint: str) -> None:
    """--s3-endpoint, or AWS_ENDPOINT_URL when it is not given: a URL without credentials."""
    try:
        check_endpoint(endpoint_url(endpoint))
    except UserError as error:
        raise ConfigError(error.message, error.hint) from None


def _check_worker_resources(resources: dict) -> None:
    _check(
        isinstance(resources, dict),
        "train.worker_resources must be a mapping",
        "e.g. --set 'train.worker_resources={trainer_slot: 1}'",
    )
    for name, amount in resources.items():
        where = f"train.worker_resources[{_shown(str(name))}]"
        number = isinstance(amount, (int, float)) and not isinstance(amount, bool)
        _check(
            number and math.isfinite(amount) and amount >= 0,
            f"{where} must be a number >= 0, got {amount!r}",
            "e.g. --set 'train.worker_resources={trainer_slot: 1}'",
        )
        _check(isinstance(name, str), f"{where}: a resource name must be text")
        _check(
            name not in PLANNED_RESOURCES,
            f"{where}: the resource plan sets {name} itself",
            "use train.cpus_per_worker or --gpu",
        )


def _check_micro_batch(train: TrainConfig) -> None:
    """train.micro_batch is 'auto' or a number >= 0 that divides the per-worker batch of every
    worker count the run may have."""
    micro = train.micro_batch
    if micro == MICRO_BATCH_AUTO:
        return
    _check(
        isinstance(micro, int) and micro >= 0,
        f"train.micro_batch must be 'auto' or a number >= 0 (0 = the whole batch at once), got {micro!r}",
        "e.g. --set train.micro_batch=8, or --set train.micro_batch=auto",
    )
    if micro == 0:
        return
    batches = sorted({train.split_batch(world)[0] for world in train.world_sizes()})
    common = math.gcd(*batches)
    if common % micro:
        fitting = max(d for d in range(1, micro) if common % d == 0)
        shown = batches[0] if len(batches) == 1 else f"one of {batches}"
        _check(
            False,
            f"train.micro_batch {micro} does not divide the per-worker batch ({shown})",
            f"set --set train.micro_batch={fitting}, 0 for the whole batch at once, or auto",
        )


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
    test_crop: str = "center"
    """Test-time crop: 'center' = a crop_size square from the middle of the frame as stored, no
    resize (official CenterCropVideo on the original frames: 112 of 320x240 UCF101/HMDB51 frames),
    'resize' = short side resized to crop_size first (fame-ray's option for frames much larger
    than the crop)."""
    resize_antialias: bool = False
    """Antialias the resize of training crops (and of the 'resize' test crop): False = the
    official bilinear resize without antialiasing (torchvision's video transforms); True =
    fame-ray's option, a smoother downscale for crops much larger than crop_size."""
    decode_threads: int = 1
    """decord threads per decoding task."""
    decode_timeout_s: float = 60.0
    """A video whose decode takes longer is skipped (counted, replaced in pretraining) instead of
    stalling the job; 0 = no bound. Decoding a clip takes milliseconds; the bound covers slow
    object-storage reads."""
    data_cpus: float = 0.0
    """CPUs kept for the decode/FAME tasks; 0 = what training workers leave free."""
    stream: str = "tasks"
    """How a pretraining worker's rows are made: 'tasks' = one Ray task per step, a few steps
    ahead of the one it trains, taken in step order (the default: as fast as a torch DataLoader
    on the same CPUs, docs/data-pipeline.md); 'ray_data' = a Ray Data map_batches stream in
    step order (its executor's stats kept per epoch; about half the default's clips/s on 2 CPUs).
    Both give the same rows for the same seed."""

    def __post_init__(self):
        self.crop_scale = tuple(float(v) for v in self.crop_scale)
        _check_finite(self, "data.")
        _check(self.dataset in DATASETS, f"unknown dataset '{self.dataset}': expected one of {', '.join(DATASETS)}")
        _check_location(self.data_root, "--data-root")
        # Presets are configs too, built before the flags are merged: a broken $FAME_RAY_DATA
        # (like a broken AWS_ENDPOINT_URL) is refused even when --data-root overrides it.
        if not self.data_root:
            _check_location(data_home(), "$FAME_RAY_DATA")
        _check_location(self.csv_path, "--csv")
        _check_location(self.manifest_dir, "data.manifest_dir (--out of data prepare)")
        _check(self.split in (1, 2, 3), f"data.split must be 1, 2 or 3, got {self.split}")
        _check(self.frames_per_clip > 0, f"data.frames_per_clip must be positive, got {self.frames_per_clip}")
        _check(self.temporal_stride > 0, f"data.temporal_stride must be positive, got {self.temporal_stride}")
        _check(self.crop_size >= 8, f"data.crop_size must be at least 8, got {self.crop_size}")
        _check(
            len(self.crop_scale) == 2,
            f"data.crop_scale must be two numbers (low, high), got {list(self.crop_scale)}",
            "e.g. --set 'data.crop_scale=[0.2, 1.0]'",
        )
        low, high = self.crop_scale
        _check(
            0 < low <= high <= 1,
            f"data.crop_scale must be (low, high) with 0 < low <= high <= 1, got {self.crop_scale}",
        )
        _check(self.eval_clips > 0, f"data.eval_clips must be positive, got {self.eval_clips}")
        _check(
            self.test_crop in ("center", "resize"),
            f"data.test_crop must be 'center' or 'resize', got '{self.test_crop}'",
        )
        _check(self.decode_threads >= 0, "data.decode_threads must be >= 0")
        _check(self.decode_timeout_s >= 0, "data.decode_timeout_s must be >= 0 (0 = no bound)")
        _check(self.data_cpus >= 0, "data.data_cpus must be >= 0")
        _check(
            self.stream in STREAMS,
            f"data.stream must be one of {', '.join(STREAMS)}, got '{self.stream}'",
            "e.g. --set data.stream=tasks",
        )
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

    def location(self, endpoint: str = "") -> Location:
        """Where the dataset is read from: its root, or for 'csv' the list file."""
        return Location.parse(self.csv_path if self.dataset == "csv" else self.resolved_root(), endpoint)


METHODS = ("fame", "moco", "be", "moco_be_mix", "dclr")


@dataclass
class FameConfig:
    """Foreground-background merging (fame_ray.data.clips.fame), used when method is 'fame'."""

    beta: float = 0.5
    """Share of pixels kept as foreground (official: 0.5)."""
    mask_on: str = "data"
    """Where each query clip's mask is computed: 'data' = in the decode tasks on the CPU workers,
    clip by clip (fame-ray's default: the training device only merges); 'trainer' = on the
    training worker's device over its whole batch, right before the merge (where the official
    code computes it, on the GPU). The same rule either way; pixels tied at a cut are drawn
    from different generators, so the masks differ there."""

    def __post_init__(self):
        _check_finite(self, "fame.")
        _check(0 < self.beta <= 1, f"fame.beta must be in (0, 1], got {self.beta}")
        _check(
            self.mask_on in ("data", "trainer"),
            f"fame.mask_on must be 'data' or 'trainer', got '{self.mask_on}'",
            "e.g. --set fame.mask_on=trainer",
        )


@dataclass
class BackgroundErasingConfig:
    """Background Erasing's static-frame mixing (Wang et al., CVPR 2021), used when method is
    'be' or 'moco_be_mix'."""

    alpha: float = 0.3
    """A static frame of the clip is mixed in with a weight uniform in [0, alpha) (BE code: 0.3)."""

    def __post_init__(self):
        _check_finite(self, "be.")
        _check(0 <= self.alpha < 1, f"be.alpha must be in [0, 1), got {self.alpha}")


@dataclass
class DCLRConfig:
    """DCLR (Ding, Qian, Xiong, ACM MM 2022), used when method is 'dclr': its own settings, defaults as
    the official main_view.py / start_view.sh run them (docs/dclr.md)."""

    queue_size: int = 2048
    """Queue length K (official: 2048 on UCF101, 16384 on Kinetics-400, set by --dataset)."""
    momentum: float = 0.999
    """Key encoder momentum m."""
    temperature: float = 0.07
    """Softmax temperature T of the five contrasts."""
    topk: int = 5
    """Queue entries counted as extra positives per contrast (multi-positive NCE)."""
    mlp: bool = True
    """MLP heads (Linear, ReLU, Linear); False: one Linear (the official code ignores its flag)."""
    map_weight: float = 0.1
    """Weight of the activation-map term in the logged loss (it carries no gradient)."""
    warmup_steps: int = 256
    """Initial steps that fill the queues without an optimizer step (official: 256 of epoch 0)."""
    shuffle_bn: bool = True
    """Shuffle the key batch across workers before the key encoder (shuffle-BN)."""
    dynamic_wrap: bool = True
    """Frame 0 of the dynamic view is frame 0 minus the last frame (official roll); False: zero."""

    def __post_init__(self):
        hint = "see docs/dclr.md for the official values"
        _check(self.queue_size > 0, "dclr.queue_size must be positive", hint)
        _check(0 <= self.momentum < 1, "dclr.momentum must be in [0, 1)", hint)
        _check(self.temperature > 0, "dclr.temperature must be positive", hint)
        _check(1 <= self.topk <= self.queue_size, "dclr.topk must be in [1, dclr.queue_size]", hint)
        _check(self.map_weight >= 0, "dclr.map_weight must be >= 0", hint)
        _check(self.warmup_steps >= 0, "dclr.warmup_steps must be >= 0", hint)


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
        _check_finite(self, "model.")
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
    enqueue: str = "between_passes"
    """When the symmetric step's keys enter the queue: 'between_passes' (official: the first
    pass's keys before the second pass's logits, which leaves each second-pass query its own
    clip's key among the negatives) or 'after_both' (fame-ray's option: after both losses)."""

    def __post_init__(self):
        _check_finite(self, "moco.")
        _check(self.queue_size > 0, "moco.queue_size must be positive")
        _check(0 <= self.momentum < 1, "moco.momentum must be in [0, 1)")
        _check(self.temperature > 0, "moco.temperature must be positive")
        _check(
            self.enqueue in ("between_passes", "after_both"),
            f"moco.enqueue must be 'between_passes' or 'after_both', got '{self.enqueue}'",
        )


@dataclass
class OptimConfig:
    """SGD and its schedule."""

    lr: float = 0.01
    """Learning rate at `base_batch` (official pretraining: 0.01 at batch 64)."""
    base_batch: int = 64
    """Global batch at which `lr` applies; the lr is scaled linearly with the effective global
    batch (fame-ray's rule: nothing changes at the protocol's batch); 0 = `lr` at any batch."""
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
        _check_finite(self, "optim.")
        _check(self.lr > 0, f"optim.lr must be positive, got {self.lr}")
        _check(self.base_batch >= 0, "optim.base_batch must be >= 0 (0 = no scaling with the batch)")
        _check(self.schedule in ("cosine", "step"), f"optim.schedule must be 'cosine' or 'step', got '{self.schedule}'")
        _check(self.warmup_epochs >= 0, "optim.warmup_epochs must be >= 0")
        _check(self.weight_decay >= 0, "optim.weight_decay must be >= 0")


@dataclass
class TrainConfig:
    """A Ray Train run, pretraining or downstream: workers, batch, length, precision."""

    epochs: int = 200
    """Passes over the training split (official: 200)."""
    global_batch: int = 64
    """Clips per step over all workers (official: 64); kept when the worker count changes."""
    micro_batch: int | str = MICRO_BATCH_AUTO
    """Gradient accumulation: each worker's batch goes through the model this many clips at a
    time, gradients add up, and the optimizer steps once per global batch (so batch and lr stay
    the protocol's). 'auto' (default) = the largest that fits the node's memory by the estimate
    (fame_ray.models.memory; the whole batch when it fits, and on GPUs, whose memory Ray does not
    report), chosen when the run is planned and logged; a number wins over the estimate (0 = the
    whole per-worker batch at once) and must divide the per-worker batch. Activation memory scales
    with it (BatchNorm then sees micro batches, like a smaller per-GPU batch)."""
    num_workers: int = 1
    """Training workers (the maximum when elastic)."""
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
    log_every: int = 10
    """Steps between progress lines and metric records."""
    max_failures: int = 3
    """Worker-group failures retried from the latest checkpoint (-1 = forever)."""
    seed: int = 0
    """Seed of every random generator (per worker offset by rank)."""
    worker_resources: dict = field(default_factory=dict)
    """Extra Ray resources each training worker holds, e.g. {'trainer_slot': 1} to pin workers to nodes."""
    cluster_wait_s: float = 900.0
    """On a cluster that lacks what the job asks for (a cold autoscaling cluster): seconds to wait
    for the autoscaler to bring the nodes before giving up with what is missing."""

    def __post_init__(self):
        _check_finite(self, "train.")
        _check(self.epochs > 0, "train.epochs must be positive")
        _check(self.global_batch > 0, "train.global_batch must be positive")
        _check(self.num_workers > 0, "train.num_workers must be positive")
        _check(
            self.global_batch >= self.num_workers,
            (
                f"train.global_batch ({self.global_batch}) is smaller than the number of workers "
                f"({self.num_workers}): give each worker at least one clip"
            ),
        )
        _check(self.cpus_per_worker >= 0, "train.cpus_per_worker must be >= 0")
        _check(self.log_every > 0, "train.log_every must be positive")
        _check(self.cluster_wait_s >= 0, "train.cluster_wait_s must be >= 0")
        _check_worker_resources(self.worker_resources)
        _check_micro_batch(self)

    def world_sizes(self) -> range:
        """Every number of workers the run may have (one: downstream runs are not elastic)."""
        return range(self.num_workers, self.num_workers + 1)

    def split_batch(self, world_size: int) -> tuple[int, int]:
        """(per-worker batch, effective global batch) on `world_size` workers: the global batch
        rounded down to a multiple of the worker count (every worker takes the same share)."""
        per_worker = self.global_batch // world_size
        return per_worker, per_worker * world_size


@dataclass
class PretrainTrainConfig(TrainConfig):
    """The pretraining run: `TrainConfig` plus step budget, checkpoints, elasticity, read-out."""

    max_steps: int = 0
    """Stop after this many optimizer steps (0 = run all epochs)."""
    min_workers: int = 0
    """Elastic lower bound; 0 = fixed at num_workers."""
    elastic_resize_s: float = 60.0
    """Elastic runs: seconds between checks whether more workers fit (Ray Train's resize interval)."""
    checkpoint_every: int = 200
    """Save a checkpoint every N steps (and always at the end)."""
    keep_checkpoints: int = 3
    """How many checkpoints storage keeps."""
    async_checkpoint: bool = True
    """Upload checkpoints in the background (Ray Train's ASYNC mode); a failed upload fails the run attempt."""
    readout: bool = False
    """After pretraining, read out what was learned: a linear probe of the frozen features of the
    dataset's train split, tested on its test split, next to a randomly initialised encoder."""
    readout_every: int = 0
    """Every N steps (and at the first and last), rank 0 reads out the features while the run goes
    on: a linear probe's accuracy on held-out videos (pretrain.readout; `read-out` in the progress
    line); 0 = never."""

    def __post_init__(self):
        _check(self.readout_every >= 0, "train.readout_every must be >= 0 (0 = never)")
        _check(0 <= self.min_workers <= self.num_workers, "train.min_workers must be between 0 and num_workers")
        super().__post_init__()
        _check(self.max_steps >= 0, "train.max_steps must be >= 0")
        _check(self.elastic_resize_s >= 0, "train.elastic_resize_s must be >= 0")
        _check(self.checkpoint_every > 0, "train.checkpoint_every must be positive")
        _check(self.keep_checkpoints > 0, "train.keep_checkpoints must be positive")

    def world_sizes(self) -> range:
        """Every number of workers the run may have (one for a fixed run, min..max when elastic)."""
        return range(self.min_workers or self.num_workers, self.num_workers + 1)


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

    def __post_init__(self):
        _check_location(self.path, "--storage")
        _check_endpoint(self.s3_endpoint)
        _check_run_name(self.run_name, "--run-name")
        _check_run_name(self.resume, "--resume")

    def root(self) -> Location:
        """The runs root as a Location (default ./fame-ray-runs), with the endpoint resolved."""
        return Location.parse(self.path or "fame-ray-runs", self.s3_endpoint)


@dataclass
class PretrainConfig:
    """Everything a pretraining run needs."""

    method: str = "fame"
    """'fame' (MoCo + FAME, the paper), 'moco' (plain MoCo, the baseline), 'be' (Background
    Erasing as its code releases it: the anchor mixed with a static frame and its positive are
    two crops of one segment, another segment of the video is an extra negative, one-way loss;
    fame_ray.models.background_erasing) or 'moco_be_mix' (fame-ray's ablation: BE's frame mixing
    on the query view inside FAME's symmetric MoCo recipe) or 'dclr' (DCLR: static and dynamic
    views, its own objective, section `dclr`)."""
    data: DataConfig = field(default_factory=DataConfig)
    fame: FameConfig = field(default_factory=FameConfig)
    be: BackgroundErasingConfig = field(default_factory=BackgroundErasingConfig)
    dclr: DCLRConfig = field(default_factory=DCLRConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    moco: MoCoConfig = field(default_factory=MoCoConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: PretrainTrainConfig = field(default_factory=PretrainTrainConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    preset: str = ""
    """Name of the preset this config started from."""

    def __post_init__(self):
        # The official code asserts K % batch == 0. Every effective batch an elastic run may
        # have (the global batch rounded down to a multiple of the worker count) is then <= K,
        # and the queue is a ring buffer (models.moco.MoCo.enqueue), so any of them works.
        _check(self.method in METHODS, f"unknown method '{self.method}': expected one of {', '.join(METHODS)}")
        global_batch = self.train.global_batch
        if self.method == "dclr":
            # DCLR's queues are rings too; the official K % batch assertion is a released defect
            # (2048 % 40 != 0 in its own recipe, docs/dclr.md): a step's keys must only fit.
            _check(self.dclr.queue_size >= global_batch, f"dclr.queue_size must hold a step's {global_batch} keys")
            return
        queue = self.moco.queue_size
        _check(
            queue % global_batch == 0,
            (
                f"moco.queue_size ({queue}) must be divisible by train.global_batch ({global_batch}), as the "
                "official code asserts"
            ),
        )

    def run_name(self) -> str:
        """--resume names the run; otherwise --run-name or the name derived from dataset and arch."""
        return self.storage.resume or self.storage.run_name or f"pretrain-{self.data.dataset}-{self.model.arch}"

    def run_location(self) -> Location:
        """The run directory `<storage>/<run name>`: the one place it is derived."""
        return self.storage.root() / self.run_name()

    def data_location(self) -> Location:
        """The dataset root (or csv list) with the run's S3 endpoint."""
        return self.data.location(self.storage.s3_endpoint)


@dataclass
class FinetuneConfig:
    """Downstream finetune / linear probe / retrieval (official protocol in docs/recipe.md)."""

    data: DataConfig = field(default_factory=lambda: DataConfig(dataset="ucf101"))
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=150, global_batch=128))
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(lr=0.025, base_batch=0, schedule="step", milestones=(60, 120))
    )
    """SGD and its schedule, set per epoch (official finetune: lr 0.025, wd 1e-4, lr / 10 at epochs
    60 and 120, the same lr at any batch; the official linear probe, preset 'linear': lr 30,
    wd 0, lr / 10 at epochs 60 and 80)."""
    storage: StorageConfig = field(default_factory=StorageConfig)
    pretrained: str = ""
    """Pretrained weights: a fame-ray checkpoint (local or s3://) or an official FAME .pth."""
    mode: str = "finetune"
    """'finetune' (all layers) or 'linear' (frozen backbone in eval mode, linear classifier);
    `--mode linear` without a preset or config file starts from the official probe (preset 'linear')."""
    dropout: float = 0.7
    """Dropout before the classifier (official: 0.7 when finetuning; the linear probe keeps it for
    I3D only, as the official eval.py builds its models)."""
    probe_inputs: str = "official"
    """What the linear probe trains on: 'official' = unnormalised clips in [0, 1] (the official
    eval.py applies its normalisation in the finetune augmentation only, so its probe trains on raw
    clips and tests on normalised ones), 'normalised' = fame-ray's option, the Kinetics
    normalisation in training too, as at test time."""
    val_fraction: float = 0.1
    """Share of each class's training videos held out as the validation split that ASHA and the
    choice of the best trial read (seeded by `val_seed`, the same on every rerun; UCF101's actor
    groups are kept whole); the rest is trained on. 0 = train on the whole split and choose on
    the test split, as the paper's protocol does."""
    val_seed: int = 0
    """Seed of the validation split (apart from train.seed: another training seed keeps the split)."""
    test_every: int = 10
    """Test the test split at epoch 0, every `test_every` epochs and at the last epoch (official
    eval.py: every 10); the paper's number is the best of these tests."""
    samples: int = 1
    """Ray Tune trials."""
    search_space: dict = field(default_factory=dict)
    """Tune search space: {param: [values]} (grid) or {param: {loguniform|uniform|choice: ...}}."""
    max_concurrent: int = 0
    """Trials at once; 0 = as many as the cluster fits."""
    trial_failures: int = 1
    """Retries of a failed trial before it is reported as failed."""
    video_score: str = "official"
    """Multi-clip testing: 'official' averages the classifier's raw outputs over a video's clips
    (logits; log-softmax for I3D), 'softmax' averages probabilities (fame-ray's option)."""
    retrieval: str = "official"
    """Retrieval features: 'official' (main_retrieve.py: each clip L2-normalised, then averaged;
    queries and gallery each centred on their own mean; ImageNet input statistics) or 'gallery'
    (fame-ray's option: no per-clip normalisation, both centred on the gallery's mean, so no test
    statistics are used; Kinetics input statistics)."""
    preset: str = ""

    def __post_init__(self):
        _check_finite(self, "")
        _check(self.mode in ("finetune", "linear"), f"mode must be 'finetune' or 'linear', got '{self.mode}'")
        _check(0 <= self.dropout < 1, "dropout must be in [0, 1)")
        _check(
            self.probe_inputs in ("official", "normalised"),
            f"probe_inputs must be 'official' or 'normalised', got '{self.probe_inputs}'",
        )
        _check(0 <= self.val_fraction < 1, f"val_fraction must be in [0, 1), got {self.val_fraction}")
        _check(self.test_every > 0, f"test_every must be positive, got {self.test_every}")
        _check(self.samples > 0, "samples must be positive")
        _check(
            self.video_score in ("official", "softmax"),
            f"video_score must be 'official' or 'softmax', got '{self.video_score}'",
        )
        _check(
            self.retrieval in ("official", "gallery"),
            f"retrieval must be 'official' or 'gallery', got '{self.retrieval}'",
        )
        _check_location(self.pretrained, "--pretrained")

    def run_name(self, task: str = "") -> str:
        """--run-name, or `<task>-<dataset>-split<N>-<arch>` (task: the mode, or 'retrieval')."""
        return (
            self.storage.run_name or f"{task or self.mode}-{self.data.dataset}-split{self.data.split}-{self.model.arch}"
        )

    def run_location(self, task: str = "") -> Location:
        """The run directory `<storage>/<run name>`: the one place it is derived."""
        return self.storage.root() / self.run_name(task)

    def pretrained_location(self) -> Location:
        return Location.parse(self.pretrained, self.storage.s3_endpoint)

    def data_location(self) -> Location:
        """The dataset root (or csv list) with the run's S3 endpoint."""
        return self.data.location(self.storage.s3_endpoint)
