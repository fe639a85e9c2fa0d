"""The typed config (`tree`), its plain-data form and the one assembly path (`io`), and the named
presets (`presets`). The tree's names are re-exported here: `from fame_ray.config import PretrainConfig`."""

from fame_ray.config.io import apply_overrides, build, from_dict, load_yaml, merge, parse_yaml, to_dict
from fame_ray.config.study import StudyConfig
from fame_ray.config.tree import (
    ARCHS,
    DATASET_DIRS,
    DATASETS,
    METHODS,
    BackgroundErasingConfig,
    DataConfig,
    DCLRConfig,
    FameConfig,
    FinetuneConfig,
    MoCoConfig,
    ModelConfig,
    OptimConfig,
    PretrainConfig,
    PretrainTrainConfig,
    StorageConfig,
    TrainConfig,
    data_home,
)

__all__ = [
    "ARCHS",
    "DATASETS",
    "DATASET_DIRS",
    "METHODS",
    "BackgroundErasingConfig",
    "DCLRConfig",
    "DataConfig",
    "FameConfig",
    "FinetuneConfig",
    "ModelConfig",
    "MoCoConfig",
    "OptimConfig",
    "PretrainConfig",
    "PretrainTrainConfig",
    "StorageConfig",
    "StudyConfig",
    "TrainConfig",
    "apply_overrides",
    "build",
    "data_home",
    "from_dict",
    "load_yaml",
    "merge",
    "parse_yaml",
    "to_dict",
]
