"""The study config: what `fame-ray reproduce` runs, as one typed section (a YAML file's top level).

    study = build(StudyConfig, presets.quick_study("/tmp/quick/data"), load_yaml("jobs/reproduce-k400-i3d.yaml"))

A study is one pretraining per method (or existing weights, `pretrained`) and the paper's
evaluations of it: finetunes, linear probes and retrievals over datasets and splits. Every stage
is an ordinary fame-ray run, built the way its own command builds it (a preset, then a job file,
then this config's values for it; `fame_ray.study.plan`), stored under `<storage>/<study name>/`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fame_ray.config.tree import DATASETS, METHODS, StorageConfig, _check, _check_finite, _check_location

# The datasets a study evaluates on, and the splits each has (the official split files).
EVALUATION_SPLITS = {"ucf101": (1, 2, 3), "hmdb51": (1, 2, 3), "diving48": (1,)}
# Sets of the paper's figures (fame_ray.study.references) a study's table can put beside its own.
PAPER_SETTINGS = ("k400-i3d", "ucf101-r21d", "none")
SECTIONS = ("pretrain", "downstream", "finetune", "linear", "retrieval")


def _check_datasets(names: tuple[str, ...], key: str) -> None:
    for name in names:
        _check(
            name in EVALUATION_SPLITS,
            f"study {key}: unknown evaluation dataset '{name}'",
            f"use any of {', '.join(EVALUATION_SPLITS)}",
        )


def _check_section(values: dict, key: str) -> None:
    _check(isinstance(values, dict), f"study {key} must be a mapping of config keys", f"e.g. {key}: {{train: {{}}}}")


@dataclass
class StudyConfig:
    """One study: the pretraining(s), the evaluations, where it lives and what it compares with."""

    methods: tuple[str, ...] = ("fame",)
    """Pretraining methods (config.METHODS); each gets the same study, side by side in one table."""
    pretrained: str = ""
    """Existing weights (a fame-ray run or checkpoint, or an official FAME .pth): no pretraining
    stage, one method (named 'pretrained' in the table)."""
    pretrain_preset: str = ""
    """Preset the pretraining starts from (config.presets.PRETRAIN); empty = as `fame-ray pretrain`
    chooses (the recipe with a job file, the demo on synthetic data)."""
    pretrain_config: str = ""
    """Job file of the pretraining (e.g. pretrain-k400-i3d.yaml), relative to the study's file."""
    pretrain: dict = field(default_factory=dict)
    """PretrainConfig values on top of the preset and job file (method, storage and run name are
    the study's)."""
    finetune_preset: str = "recipe"
    """Preset of the finetunes (config.presets.FINETUNE): the official finetune recipe."""
    linear_preset: str = "linear"
    """Preset of the linear probes: the official probe (eval.py --freeze: lr 30, 100 epochs)."""
    retrieval_preset: str = "recipe"
    """Preset of the retrievals (their protocol is the data section's test clips)."""
    finetune_config: str = ""
    """Job file of the finetunes (e.g. finetune-ucf101.yaml), relative to the study's file; its
    dataset, split, pretrained and storage are the stage's."""
    downstream: dict = field(default_factory=dict)
    """FinetuneConfig values every finetune, probe and retrieval takes (geometry, workers, GPUs)."""
    finetune: dict = field(default_factory=dict)
    """FinetuneConfig values of the finetunes only, on top of `downstream`."""
    linear: dict = field(default_factory=dict)
    """FinetuneConfig values of the linear probes only, on top of `downstream`."""
    retrieval: dict = field(default_factory=dict)
    """FinetuneConfig values of the retrievals only, on top of `downstream`."""
    finetune_on: tuple[str, ...] = ("ucf101", "hmdb51", "diving48")
    """Datasets finetuned on (the paper: UCF101, HMDB51, Diving48)."""
    linear_on: tuple[str, ...] = ("ucf101", "hmdb51")
    """Datasets linear-probed on."""
    retrieval_on: tuple[str, ...] = ("ucf101", "hmdb51")
    """Datasets of the retrievals (test videos query the training videos)."""
    optional: tuple[str, ...] = ("diving48",)
    """Datasets whose stages run only when their data root is present (else listed as skipped);
    a required dataset that is missing stops the study before any stage starts."""
    splits: tuple[int, ...] = (1, 2, 3)
    """Official splits of UCF101 and HMDB51 (each metric: mean and std over them); Diving48 has one."""
    data_roots: dict = field(default_factory=dict)
    """Dataset name -> its folder or s3:// prefix; a dataset not named here: $FAME_RAY_DATA/<Dataset>."""
    paper: str = "k400-i3d"
    """The paper's figures put beside the table: 'k400-i3d' (I3D pretrained on Kinetics-400),
    'ucf101-r21d' (R(2+1)D pretrained on UCF101) or 'none'."""
    concurrent_stages: int = 0
    """Stages run at once at most: 0 = as many as the cluster fits (each ready stage whose
    smallest form fits in the CPUs and GPUs the running ones leave; fame_ray.study.schedule),
    1 = one after another."""
    storage: StorageConfig = field(default_factory=StorageConfig)
    """Where the study lives: <path>/<run_name>/ holds its record, its runs and its report
    (run_name = the study name)."""

    def __post_init__(self):
        self.methods = tuple(self.methods)
        self.splits = tuple(int(split) for split in self.splits)
        _check_finite(self, "study ")
        _check(bool(self.methods), "study methods: name at least one", f"e.g. --methods {METHODS[0]}")
        unknown = [method for method in self.methods if method not in METHODS]
        _check(not unknown, f"unknown method(s) {', '.join(unknown)}", f"use any of {', '.join(METHODS)}")
        _check(len(set(self.methods)) == len(self.methods), "study methods: each method once")
        _check(
            not self.pretrained or len(self.methods) == 1,
            "--pretrained gives one encoder: a study of several methods pretrains each",
            "drop --pretrained or name one method",
        )
        _check_location(self.pretrained, "--pretrained")
        for key in ("finetune_on", "linear_on", "retrieval_on", "optional"):
            _check_datasets(getattr(self, key), key)
        _check(bool(self.splits), "study splits: name at least one", "e.g. splits: [1, 2, 3]")
        _check(
            all(split in (1, 2, 3) for split in self.splits) and len(set(self.splits)) == len(self.splits),
            f"study splits must be distinct official splits 1, 2 or 3, got {list(self.splits)}",
        )
        _check(
            isinstance(self.concurrent_stages, int) and self.concurrent_stages >= 0,
            f"study concurrent_stages must be 0 (as many as fit) or a positive number, got {self.concurrent_stages}",
            "e.g. --set concurrent_stages=1 to run the stages one after another",
        )
        _check(self.paper in PAPER_SETTINGS, f"study paper must be one of {', '.join(PAPER_SETTINGS)}")
        for key in SECTIONS:
            _check_section(getattr(self, key), key)
        _check_section(self.data_roots, "data_roots")
        for name, root in self.data_roots.items():
            _check(name in DATASETS, f"study data_roots: unknown dataset '{name}'", f"use any of {', '.join(DATASETS)}")
            _check(isinstance(root, str) and bool(root), f"study data_roots.{name} must be a folder or s3:// prefix")
            _check_location(root, f"data_roots.{name}")

    def method_names(self) -> tuple[str, ...]:
        """The methods as the table names them ('pretrained' for existing weights)."""
        return ("pretrained",) if self.pretrained else self.methods

    def splits_of(self, dataset: str) -> tuple[int, ...]:
        """The study's splits that `dataset` has (Diving48: only split 1)."""
        return tuple(split for split in self.splits if split in EVALUATION_SPLITS[dataset]) or (1,)
