"""`fame-ray node guard` against a real one-node Ray (`ray start --head` on 127.0.0.1, token auth,
stopped by its process group: tests/integration/cluster_head.py): a SIGTERM that comes while
the guard is still starting (before `import ray`, before it joins the cluster) drains the node;
a node id the cluster does not have is refused at start; a guard whose drain cannot happen (the
GCS gone at the SIGTERM) says so in one line and exits non-zero.

The drain is read back from the GCS in a separate process, not from the guard's own words. A
drained idle node goes away, so the last test starts a head of its own. About 50 s on 2 cores.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cluster_head import MARKER_VARIABLE, start_head, stop_head

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
SIGTERM_CAUGHT = 1 << (signal.SIGTERM - 1)  # its bit in /proc/<pid>/status SigCgt

# Run in its own process with the head's client environment: the head node's id, and whether
# the GCS reports it draining as preempted.
NODE_STATE = """
import sys, ray
from ray.core.generated import common_pb2
gcs = ray._raylet.GcsClient(address=sys.argv[1])
[(node_id, info)] = gcs.get_all_node_info(timeout=10).items()
preempted = common_pb2.NodeDeathInfo.AUTOSCALER_DRAIN_PREEMPTED
draining = info.HasField("death_info") and info.death_info.reason == preempted
print(node_id.hex(), "draining" if draining or node_id.hex() in gcs.get_draining_nodes(timeout=10) else "serving")
"""


@pytest.fixture(scope="module")
def head():
    started = start_head(num_cpus=1)
    yield started
    stop_head(started)


def _node_state(head) -> tuple[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", NODE_STATE, head.gcs_address],
        env=head.client_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    node_id, state = done.stdout.split()
    return node_id, state


def _guard(head, *flags: str) -> subprocess.Popen:
    # Without the head's marker: stopping a head kills every process that carries it, and the
    # last test stops its head under a guard that must live on to say that it cannot drain.
    env = {
        key: value for key, value in {**head.client_env(), "PYTHONPATH": str(REPO)}.items() if key != MARKER_VARIABLE
    }
    return subprocess.Popen(
        [sys.executable, "-m", "fame_ray.cli", "node", "guard", "--address", head.gcs_address, *flags],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _catches_sigterm(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & SIGTERM_CAUGHT)
    return False


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_a_bogus_node_id_is_refused_at_start(head):
    guard = _guard(head, "--node-id", "ab" * 28, "--grace", "5")
    _, stderr = guard.communicate(timeout=60)
    assert guard.returncode == 2, stderr[-2000:]
    assert _error_lines(stderr) == [f"error: node {'ab' * 28} is not in the cluster at {head.gcs_address} "
                                    "(check the node id with `ray list nodes`)"], stderr[-2000:]  # fmt: skip
    assert "Traceback" not in stderr and _node_state(head)[1] == "serving"


def test_a_sigterm_right_after_start_drains_the_node(head):
    """The guard then sleeps out its grace; it is stopped (by pid) once it says it drained."""
    node_id, state = _node_state(head)
    assert state == "serving"
    started = time.monotonic()
    guard = _guard(head, "--grace", "300")
    try:
        while not _catches_sigterm(guard.pid):
            assert guard.poll() is None and time.monotonic() - started < 30, guard.stderr.read()[-2000:]
            time.sleep(0.005)
        guard.send_signal(signal.SIGTERM)
        lines = _lines_until(guard, "drained as preempted", 90)
    finally:
        guard.kill()
        guard.wait(timeout=30)
    stderr = "".join(lines)
    assert f"node {node_id} drained as preempted: 300 s until it goes" in stderr and "Traceback" not in stderr
    # The SIGTERM came before the guard was ready (it had not yet imported Ray or found its node).
    assert "a signal came while the guard was starting" in stderr and "guarding node" not in stderr
    assert _node_state(head) == (node_id, "draining")


def _lines_until(guard: subprocess.Popen, text: str, timeout_s: float) -> list[str]:
    """The guard's stderr lines up to the first that holds `text` (it must come within `timeout_s`)."""
    deadline, lines = time.monotonic() + timeout_s, []
    while not any(text in line for line in lines):
        assert guard.poll() is None and time.monotonic() < deadline, "".join(lines) + guard.stderr.read()
        lines.append(guard.stderr.readline())
    return lines


def test_a_drain_that_cannot_happen_exits_non_zero_in_one_line():
    """A head of its own (an idle node that is drained goes away, so the module's head cannot
    serve this test), stopped before the SIGTERM."""
    own = start_head(num_cpus=1)
    try:
        node_id, _ = _node_state(own)
        guard = _guard(own, "--node-id", node_id, "--grace", "5")
        try:
            lines = _lines_until(guard, "guarding node", 60)
            stop_head(own)  # the GCS is gone when the SIGTERM comes
            guard.send_signal(signal.SIGTERM)
            _, stderr = guard.communicate(timeout=60)
        finally:
            if guard.poll() is None:
                guard.kill()
    finally:
        stop_head(own)
    stderr = "".join(lines) + stderr
    assert guard.returncode == 1, stderr[-2000:]
    [line] = _error_lines(stderr)
    assert line.startswith(f"error: could not drain node {node_id}: no Ray cluster answers at"), line
    assert "Traceback" not in stderr
