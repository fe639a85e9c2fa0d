"""Named presets: typed functions that return a complete config.

`choose` picks the preset a command starts from: the demo for a bare run on the built-in
synthetic dataset, the official linear probe for `--mode linear`, otherwise the official recipe
(the dataclass defaults).
"""

from __future__ import annotations

from fame_ray.config.study import StudyConfig
from fame_ray.config.tree import (
    DataConfig,
    DCLRConfig,
    FinetuneConfig,
    MoCoConfig,
    ModelConfig,
    OptimConfig,
    PretrainConfig,
    PretrainTrainConfig,
    TrainConfig,
)
from fame_ray.errors import ConfigError


def demo_pretrain() -> PretrainConfig:
    """A few minutes on 2 CPUs: MoCo + FAME with the tiny backbone on the built-in synthetic
    dataset, read out every 40 steps (a linear probe of held-out videos' features, from the
    randomly initialised encoder at step 0 to the end: the learning signal). Short-run settings, not the paper's: 8
    frames
    of 48 pixels; crops of 60-100% of the frame (smaller ones often cut the mover out of a
    64-pixel video); a key encoder that follows faster (m = 0.99: over a few hundred steps the
    official 0.999 leaves the keys near their random start), a queue of 128 keys, well under the
    dataset's 450 training videos (a queue that holds a video's own older keys punishes the
    positive), filled after both passes of the symmetric loss (models.moco: the official order
    leaves each second-pass query its own clip's key as a negative, which pulls acc@1 down to
    chance in a short run)."""
    return PretrainConfig(
        preset="demo",
        data=DataConfig(
            dataset="synthetic", frames_per_clip=8, temporal_stride=2, crop_size=48, crop_scale=(0.6, 1.0), eval_clips=2
        ),
        model=ModelConfig(arch="tiny", mlp_head=True),
        moco=MoCoConfig(queue_size=128, momentum=0.99, enqueue="after_both"),
        # With --method dclr: the same short-run queue and momentum; the warm-up fills its 128 keys
        # (4 steps of 32) instead of the official 256 iterations (a run of 140 steps).
        dclr=DCLRConfig(queue_size=128, momentum=0.99, warmup_steps=4),
        optim=OptimConfig(lr=0.1, base_batch=32),
        train=PretrainTrainConfig(
            # 10 epochs of 14 steps: the read-out measured 63% at step 0, 79% at step 80, 75% at
            # steps 120-196 of a 14-epoch run; 10 epochs keep the whole demo near 4 minutes on 2 cores.
            epochs=10,
            global_batch=32,
            num_workers=2,
            checkpoint_every=100,
            log_every=10,
            readout_every=40,
        ),
    )


def ucf101_r21d_pretrain() -> PretrainConfig:
    """UCF101 pretraining with R(2+1)D-18 at 16x112x112 (K=2048, as the official code)."""
    return PretrainConfig(
        preset="ucf101-r21d",
        data=DataConfig(dataset="ucf101", crop_size=112),
        model=ModelConfig(arch="r2plus1d_18"),
        moco=MoCoConfig(queue_size=2048),
        train=PretrainTrainConfig(epochs=200, global_batch=64),
    )


def k400_i3d_pretrain() -> PretrainConfig:
    """Kinetics-400 pretraining with I3D at 16x224x224, the paper's headline setting."""
    return PretrainConfig(
        preset="k400-i3d",
        data=DataConfig(dataset="kinetics400", crop_size=224),
        model=ModelConfig(arch="i3d"),
        moco=MoCoConfig(queue_size=65536),
        train=PretrainTrainConfig(epochs=200, global_batch=64, num_workers=8, use_gpu=True),
    )


def recipe_pretrain() -> PretrainConfig:
    """The official recipe as the dataclass defaults hold it."""
    return PretrainConfig(preset="recipe")


def demo_finetune() -> FinetuneConfig:
    """Finetune the tiny backbone on the synthetic dataset in a few minutes on CPU."""
    return FinetuneConfig(
        preset="demo",
        data=DataConfig(dataset="synthetic", frames_per_clip=8, crop_size=48, crop_scale=(0.6, 1.0), eval_clips=4),
        model=ModelConfig(arch="tiny"),
        train=TrainConfig(epochs=3, global_batch=16, num_workers=1, log_every=5),
        optim=OptimConfig(lr=0.05, base_batch=0, schedule="step", milestones=(2,)),
        dropout=0.5,
    )


def recipe_finetune() -> FinetuneConfig:
    """The official finetuning protocol as the dataclass defaults hold it."""
    return FinetuneConfig(preset="recipe")


