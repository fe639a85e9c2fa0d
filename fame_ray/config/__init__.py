"""The typed config (`tree`), its plain-data form and the one assembly path (`io`), and the named
presets (`presets`). The tree's names are re-exported here: `from fame_ray.config import PretrainConfig`."""

from fame_ray.config.io import apply_overrides, build, from_dict, load_yaml, merge, to_dict
from fame_ray.config.tree import (
    ARCHS,
    METHODS,
    DATASET_DIRS,
    DATASETS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    KINETICS_MEAN,
    KINETICS_STD,
    NUM_CLASSES,
    BackgroundErasingConfig,
    DataConfig,
    FameConfig,
    FinetuneConfig,
    ModelConfig,
    MoCoConfig,
    OptimConfig,
    PretrainConfig,
    StorageConfig,
    TrainConfig,
    data_home,
)

__all__ = [
    "ARCHS", "METHODS", "BackgroundErasingConfig", "DATASETS", "DATASET_DIRS", "IMAGENET_MEAN", "IMAGENET_STD", "KINETICS_MEAN", "KINETICS_STD", "NUM_CLASSES", "DataConfig", "FameConfig",
    "FinetuneConfig", "ModelConfig", "MoCoConfig", "OptimConfig", "PretrainConfig", "StorageConfig", "TrainConfig",
    "apply_overrides", "build", "data_home", "from_dict", "load_yaml", "merge", "to_dict",
]
