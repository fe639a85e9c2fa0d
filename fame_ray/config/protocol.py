"""The evaluation protocols and Background Erasing, setting by setting: what the official code does
(with the file and lines that do it), what a config does, and the option that departs.

    for setting in protocol.for_task("linear", cfg):
        print(setting.name, setting.value(cfg), setting.official)

docs/recipe.md ("Protocol settings") holds the same rows as a table with the test that pins each
one; tests/unit/test_protocol.py checks that the table and this list agree, that each row's
"fame-ray default" is what the default config of its task gives, and that every test it names
exists. `--dry-run` of pretrain, finetune and retrieve prints the rows of its task with the
values of the config it would run. Files: FAME = github.com/Mark12Ding/FAME, BE =
github.com/FingerRec/BE (src/Contrastive).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fame_ray.config import presets
from fame_ray.config.tree import FinetuneConfig, PretrainConfig

TASKS = ("pretrain", "finetune", "linear", "retrieval")
EVALUATED = ("finetune", "linear")
DATA_TASKS = ("pretrain", "finetune", "linear", "retrieval")


@dataclass(frozen=True)
class Setting:
    """One row of the protocol table."""

    name: str
    tasks: tuple[str, ...]
    """The commands it applies to ('linear' = finetune --mode linear)."""
    official: str
    """What the official code does, and where (file:line)."""
    value: Callable
    """What a config does: config -> one line."""
    option: str
    """The config key (or flag) that departs from it."""


def _optimizer(cfg: FinetuneConfig) -> str:
    scaled = f", scaled from batch {cfg.optim.base_batch}" if cfg.optim.base_batch else ", the same lr at any batch"
    return f"SGD lr {cfg.optim.lr:g}, momentum {cfg.optim.momentum:g}, weight decay {cfg.optim.weight_decay:g}{scaled}"


def _schedule(cfg: FinetuneConfig) -> str:
    if cfg.optim.schedule == "cosine":
        return f"{cfg.train.epochs} epochs, cosine"
    return f"{cfg.train.epochs} epochs, lr / 10 at epochs {', '.join(map(str, cfg.optim.milestones))}"


def _probe_dropout(cfg: FinetuneConfig) -> str:
    return f"none; I3D: {cfg.dropout:g}"


def _geometry(cfg) -> str:
    return "the frames as stored (`data transcode` keeps their size by default)"


def _training_crop(cfg) -> str:
    low, high = cfg.data.crop_scale
    return (
        f"random resized crop, area {low:g}-{high:g}, aspect 3/4-4/3, of the frame as stored, to "
        f"{cfg.data.crop_size}; flip p 0.5"
    )


def _kernel(cfg) -> str:
    if cfg.data.resize_antialias:
        return "bilinear with antialiasing, on uint8"
    return "bilinear, no antialiasing, on uint8 (within 1/255 of the float resize)"


def _test_crop(cfg) -> str:
    if cfg.data.test_crop == "center":
        return f"a {cfg.data.crop_size} centre crop of the frame as stored, no resize"
    return f"short side resized to {cfg.data.crop_size}, then the centre crop"


def _test_clips(cfg: FinetuneConfig) -> str:
    rule = "mean of the raw outputs" if cfg.video_score == "official" else "mean of the softmax"
    return f"{cfg.data.eval_clips} uniformly spaced clips per video, {rule}"


def _choice(cfg: FinetuneConfig) -> str:
    if cfg.val_fraction == 0:
        return "train on the whole training split, choose on the test split"
    return (
        f"train on the training split minus a validation split ({cfg.val_fraction:g} of each class, seed "
        f"{cfg.val_seed}); ASHA and the choice read the validation split only"
    )


def _retrieval(cfg: FinetuneConfig) -> str:
    if cfg.retrieval == "official":
        return "as the official"
    return "raw clip features averaged, both centred on the gallery mean, Kinetics statistics"


def _be_recipe(cfg: PretrainConfig) -> str:
    shuffle = "shuffle-BN" if cfg.moco.shuffle_bn else "no shuffle-BN"
    return f"the run's moco section: T {cfg.moco.temperature:g}, {shuffle}; FAME's augmentation"


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "finetune optimizer",
        ("finetune",),
        "SGD lr 0.025, momentum 0.9, weight decay 1e-4, the same lr at any batch (FAME eval.sh:7-9, "
        "eval.py:72,262-264)",
        _optimizer,
        "optim.lr, optim.momentum, optim.weight_decay, optim.base_batch",
    ),
    Setting(
        "finetune schedule",
        ("finetune",),
        "150 epochs, lr / 10 at epochs 60 and 120 (FAME eval.sh:10,16-17, utils/train_utils.py:20-22)",
        _schedule,
        "train.epochs, optim.schedule, optim.milestones",
    ),
    Setting(
        "finetune batch",
        ("finetune",),
        "128 clips (FAME eval.sh:12)",
        lambda cfg: f"{cfg.train.global_batch} clips",
        "train.global_batch",
    ),
    Setting(
        "finetune dropout",
        ("finetune",),
        "0.7 before the classifier (FAME eval.py:77,166,189,201)",
        lambda cfg: f"{cfg.dropout:g}",
        "dropout",
    ),
    Setting(
        "finetune augmentation",
        ("finetune",),
        "grayscale p 0.2, colour jitter (0.4, 0.4, 0.4, 0.1) p 0.8, Kinetics normalisation (FAME "
        "moco/loader.py:121-132, eval.py:431-432)",
        lambda cfg: "as the official",
        "none",
    ),
    Setting(
        "linear probe optimizer",
        ("linear",),
        "SGD lr 30, momentum 0.9, weight decay 0, the same lr at any batch (FAME eval.py:62,72,74-76)",
        _optimizer,
        "optim.lr, optim.momentum, optim.weight_decay, optim.base_batch",
    ),
    Setting(
        "linear probe schedule",
        ("linear",),
        "100 epochs, lr / 10 at epochs 60 and 80 (FAME eval.py:45,64,70, utils/train_utils.py:20-22)",
        _schedule,
        "train.epochs, optim.schedule, optim.milestones",
    ),
    Setting(
        "linear probe batch",
        ("linear",),
        "256 clips (FAME eval.py:49)",
        lambda cfg: f"{cfg.train.global_batch} clips",
        "train.global_batch",
    ),
    Setting(
        "linear probe backbone",
        ("linear",),
        "frozen, in eval mode (FAME eval.py:190-194,416-417; its I3D probe leaves the backbone trainable, "
        "eval.py:200-201, a bug)",
        lambda cfg: "frozen, in eval mode (I3D too)",
        "none",
    ),
    Setting(
        "linear probe inputs",
        ("linear",),
        "trains on unnormalised clips in [0, 1], tests on normalised ones (FAME eval.py:297-310,431-432)",
        lambda cfg: (
            "unnormalised in training, as the official"
            if cfg.probe_inputs == "official"
            else "normalised in training and testing"
        ),
        "probe_inputs: normalised",
    ),
    Setting(
        "linear probe dropout",
        ("linear",),
        "none for R(2+1)D (FAME eval.py:191), 0.7 for I3D (eval.py:201)",
        _probe_dropout,
        "dropout (I3D)",
    ),
    Setting(
        "classifier initialisation",
        EVALUATED,
        "R(2+1)D: N(0, 0.01), bias 0 (FAME eval.py:197-199); I3D: PyTorch's default Linear (backbone/i3d.py:273)",
        lambda cfg: "as the official (R3D-18 and tiny: the R(2+1)D rule)",
        "none",
    ),
    Setting(
        "clip",
        DATA_TASKS,
        "16 frames, temporal stride 2 (FAME eval.py:56, dataset/ucf101.py:46,68,112)",
        lambda cfg: f"{cfg.data.frames_per_clip} frames, temporal stride {cfg.data.temporal_stride}",
        "data.frames_per_clip, data.temporal_stride",
    ),
    Setting(
        "frame geometry",
        DATA_TASKS,
        "UCF101 and HMDB51 decoded at their original 320x240, no resize (FAME dataset/ucf101.py:43-46,66-77)",
        _geometry,
        "`data transcode --short-side N` (a resized copy)",
    ),
    Setting(
        "training crop",
        ("pretrain", "finetune", "linear"),
        "random resized crop, area 0.2-1, aspect 3/4-4/3, of the full frame, to 112 (224 for I3D); flip p 0.5 "
        "(FAME eval.py:297-303, train.py:258-265)",
        _training_crop,
        "data.crop_scale, data.crop_size",
    ),
    Setting(
        "resize kernel",
        ("pretrain", "finetune", "linear"),
        "bilinear, no antialiasing, on float clips (torchvision _functional_video.resize, through FAME "
        "eval.py:300, train.py:262)",
        _kernel,
        "data.resize_antialias",
    ),
    Setting(
        "test crop",
        ("finetune", "linear", "retrieval"),
        "a 112 centre crop of the frame as stored, no resize (FAME eval.py:304-310, main_retrieve.py:87-93)",
        _test_crop,
        "data.test_crop: resize",
    ),
    Setting(
        "test clips",
        EVALUATED,
        "10 uniformly spaced clips per video, mean of the raw outputs (FAME eval.py:60,345,486-489)",
        _test_clips,
        "data.eval_clips, video_score: softmax",
    ),
    Setting(
        "test schedule",
        EVALUATED,
        "the test split tested at epoch 0, every 10 epochs and at the last (FAME eval.py:370)",
        lambda cfg: f"epoch 0, every {cfg.test_every} epochs and the last",
        "test_every",
    ),
    Setting(
        "reported number",
        EVALUATED,
        "the best test epoch (FAME eval.py:377-392)",
        lambda cfg: "the chosen trial's last-epoch test and its best test epoch, labelled, side by side",
        "none",
    ),
    Setting(
        "training videos and choice",
        EVALUATED,
        "one run on the whole training split; hyperparameters chosen on the test split (FAME eval.py:313-333)",
        _choice,
        "val_fraction: 0",
    ),
    Setting(
        "retrieval",
        ("retrieval",),
        "each clip's feature L2-normalised, averaged per video; test queries and training gallery each centred "
        "on its own mean, L2-normalised; cosine; R@1, 5, 10, 20, 50; ImageNet statistics (FAME "
        "main_retrieve.py:48-49,63-76,82-83,136)",
        _retrieval,
        "retrieval: gallery",
    ),
    Setting(
        "Background Erasing views",
        ("pretrain",),
        "anchor and positive: two augmentations of one segment; negative: another segment of the same video "
        "(BE data/dataset.py:335-371)",
        lambda cfg: "as released (view_q, view_k: two crops of one clip; view_n: the other clip)",
        "method: moco_be_mix (BE's mixing in FAME's two-clip recipe)",
    ),
    Setting(
        "Background Erasing loss",
        ("pretrain",),
        "one-way softmax loss over [q.k, q.queue, q.n] / T, n through the query encoder with gradient, the "
        "positives' keys enqueued after (BE loss/NCE/NCEAverage.py:173-229, pt.py:327-340)",
        lambda cfg: "as released",
        "method: moco_be_mix (FAME's symmetric loss)",
    ),
    Setting(
        "Background Erasing mixing",
        ("pretrain",),
        "a frame of each anchor clip mixed into its every frame, weight uniform in [0, 0.3) per batch (BE "
        "augment/basic_augmentation/mixup_methods.py:121-137, augment/gen_positive.py:9,25)",
        lambda cfg: f"as released, weight in [0, {cfg.be.alpha:g})",
        "be.alpha",
    ),
    Setting(
        "Background Erasing recipe",
        ("pretrain",),
        "T 0.07 (BE option.py:60), no shuffle-BN (pt.py:329,333-336), its own augmentation (data/config.py:66-79)",
        _be_recipe,
        "moco.temperature, moco.shuffle_bn",
    ),
)

BACKGROUND_ERASING = tuple(s.name for s in SETTINGS if s.name.startswith("Background Erasing"))


def task_of(cfg) -> str:
    """The task a config runs: 'pretrain', or the finetune config's mode."""
    return "pretrain" if isinstance(cfg, PretrainConfig) else cfg.mode


def for_task(task: str, cfg=None) -> list[Setting]:
    """The settings of `task` ('pretrain', 'finetune', 'linear' or 'retrieval'); Background
    Erasing's only for a pretraining config whose method is 'be' (all of them when `cfg` is None)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got '{task}'")
    rows = [s for s in SETTINGS if task in s.tasks]
    if cfg is not None and task == "pretrain" and cfg.method != "be":
        rows = [s for s in rows if s.name not in BACKGROUND_ERASING]
    return rows


def default_config(setting: Setting):
    """The default config of the setting's first task (what docs/recipe.md's default column shows)."""
    task = setting.tasks[0]
    if task == "pretrain":
        method = "be" if setting.name in BACKGROUND_ERASING else "fame"
        return PretrainConfig(method=method)
    return presets.linear_probe() if task == "linear" else presets.recipe_finetune()


def rows(task: str, cfg) -> list[tuple[str, str, str, str]]:
    """(setting, this config's value, official, option) of every setting of `task`."""
    return [(s.name, s.value(cfg), s.official, s.option) for s in for_task(task, cfg)]