def probe_optim(milestones: tuple[int, ...] = (60, 80)) -> OptimConfig:
    """The official linear probe's SGD, the defaults of eval.py run with --freeze (eval.py:62-76):
    lr 30 at any batch, momentum 0.9, weight decay 0, lr / 10 at each milestone (60 and 80)."""
    return OptimConfig(lr=30.0, base_batch=0, momentum=0.9, weight_decay=0.0, schedule="step", milestones=milestones)


def linear_probe() -> FinetuneConfig:
    """The official linear probe: the finetuning recipe's data and testing, with a frozen
    backbone and eval.py's --freeze optimizer and length (100 epochs at batch 256, eval.py:45,49)."""
    return FinetuneConfig(
        preset="linear", mode="linear", train=TrainConfig(epochs=100, global_batch=256), optim=probe_optim()
    )


def demo_linear_probe() -> FinetuneConfig:
    """The demo's linear probe: the demo's data, model and length, with the official probe's
    optimizer (lr 30, weight decay 0), its lr / 10 moved to the last of the 3 epochs."""
    demo = demo_finetune()
    return FinetuneConfig(
        preset="demo-linear",
        mode="linear",
        data=demo.data,
        model=demo.model,
        train=demo.train,
        optim=probe_optim(milestones=(2,)),
        dropout=demo.dropout,
    )


PRETRAIN = {
    "demo": demo_pretrain,
    "ucf101-r21d": ucf101_r21d_pretrain,
    "k400-i3d": k400_i3d_pretrain,
    "recipe": recipe_pretrain,
}
FINETUNE = {
    "demo": demo_finetune,
    "recipe": recipe_finetune,
    "linear": linear_probe,
    "demo-linear": demo_linear_probe,
}


def get(table: dict, name: str):
    """The preset called `name` from PRETRAIN or FINETUNE, built."""
    if name not in table:
        raise ConfigError(f"unknown preset '{name}': expected one of {', '.join(table)}")
    return table[name]()


def choose(preset: str | None, config_file: str | None, dataset: str | None, mode: str | None = None) -> str:
    """The preset a command starts from when --preset does not name one.

    With a --config file: the recipe (the file's values win over it). Without one: for
    `mode: linear` the official linear probe ('linear'), or the demo's probe ('demo-linear')
    when the dataset named is the built-in synthetic one; otherwise the demo for a bare run
    (synthetic or no dataset) and the recipe for a named dataset. Explicit values (flags, --set)
    always win over the preset's."""
    if preset:
        return preset
    if config_file:
        return "recipe"
    if mode == "linear":
        return "demo-linear" if dataset == "synthetic" else "linear"
    return "demo" if dataset in (None, "synthetic") else "recipe"


def quick_study(data_dir: str) -> StudyConfig:
    """`fame-ray reproduce --quick`: the whole study's structure in minutes on 2 CPUs. The tiny
    backbone pretrained for a few steps (the demo's short-run recipe) on a synthetic UCF101-layout
    copy, then 1-epoch finetunes on it and on a synthetic HMDB51 copy, a linear probe and a
    retrieval, one split each; Diving48 is listed and skipped (no data root under `data_dir`)."""
    return StudyConfig(
        methods=("fame",),
        pretrain_preset="demo",
        pretrain={
            "data": {"dataset": "ucf101", "eval_clips": 1},
            "moco": {"queue_size": 64},
            "train": {
                "epochs": 10,
                "max_steps": 8,
                "global_batch": 8,
                "num_workers": 1,
                "checkpoint_every": 4,
                "keep_checkpoints": 1,
                "log_every": 4,
                "readout_every": 0,
            },
        },
        finetune_preset="demo",
        linear_preset="demo-linear",
        retrieval_preset="demo",
        downstream={"data": {"eval_clips": 1}, "train": {"epochs": 1, "global_batch": 4}},
        finetune_on=("ucf101", "hmdb51", "diving48"),
        linear_on=("ucf101",),
        retrieval_on=("ucf101",),
        optional=("diving48",),
        splits=(1,),
        data_roots={name: f"{data_dir}/{folder}" for name, folder in QUICK_DATASETS.items()},
        paper="k400-i3d",
    )


# The synthetic copies the quick study writes (folder name under its data folder); Diving48 is
# named but never written, so that its optional stage is planned and skipped.
QUICK_DATASETS = {"ucf101": "UCF101", "hmdb51": "hmdb51", "diving48": "Diving48"}
