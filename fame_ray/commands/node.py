"""`fame-ray node guard`: turn the SIGTERM a node gets before it goes away into a Ray drain, so
that a pretraining run checkpoints at the step it is at instead of losing the steps since its
last periodic checkpoint."""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from typing import Annotated

import typer

from fame_ray.commands import common
from fame_ray.errors import UserError, printable

log = logging.getLogger("fame_ray.node")
# Ray's drain deadline is a timestamp in milliseconds; no preemption notice is longer than a day.
MAX_GRACE_S = 86400.0
DRAIN_FAILED = 1  # the exit code of a guard whose drain failed at the signal (bad input at start: 2)


def guard(
    grace: Annotated[
        float,
        typer.Option("--grace", help="Seconds between the SIGTERM and the node's end (spot notices give 30 to 120)."),
    ] = 90.0,
    address: Annotated[
        str | None,
        typer.Option(
            "--address", help="GCS address of the cluster (default: $RAY_ADDRESS, else the cluster this node runs)."
        ),
    ] = None,
    node_id: Annotated[
        str | None, typer.Option("--node-id", help="Node to drain (default: the node this command runs on).")
    ] = None,
    now: Annotated[
        bool, typer.Option("--now", help="Drain at once instead of waiting for SIGTERM (a Kubernetes preStop hook).")
    ] = False,
) -> None:
    """Wait for SIGTERM (or SIGINT), then drain this Ray node as preempted with a deadline of
    --grace seconds, and stay up until the deadline.

    Ray Train sees the drain: pretraining writes a checkpoint at the current step and, once the
    node is gone, resumes from it on other nodes; Ray schedules nothing new on the node. Start
    it beside `ray start` on every worker node, as the process the platform signals first:

      ray start --address=$HEAD:6379 && exec fame-ray node guard --grace 90

    On Kubernetes (KubeRay), the pod's preStop hook runs `fame-ray node guard --now --grace 60`
    before the container gets its SIGTERM (see cluster/kuberay/raycluster.yaml).

    It checks at start that the cluster answers and the node is one of its live nodes (else one
    line, exit 2), and is ready for SIGTERM from its first instant: one that comes while it is
    still starting drains the node as soon as the node is known. A drain that fails or that Ray
    does not confirm is said in one line, exit 1.
    """
    stop = threading.Event()
    _on_signals(stop)  # first of all: from here on, a SIGTERM drains the node
    common.start_logging()
    if not (math.isfinite(grace) and 0 < grace <= MAX_GRACE_S):
        raise UserError(
            f"--grace {grace} must be a number of seconds above 0 and at most {MAX_GRACE_S:.0f}",
            "give the seconds a preempted node has left, e.g. --grace 90",
        )
    from fame_ray import runtime  # ray: loaded only to run

    if node_id:
        runtime.check_node_id(node_id)
    gcs_address = runtime.gcs_address(address or os.environ.get("RAY_ADDRESS") or "auto")
    target = node_id or _this_node(gcs_address, stop)
    runtime.check_node(gcs_address, target)
    if stop.is_set():
        log.warning("a signal came while the guard was starting: draining node %s now", target)
    elif not now:
        log.info("guarding node %s: a SIGTERM drains it with %.0f s to go", target, grace)
        while not stop.wait(3600):
            pass
    try:
        runtime.drain_node(gcs_address, target, grace, f"SIGTERM to fame-ray node guard (pid {os.getpid()})")
    except UserError as error:
        typer.echo(f"error: could not drain node {target}: {printable(error.one_line(), 1000)}", err=True)
        raise typer.Exit(DRAIN_FAILED) from None
    log.warning("node %s drained as preempted: %.0f s until it goes", target, grace)
    time.sleep(grace)


def _on_signals(stop: threading.Event) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())


def _this_node(gcs_address: str, stop: threading.Event) -> str:
    """The id of the Ray node on this machine, found by joining the cluster for a moment.
    ray.init replaces the SIGTERM handler with one that exits: the signals are held back
    meanwhile (a SIGTERM that comes then is delivered, to this guard's handler, right after)."""
    import ray

    held = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        ray.init(address=gcs_address, configure_logging=False, log_to_driver=False)
        target = ray.get_runtime_context().get_node_id()
        ray.shutdown()  # nothing of this process stays on the cluster while it waits
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as error:
        raise UserError(
            f"cannot join the Ray cluster at {gcs_address} ({type(error).__name__})",
            "pass --node-id of the node to guard, or check `ray status`",
        ) from None
    finally:
        _on_signals(stop)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, held)
    return target
