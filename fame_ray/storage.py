"""URIs -> pyarrow filesystems (local or S3-compatible), and boto3 helpers.

Every S3 access in fame-ray goes through here. The endpoint comes from the config
(`--s3-endpoint`) or AWS_ENDPOINT_URL, so MinIO, Ceph, R2 and moto's server work like AWS.
Credentials come from the usual AWS chain (environment, instance role); none is stored.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

import pyarrow.fs as pafs

from fame_ray.errors import UserError


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def split_s3(uri: str) -> tuple[str, str]:
    """'s3://bucket/a/b' -> ('bucket', 'a/b')."""
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def endpoint_url(endpoint: str = "") -> str:
    return endpoint or os.environ.get("AWS_ENDPOINT_URL", "") or os.environ.get("AWS_ENDPOINT_URL_S3", "")


def s3_filesystem(endpoint: str = "") -> pafs.S3FileSystem:
    """pyarrow S3 filesystem for AWS or any S3-compatible endpoint."""
    url = endpoint_url(endpoint)
    kwargs = {}
    if url:
        parsed = urlparse(url)
        kwargs["endpoint_override"] = parsed.netloc or parsed.path
        kwargs["scheme"] = parsed.scheme or "http"
        kwargs["force_virtual_addressing"] = False
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    return pafs.S3FileSystem(**kwargs, connect_timeout=5, request_timeout=30, retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=3))


def filesystem(uri: str, endpoint: str = "") -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path or an s3:// URI."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        return s3_filesystem(endpoint), f"{bucket}/{key}".rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))


def boto3_client(endpoint: str = ""):
    """A boto3 S3 client for the same endpoint pyarrow uses."""
    import boto3
    from botocore.config import Config

    url = endpoint_url(endpoint)
    config = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"}, s3={"addressing_style": "path"})
    return boto3.client("s3", endpoint_url=url or None, config=config)


def check_writable_root(uri: str, endpoint: str = "") -> None:
    """Fail early, with the fix, when an s3:// root's endpoint or bucket cannot be reached."""
    if not is_s3(uri):
        return
    bucket, _ = split_s3(uri)
    if not bucket:
        raise UserError(f"storage URI '{uri}' names no bucket", "use s3://BUCKET/PREFIX")
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3_client(endpoint)
    where = endpoint_url(endpoint) or "AWS"
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchBucket", "NotFound"):
            raise UserError(f"bucket '{bucket}' does not exist at {where}", "create it first (e.g. `aws s3 mb s3://" + bucket + "`) or fix --storage") from None
        raise UserError(f"cannot access bucket '{bucket}' at {where}: {code or error}", "check credentials and the bucket policy") from None
    except BotoCoreError as error:
        raise UserError(f"cannot reach the S3 endpoint {where}: {error}", "check --s3-endpoint / AWS_ENDPOINT_URL") from None


def join(root: str, *parts: str) -> str:
    """Join URI or path parts with '/'."""
    return "/".join([root.rstrip("/")] + [p.strip("/") for p in parts if p])


def exists(uri: str, endpoint: str = "") -> bool:
    fs, path = filesystem(uri, endpoint)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def read_bytes(uri: str, endpoint: str = "") -> bytes:
    fs, path = filesystem(uri, endpoint)
    with fs.open_input_stream(path) as stream:
        return stream.read()


def write_bytes(uri: str, data: bytes, endpoint: str = "") -> None:
    fs, path = filesystem(uri, endpoint)
    parent = path.rsplit("/", 1)[0]
    if not is_s3(uri):
        fs.create_dir(parent, recursive=True)
    with fs.open_output_stream(path) as stream:
        stream.write(data)
