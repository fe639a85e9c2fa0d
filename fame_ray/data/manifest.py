"""The Parquet manifest: one row per video of one dataset split.

Every dataset layout (catalog.py) ends here, and every pipeline starts here. The schema's
metadata holds the fingerprint of the dataset the manifest was built from (fingerprint.py),
read back without reading the rows.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from fame_ray.storage import Location

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


FINGERPRINT_KEY = b"fame_ray.dataset_fingerprint"


def write(table: pa.Table, location: Location, fingerprint: dict | None = None) -> None:
    """Write a manifest (atomically for local files: the bytes are built first, then stored),
    with the dataset's fingerprint in the schema metadata."""
    schema = SCHEMA.with_metadata({FINGERPRINT_KEY: json.dumps(fingerprint)}) if fingerprint else SCHEMA
    sink = pa.BufferOutputStream()
    pq.write_table(table.cast(schema), sink)
    location.write_bytes(sink.getvalue().to_pybytes())


def read_fingerprint(location: Location) -> dict | None:
    """The dataset fingerprint a manifest was built from (only the file's footer is read);
    None when it holds none or the file is not a readable manifest."""
    try:
        metadata = pq.read_schema(location.path, filesystem=location.filesystem).metadata or {}
        stored = json.loads(metadata[FINGERPRINT_KEY]) if FINGERPRINT_KEY in metadata else None
    except (OSError, ValueError, pa.ArrowException):
        return None
    return stored if isinstance(stored, dict) else None


def read(location: Location) -> pa.Table:
    return pq.read_table(location.path, filesystem=location.filesystem, schema=SCHEMA)
