"""`fame-ray data prepare`: read a dataset layout, probe its videos on Ray, write manifests."""

from __future__ import annotations

from typing import Annotated

import typer

from fame_ray.commands import common
from fame_ray.config import PretrainConfig, presets

OutDir = Annotated[
    str | None,
    typer.Option("--out", help="Folder or s3:// prefix for the manifests (default: <data root>/.fame-ray)."),
]


def prepare(
    dataset: common.Dataset = None,
    data_root: common.DataRoot = None,
    split: common.Split = None,
    csv: common.CsvList = None,
    out: OutDir = None,
    s3_endpoint: common.S3Endpoint = None,
    config_file: common.ConfigFile = None,
    overrides: common.Overrides = None,
) -> None:
    """Write the Parquet manifests of a dataset split (train and test), probing every video.

    Reads the official layout (UCF101, HMDB51, Diving48 V2, Kinetics-400) or a folder of
    class folders or a `path,label` CSV, from a local folder or an s3:// prefix; probes
    frame count, fps and size of every video in parallel on Ray (a local instance unless
    RAY_ADDRESS is set); skips unreadable or missing videos and lists them in a report
    beside the manifests.

    Examples:

      fame-ray data prepare --dataset ucf101 --data-root ~/fame-ray-data/UCF101 --split 2

      fame-ray data prepare --dataset kinetics400 --data-root s3://datasets/kinetics400 --s3-endpoint http://minio:9000

      fame-ray data prepare --dataset folder --data-root ~/videos/my-classes

      fame-ray data prepare --dataset csv --csv lists/my-videos.csv --out /tmp/manifests

      fame-ray data prepare --config jobs/pretrain-k400-i3d.yaml
    """
    common.start_logging()
    from fame_ray.data import catalog, synthetic  # ray, pyarrow and decord: loaded only to run

    flags = {
        "data": {**common.data_flags(dataset, data_root, split, csv), "manifest_dir": out},
        "storage": common.storage_flags(s3_endpoint=s3_endpoint),
    }
    config = common.assemble(PretrainConfig, presets.PRETRAIN, flags, dataset, config_file, "recipe", overrides)
    source = config.data_location()
    if config.data.dataset == "synthetic":
        synthetic.ensure_default(source.uri)
    result = catalog.prepare(config.data, source)
    typer.echo(f"split {result.split} of {result.variant}")
    typer.echo(
        f"  classes: {result.num_classes} "
        f"({', '.join(result.class_names[:5])}{', ...' if result.num_classes > 5 else ''})"
    )
    for subset, uri in result.manifests.items():
        typer.echo(f"  {subset:5} {result.counts[subset]:7d} videos -> {uri}")
    typer.echo(f"  skipped {len(result.skipped)} videos" + (f" (listed in {result.report})" if result.skipped else ""))
    typer.echo(f"  class names -> {result.classes_file}  ({result.seconds:.1f}s)")
