"""Shared fixtures: tiny synthetic datasets, a local Ray instance, an S3 server on loopback."""

from __future__ import annotations

import os
import socket

import pytest


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """A tiny synthetic dataset in the UCF101 layout (learnable classes)."""
    from fame_ray.data.synthetic import write_dataset

    out = tmp_path_factory.mktemp("synth") / "UCF101"
    write_dataset(str(out), layout="ucf101", num_classes=4, videos_per_class=6, frames=40, seed=0)
    return str(out)


@pytest.fixture(scope="module")
def s3_credentials():
    """Ray workers start before a per-test S3 server: give them its (fake) credentials first
    (a module that reads S3 from Ray tasks lists it in its pytestmark's usefixtures)."""
    saved = {
        k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION")
    }
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
    )
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _local_ray():
    """A private local Ray instance (2 CPUs) whose processes descend from this one, then stopped."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    # address="local": never join a cluster some other process started on this machine.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray instance for one test module."""
    yield from _local_ray()


@pytest.fixture
def ray_fresh():
    """A local Ray instance for one test (a test that kills Ray's processes, or must not share one)."""
    yield from _local_ray()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def s3_server(monkeypatch):
    """A real S3-speaking HTTP server (moto's server mode) on 127.0.0.1; yields its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port())
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": url,
    }.items():
        monkeypatch.setenv(key, value)
    yield url
    server.stop()


@pytest.fixture
def bucket(s3_server):
    """A fresh bucket on the loopback S3 server: yields 's3://<name>'."""
    from fame_ray import storage

    storage.boto3_client(s3_server).create_bucket(Bucket="fame-ray-test")
    return "s3://fame-ray-test"


def pytest_collection_modifyitems(config, items):
    """GPU tests skip themselves when CUDA is absent."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs CUDA"))
