"""No credential ends up in a file a run writes.

A short pretraining and a short linear probe run with fake AWS credentials and a Ray token in the
environment of the driver and of every Ray worker (token auth on, as Ray starts a local instance
by default). Then every file under the storage root and the manifest folder is scanned for the
secret strings: checkpoints (state.pt, also inside its zip members), config.yaml, meta.json,
metrics.jsonl, TensorBoard events, results.json/md, Ray Train's and Tune's own files, Parquet
manifests (read back, since Parquet pages are compressed).

Only the public entry points are used (`run_pretrain`, `run_finetune` with configs from
`config.build` over the presets), so the test holds whatever the internals become.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from fame_ray.config import FinetuneConfig, PretrainConfig, build, presets

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAFAKEKEYID1234567",
    "AWS_SECRET_ACCESS_KEY": "fakeSecretAccessKey/for+the/scan/0123456789abcdef",
    "AWS_SESSION_TOKEN": "FakeSessionToken/for+the/scan/9876543210fedcba",
    "RAY_AUTH_TOKEN": "fakeraytokenforthescan0123456789abcdef0123456789",
}


def secrets_in(path: Path) -> list[str]:
    """Names of the secrets found in one file: its bytes, each member of a zip (torch.save
    writes one), and the rows of a Parquet file."""
    blobs = [path.read_bytes()]
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            blobs += [archive.read(name) for name in archive.namelist()]
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        blobs.append(str(pq.read_table(path).to_pylist()).encode())
    return sorted({name for name, value in SECRETS.items() for blob in blobs if value.encode() in blob})


def test_the_scan_finds_what_it_looks_for(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    with zipfile.ZipFile(tmp_path / "packed.pt", "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data.pkl", f"key={SECRETS['AWS_ACCESS_KEY_ID']}" * 50)
    pq.write_table(pa.table({"path": [SECRETS["RAY_AUTH_TOKEN"]] * 100}), tmp_path / "rows.parquet", compression="zstd")
    (tmp_path / "plain.txt").write_text(SECRETS["AWS_SESSION_TOKEN"])
    assert secrets_in(tmp_path / "packed.pt") == ["AWS_ACCESS_KEY_ID"]
    assert secrets_in(tmp_path / "rows.parquet") == ["RAY_AUTH_TOKEN"]
    assert secrets_in(tmp_path / "plain.txt") == ["AWS_SESSION_TOKEN"]


@pytest.fixture(scope="module")
def ray_with_secrets():
    """A private local Ray started with the secrets in its environment (so every worker has
    them too), stopped afterwards; the environment is restored."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in SECRETS.items():
            patch.setenv(name, value)
        patch.delenv("RAY_AUTH_MODE", raising=False)
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        # The dashboard stays on (Ray's default): Ray Train V2 frees finished trials' placement groups through it.
        ray.init(address="local", num_cpus=2, log_to_driver=False, configure_logging=False)
        yield ray
        ray.shutdown()


@pytest.mark.timeout(420)
def test_no_secret_in_any_file_a_run_writes(synth_root, tmp_path, ray_with_secrets):
    from fame_ray.downstream.finetune import run_finetune
    from fame_ray.pretrain.driver import run_pretrain

    @ray_with_secrets.remote(num_cpus=0)
    def worker_environment():
        return {name: os.environ.get(name) for name in SECRETS}

    assert ray_with_secrets.get(worker_environment.remote()) == SECRETS  # the workers do hold them

    runs, manifests = tmp_path / "runs", tmp_path / "manifests"
    data = {"dataset": "ucf101", "data_root": synth_root, "manifest_dir": str(manifests)}
    run_pretrain(
        build(
            PretrainConfig,
            presets.demo_pretrain(),
            None,
            {
                "data": data,
                "train": {
                    "num_workers": 1,
                    "max_steps": 2,
                    "epochs": 1,
                    "global_batch": 8,
                    "checkpoint_every": 1,
                    "log_every": 1,
                },
                "moco": {"queue_size": 64},
                "storage": {"path": str(runs), "run_name": "pretrain-secrets"},
            },
        )
    )
    record = run_finetune(
        build(
            FinetuneConfig,
            presets.demo_finetune(),
            None,
            {
                "data": {**data, "data_cpus": 0.5, "eval_clips": 1},
                "train": {"epochs": 1, "global_batch": 4, "cpus_per_worker": 0.5},
                "storage": {"path": str(runs), "run_name": "linear-secrets"},
                "pretrained": str(runs / "pretrain-secrets"),
                "mode": "linear",
                "optim": {"milestones": [1]},
            },
        )
    )
    assert record["trials"][0]["status"] == "completed", record["trials"]

    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    names = {path.name for path in written}
    assert {"state.pt", "config.yaml", "meta.json", "metrics.jsonl", "results.json", "results.md"} <= names, names
    assert any(name.startswith("events.out.tfevents") for name in names)
    assert any(name.endswith(".parquet") for name in names)
    leaks = {str(path.relative_to(tmp_path)): found for path in written if (found := secrets_in(path))}
    assert not leaks, leaks
