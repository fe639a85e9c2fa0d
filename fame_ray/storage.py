"""Where fame-ray reads and writes: a `Location` is a local path or an s3:// URI together with the
S3 endpoint that serves it, passed around as one value.

    runs = Location.parse("s3://bucket/runs", endpoint="http://minio:9000")
    (runs / "my-run" / "metrics.jsonl").write_text("...")
    Location.parse("~/fame-ray-runs").exists()

Every S3 access in fame-ray goes through here. The endpoint comes from the config
(`--s3-endpoint`) or AWS_ENDPOINT_URL, so MinIO, Ceph, R2 and moto's server work like AWS; it is
resolved once, where the Location is made, so Ray workers use the driver's endpoint. Credentials
come from the usual AWS chain (environment, instance role); none is stored or printed.
Local writes are atomic (a temporary name, then a rename): a reader never sees half a file.
"""

from __future__ import annotations

import functools
import json
import os
import posixpath
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import urlparse

import pyarrow.fs as pafs

from fame_ray.errors import UserError

# The only schemes fame-ray reads or writes; anything else (ftp://, gs://, file://, S3://)
# would otherwise become a local folder named after the scheme.
S3_SCHEME = "s3://"
_ENDPOINT_SCHEMES = ("http", "https")
# Every JSON file fame-ray reads back (meta.json, metrics.jsonl, results.json, transcode.json) is
# a few levels deep; a file nested deeper was not written by fame-ray, and nesting near Python's
# recursion limit would crash the parser or whatever prints the value.
JSON_MAX_DEPTH = 32


def endpoint_url(endpoint: str = "") -> str:
    """The S3 endpoint: the given one, else AWS_ENDPOINT_URL(_S3), else '' (AWS itself)."""
    return endpoint or os.environ.get("AWS_ENDPOINT_URL", "") or os.environ.get("AWS_ENDPOINT_URL_S3", "")


def _parse_url(text: str):
    """urlparse, or None for text it cannot take apart (an unclosed '[', a port that is not a number)."""
    try:
        parsed = urlparse(text)
        _ = parsed.port  # raises ValueError for a port that is not a number
    except ValueError:
        return None
    return parsed


