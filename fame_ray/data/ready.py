"""The one step a command takes before its run reads a dataset: the built-in synthetic dataset
written if that is the dataset asked for, then the manifests prepared if absent or stale.

    manifests = ready.manifests(cfg.data, cfg.data_location())   # {'train': Location, 'test': Location}

Nothing else writes a dataset or its manifests: asking the catalog where they are
(`catalog.locate`, `catalog.class_names`) reads and writes nothing.
"""

from __future__ import annotations

from fame_ray.config import DataConfig
from fame_ray.data import catalog, synthetic
from fame_ray.storage import Location


def manifests(data: DataConfig, source: Location) -> dict[str, Location]:
    """The 'train' and 'test' manifests of `data`, ready to read (see the module docstring)."""
    if data.dataset == "synthetic":
        synthetic.ensure_default(source.uri)
    return catalog.ensure(data, source)
