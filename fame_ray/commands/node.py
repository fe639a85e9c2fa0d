"""`fame-ray node guard`: turn the SIGTERM a node gets before it goes away into a Ray drain, so
that a pretraining run checkpoints at the step it is at instead of losing the steps since its
last periodic checkpoint."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Annotated

import typer

from fame_ray.commands import common
from fame_ray.errors import UserError

log = logging.getLogger("fame_ray.node")


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
    """
    common.start_logging()
    if grace <= 0:
        raise UserError(
            f"--grace {grace} must be positive", "give the seconds a preempted node has left, e.g. --grace 90"
        )
    import ray

    from fame_ray import runtime

    address = address or os.environ.get("RAY_ADDRESS") or "auto"
    if node_id and address != "auto":
        target, gcs_address = node_id, address
    else:  # find this node (and the GCS) by joining the cluster for a moment
        ray.init(address=address, configure_logging=False, log_to_driver=False)
        target = node_id or ray.get_runtime_context().get_node_id()
        gcs_address = ray.get_runtime_context().gcs_address
        ray.shutdown()  # nothing of this process stays on the cluster while it waits
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if not now:
        log.info("guarding node %s: a SIGTERM drains it with %.0f s to go", target, grace)
        while not stop.wait(3600):
            pass
    runtime.drain_node(gcs_address, target, grace, f"SIGTERM to fame-ray node guard (pid {os.getpid()})")
    log.warning("node %s drained as preempted: %.0f s until it goes", target, grace)
    time.sleep(grace)
