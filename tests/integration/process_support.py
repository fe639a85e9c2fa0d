"""Processes of the integration tests that run the CLI as a subprocess: its environment, the
processes below a pid, and a SIGKILL of a driver by its pid (the Ray processes it started with it)."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import time


def cli_env() -> dict:
    """The test's environment without RAY_ADDRESS (the CLI starts its own local Ray), and Tune
    saving its experiment state every second (Ray's documented TUNE_GLOBAL_CHECKPOINT_S; the
    default is every 10 s or more), so the test sees each reported epoch in storage at once."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return {**env, "TUNE_GLOBAL_CHECKPOINT_S": "1"}


def descendants(pid: int) -> list[int]:
    """Process ids of every process below `pid` (read from /proc)."""
    parents = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as handle:
                text = handle.read()
        except OSError:
            continue
        parents.setdefault(int(text[text.rindex(")") + 2 :].split()[1]), []).append(int(stat.split("/")[2]))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill_and_reap(process: subprocess.Popen, grace_s: float = 5) -> None:
    """SIGKILL the driver by its pid. The Ray processes it started share its fate (most stop
    within a second); after `grace_s` any left (Ray's agents) are killed, each by its pid."""
    below = descendants(process.pid)
    process.kill()
    process.wait(timeout=30)
    deadline = time.time() + grace_s
    while time.time() < deadline and any(alive(pid) for pid in below):
        time.sleep(0.5)
    for pid in below:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
