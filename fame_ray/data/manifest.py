"""The Parquet manifest: one row per video of one dataset split.

Every dataset layout (catalog.py) ends here, and every pipeline starts here.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from fame_ray import storage

SCHEMA = pa.schema(
    [
        ("path", pa.string()),  # absolute local path or s3:// URI
        ("label", pa.int32()),  # 0-based class index
        ("label_name", pa.string()),
        ("split", pa.string()),  # "train", "test" or "val"
        ("num_frames", pa.int32()),
        ("fps", pa.float32()),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("start_frame", pa.int32()),  # first usable frame (Diving48 annotations), else 0
        ("end_frame", pa.int32()),  # one past the last usable frame, else num_frames
    ]
)


def manifest_name(dataset: str, split: int, subset: str) -> str:
    """File name of one manifest: e.g. 'ucf101_split1_train.parquet'."""
    return f"{dataset}_split{split}_{subset}.parquet"


def write(table: pa.Table, uri: str, endpoint: str = "") -> None:
    fs, path = storage.filesystem(uri, endpoint)
    if not storage.is_s3(uri):
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    pq.write_table(table.cast(SCHEMA), path, filesystem=fs)


def read(uri: str, endpoint: str = "") -> pa.Table:
    fs, path = storage.filesystem(uri, endpoint)
    return pq.read_table(path, filesystem=fs, schema=SCHEMA)
