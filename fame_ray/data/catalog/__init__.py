"""The offline side of the data path: a dataset root in its official layout (`layouts`, `generic`,
read through `listing.Tree`) -> probed videos (`probe`) -> Parquet manifests with the dataset's
fingerprint (`manifests`, `fingerprint`). The manifest format itself (`fame_ray.data.manifest`) is
the one contract between this side and the online clip path (`fame_ray.data.clips`)."""

from fame_ray.data.catalog.manifests import (
    READERS,
    PrepareResult,
    class_names,
    ensure,
    locate,
    manifest_dir,
    prepare,
    scan,
)

__all__ = ["READERS", "PrepareResult", "class_names", "ensure", "locate", "manifest_dir", "prepare", "scan"]
