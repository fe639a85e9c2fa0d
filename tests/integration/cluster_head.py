"""A real `ray start --head` on 127.0.0.1 for the cluster tests, with token authentication on.

The head runs as `ray start --head --block` in a new session (its own process group): every
Ray process it starts (GCS, raylet, dashboard, autoscaler, workers, and the fake nodes the
autoscaler launches) stays in that group, so stopping the head means killing that group, never
`ray stop` (which stops every Ray on the machine, including other tests'). Job drivers run in
sessions of their own, so every process also carries a unique marker in its environment and
`stop` kills what is left with that marker, by process id.

The token is generated per head and given through RAY_AUTH_TOKEN; RAY_AUTH_MODE=token makes
Ray refuse to start without it (no fallback to ~/.ray/auth_token). The temp dir is a short
private folder (Ray's unix sockets live under it and have a ~107 byte path limit).
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 makes Ray keep 127.0.0.1 as the node address instead of
swapping it for the machine's outward address (see cluster/local.yaml).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests

BIN = Path(sys.executable).parent
MARKER_VARIABLE = "FAME_RAY_TEST_HEAD"
# Variables of the outer environment that would point a process at another Ray.
FOREIGN = ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH", "RAY_API_SERVER_ADDRESS", "RAY_JOB_HEADERS")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalHead:
    """A head started by `start_head`: addresses, the token, and the environment of a client."""

    process: subprocess.Popen
    temp_dir: str
    gcs_address: str
    dashboard_url: str
    token: str
    marker: str
    env: dict = field(repr=False)

    def client_env(self, with_token: bool = True) -> dict:
        """Environment of a CLI client or driver (without the token: no token from anywhere).

        No RAY_ADDRESS: `ray job submit` would prefer it to its --address.
        """
        env = {k: v for k, v in self.env.items() if k != "RAY_ADDRESS"}
        if not with_token:
            env.pop("RAY_AUTH_TOKEN")
            env.pop("RAY_AUTH_MODE")
            # An empty HOME: no ~/.ray/auth_token to fall back to.
            env["HOME"] = tempfile.mkdtemp(prefix="frh", dir=self.temp_dir)
        return env

    def auth_headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def log_tail(self, lines: int = 40) -> str:
        path = Path(self.temp_dir) / "head.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def head_env(token: str, marker: str, gcs_address: str, extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN}
    env.update(
        {
            # Every process of this cluster that looks Ray up by address (Ray Train's placement
            # group cleaner uses the state API) must find this head, not another Ray on the machine.
            "RAY_ADDRESS": gcs_address,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": token,
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_USAGE_STATS_ENABLED": "0",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            MARKER_VARIABLE: marker,
        }
    )
    env.update(extra or {})
    return env


def start_head(
    num_cpus: int,
    extra_args: list[str] | None = None,
    extra_env: dict | None = None,
    port: int = 0,
    timeout_s: float = 150,
) -> LocalHead:
    """Start `ray start --head --block` on loopback (GCS on `port`, 0 = a free one) and wait until it answers.

    Tried twice: `ray start` gives its raylet a fixed 30 s to register with the GCS and exits
    when a loaded machine is slower than that (a second try then usually fits).
    """
    for attempt in (1, 2):
        head = launch_head(num_cpus, extra_args or [], extra_env or {}, port)
        try:
            wait_ready(head, timeout_s)
            return head
        except HeadExited:
            stop_head(head)
            if attempt == 2:
                raise
        except BaseException:
            stop_head(head)
            raise
    raise AssertionError("unreachable")


class HeadExited(RuntimeError):
    """`ray start --head` exited before the head was ready."""


def launch_head(num_cpus: int, extra_args: list[str], extra_env: dict, port: int) -> LocalHead:
    temp_dir = tempfile.mkdtemp(prefix="frc", dir="/tmp")
    token, marker = secrets.token_hex(32), f"head-{uuid.uuid4().hex}"
    port, dashboard_port = port or free_port(), free_port()
    env = head_env(token, marker, f"127.0.0.1:{port}", extra_env)
    command = [
        str(BIN / "ray"), "start", "--head", "--block", "--disable-usage-stats",
        "--node-ip-address", "127.0.0.1", "--port", str(port),
        "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port),
        "--num-cpus", str(num_cpus), "--temp-dir", temp_dir, *extra_args,
    ]  # fmt: skip
    with open(Path(temp_dir) / "head.log", "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return LocalHead(process, temp_dir, f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard_port}", token, marker, env)


def wait_ready(head: LocalHead, timeout_s: float) -> None:
    """Until `ray start` reports the runtime started and the job API answers an authenticated request."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if head.process.poll() is not None:
            raise HeadExited(f"ray start exited with {head.process.returncode}:\n{head.log_tail()}")
        try:
            started = "Ray runtime started" in (Path(head.temp_dir) / "head.log").read_text(errors="replace")
            if (
                started
                and requests.get(f"{head.dashboard_url}/api/jobs/", headers=head.auth_headers(), timeout=5).status_code
                == 200
            ):
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise TimeoutError(f"the head was not ready within {timeout_s:.0f}s:\n{head.log_tail()}")


def stop_head(head: LocalHead, grace_s: float = 5) -> None:
    """Kill the head's process group, then any process left with this head's marker; remove its temp dir."""
    group = head.process.pid
    signal_group(group, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.process.wait(timeout=grace_s)
    signal_group(group, signal.SIGKILL)
    head.process.wait(timeout=10)
    for pid in marked_processes(head.marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(head.temp_dir, ignore_errors=True)


def signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signum)


def marked_processes(marker: str) -> list[int]:
    """Process ids whose environment carries this head's marker (ours by construction)."""
    needle = f"{MARKER_VARIABLE}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found
