"""`ray job submit -- fame-ray pretrain` against a real head with token authentication on.

The documented cluster workflow (jobs/README.md) end to end, on this machine: a head started
with `ray start --head` on 127.0.0.1 (tests/integration/cluster_head.py), the job submitted with
the `ray job submit` CLI, `--working-dir .` and jobs/runtime-env.yaml, the token travelling in
the submitter's RAY_AUTH_TOKEN; the job must SUCCEED and leave a complete checkpoint. Clients
without the token, or with a wrong one, are refused: by the job API (HTTP 401/403, and the
`ray job submit` CLI) and by the GCS (a driver's `ray.init`). The head is killed by its own process
group whatever happens.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from cluster_head import BIN, start_head, stop_head

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[2]
JOB_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def head():
    # 2 CPUs, as this machine: the demo's 2 training workers plus Ray Data share them.
    local_head = start_head(num_cpus=2, extra_args=["--object-store-memory", str(400 * 1024**2)])
    try:
        yield local_head
    finally:
        stop_head(local_head)


def ray_cli(head, *args: str, with_token: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "ray"), *args], env=head.client_env(with_token), cwd=ROOT,
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def job_info(head, submission_id: str) -> dict:
    response = requests.get(f"{head.dashboard_url}/api/jobs/{submission_id}", headers=head.auth_headers(), timeout=10)
    response.raise_for_status()
    return response.json()


def wait_for_job(head, submission_id: str, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    info = job_info(head, submission_id)
    while info["status"] not in ("SUCCEEDED", "FAILED", "STOPPED") and time.monotonic() < deadline:
        time.sleep(3)
        info = job_info(head, submission_id)
    return info


def job_logs(head, submission_id: str) -> str:
    response = requests.get(
        f"{head.dashboard_url}/api/jobs/{submission_id}/logs", headers=head.auth_headers(), timeout=10
    )
    return response.json().get("logs", "") if response.ok else f"(logs unavailable: {response.status_code})"


def test_clients_without_the_token_are_refused(head):
    jobs = f"{head.dashboard_url}/api/jobs/"
    assert requests.get(jobs, timeout=10).status_code == 401
    assert requests.get(jobs, headers={"Authorization": "Bearer " + "0" * 64}, timeout=10).status_code == 403
    assert requests.get(jobs, headers=head.auth_headers(), timeout=10).status_code == 200
    refused = ray_cli(
        head, "job", "submit", "--address", head.dashboard_url, "--no-wait", "--", "echo", "hi", with_token=False
    )
    assert refused.returncode != 0
    assert "401" in refused.stdout + refused.stderr or "Authentication" in refused.stdout + refused.stderr
    # Nothing was submitted by the refused client.
    assert requests.get(jobs, headers=head.auth_headers(), timeout=10).json() == []


def test_a_driver_without_the_token_is_refused_by_the_gcs(head):
    driver = subprocess.run(
        [sys.executable, "-c", f"import ray; ray.init(address='{head.gcs_address}'); print('connected')"],
        env=head.client_env(with_token=False), capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    assert driver.returncode != 0 and "connected" not in driver.stdout
    assert "InvalidAuthToken" in driver.stderr, driver.stderr[-2000:]


def test_submitted_pretrain_job_succeeds_and_checkpoints(head, tmp_path):
    runs, data = tmp_path / "runs", tmp_path / "data" / "synthetic"
    submission_id = f"fame-ray-test-{uuid.uuid4().hex[:8]}"
    entrypoint = [
        "fame-ray", "pretrain", "--config", "jobs/pretrain-demo.yaml",
        "--data-root", str(data), "--storage", str(runs), "--run-name", "cluster-job",
        "--max-steps", "3", "--set", "train.checkpoint_every=2", "--set", "train.log_every=1",
        "--set", "train.readout_every=0",  # the in-run read-out is tested in test_pretrain.py
    ]  # fmt: skip
    # The head's job agent can come up after the job API answers (Ray says "No available agent
    # to submit job, please try again later"): try again, as it asks, for up to a minute.
    deadline = time.monotonic() + 60
    while True:
        submitted = ray_cli(
            head, "job", "submit", "--address", head.dashboard_url, "--submission-id", submission_id,
            "--working-dir", ".", "--runtime-env", "jobs/runtime-env.yaml", "--no-wait", "--", *entrypoint,
        )  # fmt: skip
        if (
            submitted.returncode == 0
            or "No available agent" not in submitted.stdout + submitted.stderr
            or time.monotonic() > deadline
        ):
            break
        time.sleep(3)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    try:
        info = wait_for_job(head, submission_id, JOB_TIMEOUT_S)
    finally:
        requests.post(f"{head.dashboard_url}/api/jobs/{submission_id}/stop", headers=head.auth_headers(), timeout=10)
    logs = job_logs(head, submission_id)
    assert info["status"] == "SUCCEEDED", f"{info['status']}: {info.get('message')}\n{logs[-4000:]}"
    # The runtime env from the file reached the job (and holds no credential).
    assert info["runtime_env"]["env_vars"]["PYTHONUNBUFFERED"] == "1"
    checkpoints = sorted((runs / "cluster-job").glob("checkpoint_*"))
    complete = [c for c in checkpoints if (c / "meta.json").exists() and (c / "state.pt").exists()]
    assert complete, f"no complete checkpoint under {runs}: {checkpoints}\n{logs[-3000:]}"
    meta = json.loads((complete[-1] / "meta.json").read_text())
    assert meta["step"] >= 2
    # The token is in no log line and no checkpoint file.
    assert head.token not in logs
    for path in (runs / "cluster-job").rglob("*"):
        if path.is_file() and path.stat().st_size < 5_000_000:
            assert head.token.encode() not in path.read_bytes(), path