def check_endpoint(endpoint: str) -> str:
    """An endpoint URL that can be used, or a UserError that names the fix. The endpoint itself
    is never echoed: it may carry a password."""
    if not endpoint:
        return ""
    parsed = _parse_url(endpoint)
    if parsed is None or parsed.scheme not in _ENDPOINT_SCHEMES or not parsed.hostname:
        raise UserError(
            "--s3-endpoint / AWS_ENDPOINT_URL is not an http(s) URL", "e.g. --s3-endpoint http://127.0.0.1:9000"
        )
    if parsed.username or parsed.password:
        raise UserError(
            "--s3-endpoint / AWS_ENDPOINT_URL carries credentials",
            "drop user:password@ from it; use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        )
    return endpoint.rstrip("/")


def check_uri(uri: str) -> str:
    """A local path or an s3://BUCKET/PREFIX URI; any other scheme is a UserError. The URI is
    not echoed in the message (it may carry user:password@); the caller names the flag."""
    if "://" in uri and not uri.startswith(S3_SCHEME):
        scheme = uri.split("://", 1)[0]
        raise UserError(
            f"'{scheme}://' locations are not supported",
            "use a local path or s3://BUCKET/PREFIX, with s3 in lower case",
        )
    if uri.startswith(S3_SCHEME):
        parsed = _parse_url(uri)
        if parsed is None or not parsed.hostname:
            raise UserError("an s3:// location names no bucket", "use s3://BUCKET/PREFIX")
        if "@" in parsed.netloc:
            raise UserError(
                "an s3:// location carries credentials",
                "drop user:password@; use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            )
    return uri


def check_nesting(value, max_depth: int = JSON_MAX_DEPTH, max_items: int = 1_000_000) -> None:
    """ValueError when the lists and dicts of a parsed JSON or YAML value nest deeper than
    `max_depth` or hold more than `max_items` values in all (a YAML alias repeated inside itself
    expands exponentially). Walked without recursion, and never past `max_items`."""
    pending, seen = [(value, 1)], 0
    while pending:
        item, level = pending.pop()
        seen += 1
        if seen > max_items:
            raise ValueError(f"more than {max_items} values")
        if isinstance(item, (list, dict)):
            if level > max_depth:
                raise ValueError(f"nested deeper than {max_depth} levels")
            children = list(item.keys()) + list(item.values()) if isinstance(item, dict) else item
            pending.extend((child, level + 1) for child in children)


def parse_json(data: bytes | str, max_depth: int = JSON_MAX_DEPTH):
    """json.loads for files read back from storage: ValueError (never RecursionError) for text
    that is not JSON, not UTF-8, or nested deeper than `max_depth` levels."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply to parse") from None
    check_nesting(value, max_depth)
    return value


def write_file_atomically(path: str, write: Callable[[BinaryIO], object]) -> None:
    """Write a local file through `write(stream)` under a hidden temporary name in the same
    folder, then rename it into place: a reader never sees half a file, and a write that fails
    midway leaves nothing under the real name (and no temporary file either)."""
    directory, name = os.path.split(path)
    handle, temporary = tempfile.mkstemp(dir=directory or ".", prefix=f".{name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


@functools.lru_cache(maxsize=8)
def s3_filesystem(endpoint: str = "") -> pafs.S3FileSystem:
    """pyarrow S3 filesystem for AWS or any S3-compatible endpoint (one per endpoint and process)."""
    kwargs = {}
    if endpoint:
        parsed = urlparse(endpoint)
        kwargs["endpoint_override"] = parsed.netloc
        kwargs["scheme"] = parsed.scheme
        kwargs["force_virtual_addressing"] = False
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    retries = pafs.AwsStandardS3RetryStrategy(max_attempts=3)
    return pafs.S3FileSystem(**kwargs, connect_timeout=5, request_timeout=30, retry_strategy=retries)


def boto3_client(endpoint: str = ""):
    """A boto3 S3 client for the same endpoint pyarrow uses."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=5,
        read_timeout=30,
        retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path"},
    )
    return boto3.client("s3", endpoint_url=endpoint_url(endpoint) or None, config=config)


@functools.lru_cache(maxsize=8)
def _cached_boto3_client(endpoint: str):
    """One boto3 client per endpoint and process, for many small requests (clients are thread-safe)."""
    return boto3_client(endpoint)


@dataclass(frozen=True)
class Location:
    """A local path (absolute) or an s3://bucket/key URI, and the endpoint of its S3 service."""

    uri: str
    endpoint: str = ""

    @classmethod
    def parse(cls, uri: str, endpoint: str = "") -> Location:
        """Check the scheme and the endpoint; expand `~` and make local paths absolute."""
        uri = check_uri(str(uri))
        if uri.startswith(S3_SCHEME):
            return cls(uri.rstrip("/"), check_endpoint(endpoint_url(endpoint)))
        return cls(os.path.abspath(os.path.expanduser(uri)), check_endpoint(endpoint_url(endpoint)))

    def __str__(self) -> str:
        return self.uri

    def __truediv__(self, part: str) -> Location:
        return self.join(part)

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith(S3_SCHEME)

    @property
    def name(self) -> str:
        return posixpath.basename(self.uri.rstrip("/"))

    @property
    def parent(self) -> Location:
        return Location(posixpath.dirname(self.uri.rstrip("/")), self.endpoint)

    @property
    def bucket(self) -> str:
        return urlparse(self.uri).netloc if self.is_s3 else ""

    def join(self, *parts: str) -> Location:
        """A location below this one ('a/b' parts are fine; empty parts are skipped)."""
        return Location("/".join([self.uri.rstrip("/")] + [p.strip("/") for p in parts if p]), self.endpoint)

    def at(self, uri: str) -> Location:
        """Another URI served by the same endpoint (e.g. a video path listed in a manifest)."""
        return Location(uri, self.endpoint)

    @property
    def filesystem(self) -> pafs.FileSystem:
        return s3_filesystem(self.endpoint) if self.is_s3 else pafs.LocalFileSystem()

    @property
    def path(self) -> str:
        """The path inside `filesystem` ('bucket/key' for S3)."""
        if self.is_s3:
            parsed = urlparse(self.uri)
            return f"{parsed.netloc}/{parsed.path.lstrip('/')}".rstrip("/")
        return self.uri

    def info(self) -> pafs.FileInfo:
        return self.filesystem.get_file_info(self.path)

    def exists(self) -> bool:
        return self.info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self.info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        return self.info().type == pafs.FileType.Directory

    def children(self) -> list[pafs.FileInfo]:
        """Entries directly inside (none when it does not exist), sorted by name."""
        selector = pafs.FileSelector(self.path, allow_not_found=True)
        return sorted(self.filesystem.get_file_info(selector), key=lambda info: info.base_name)

    def read_bytes(self) -> bytes:
        with self.filesystem.open_input_stream(self.path) as stream:
            return stream.read()

    def read_text(self) -> str:
        return self.read_bytes().decode("utf-8")

    def write_bytes(self, data: bytes) -> None:
        """Write the whole object; local files go to a temporary name first, then are renamed."""
        if self.is_s3:
            with self.filesystem.open_output_stream(self.path) as stream:
                stream.write(data)
            return
        os.makedirs(os.path.dirname(self.uri), exist_ok=True)
        write_file_atomically(self.uri, lambda stream: stream.write(data))

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode("utf-8"))

    def put_bytes(self, data: bytes) -> None:
        """Write the whole object in one request: on S3 a single PutObject (pyarrow's stream
        uploads in parts, and a process killed between parts leaves an unfinished upload behind);
        local files as write_bytes. For finished files well under S3's 5 GiB single-PUT limit."""
        if not self.is_s3:
            self.write_bytes(data)
            return
        key = urlparse(self.uri).path.lstrip("/")
        _cached_boto3_client(self.endpoint).put_object(Bucket=self.bucket, Key=key, Body=data)

    def make_dirs(self) -> None:
        """Create a local folder (S3 has no folders to create)."""
        if not self.is_s3:
            os.makedirs(self.uri, exist_ok=True)

    def delete_dir(self) -> None:
        self.filesystem.delete_dir(self.path)

    def check_writable_root(self) -> None:
        """Fail early, with the fix, when an s3:// root's endpoint or bucket cannot be reached."""
        if not self.is_s3:
            return
        from botocore.exceptions import BotoCoreError, ClientError

        where = self.endpoint or "AWS"
        try:
            boto3_client(self.endpoint).head_bucket(Bucket=self.bucket)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise UserError(
                    f"bucket '{self.bucket}' does not exist at {where}",
                    f"create it first (e.g. `aws s3 mb s3://{self.bucket}`) or fix --storage",
                ) from None
            raise UserError(
                f"cannot access bucket '{self.bucket}' at {where}: {code or type(error).__name__}",
                "check credentials and the bucket policy",
            ) from None
        except BotoCoreError as error:
            raise UserError(
                f"cannot reach the S3 endpoint {where}: {type(error).__name__}",
                "check --s3-endpoint / AWS_ENDPOINT_URL",
            ) from None
