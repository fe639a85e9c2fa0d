"""The Ray runtime every command shares: how to join or start Ray, and how a cluster's CPUs are
split between training workers and Ray Data.

    runtime.connect_ray()                       # RAY_ADDRESS's cluster, or a private local instance
    plan = runtime.plan_resources(runtime.cluster_cpus(), cfg.train, cfg.data)

CPU budget: Ray Train workers hold CPUs for the whole run. If they held them all, Ray Data's
tasks could never be scheduled and training would wait forever for its first batch (2 CPUs, 2
workers: the classic deadlock). `plan_resources` always leaves CPUs to the data side.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import threading
import time
from dataclasses import dataclass

import ray
from ray.data import DataContext

from fame_ray.config import DataConfig, TrainConfig
from fame_ray.errors import ConfigError, printable

logger = logging.getLogger(__name__)


_local_instance = False  # connect_ray started a private instance: no autoscaler will add nodes
# What a job asks for Ray Data per training worker on a cluster that has no CPUs yet, when
# data.data_cpus leaves it to the plan (decoding 16-frame clips keeps about 2 cores per worker busy).
COLD_DATA_CPUS_PER_WORKER = 2


def connect_ray(num_cpus: float | None = None, dashboard: bool = False, verbose: bool = False) -> bool:
    """Join the cluster in RAY_ADDRESS (`ray job submit` sets it) or start a private local
    instance (never one that another process on this machine started).

    `dashboard`: a local instance serves the State API (Ray Train V2 frees the placement
    groups of runs whose Tune trial was stopped through it). `verbose`: forward the workers'
    log lines to this process and let Ray's own progress logs through (else only what
    fame-ray relays, warnings and errors). Returns True if this call started or joined Ray,
    False if it was already initialised.
    """
    quiet_ray(verbose)
    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        logger.info("connecting to the Ray cluster at %s", os.environ["RAY_ADDRESS"])
        ray.init(configure_logging=False, log_to_driver=verbose)
        return True
    logger.info("no RAY_ADDRESS: starting a local Ray instance")
    global _local_instance
    _local_instance = True
    ray.init(
        address="local", num_cpus=num_cpus, include_dashboard=dashboard, configure_logging=False, log_to_driver=verbose
    )
    return True


def quiet_ray(verbose: bool = False) -> None:
    """In this process (the driver, or a Ray worker): keep Ray Train's, Ray Tune's and Ray
    Data's own chatter (per-report lines, "Starting execution", progress bars and progress logs)
    out of the user's way unless `verbose`. Warnings and errors still come through."""
    if verbose:
        return
    for name in ("ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Ray Data warns about its own defaults (progress bars off, deprecated arguments): errors only.
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False


@ray.remote(num_cpus=0)
class LineRelay:
    """Lines a worker wants the user to see (rank 0's progress line), held until the driver
    takes them: they reach the user whether or not Ray forwards worker logs."""

    def __init__(self):
        self.lines: list[str] = []

    def post(self, line: str) -> None:
        self.lines.append(line)

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


class RelayPrinter:
    """Driver side of a LineRelay: a thread that logs every posted line, until closed."""

    def __init__(self, relay, log: logging.Logger, interval_s: float = 0.5):
        self.relay, self.log, self.interval_s = relay, log, interval_s
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="fame-ray-progress", daemon=True)
        self.thread.start()

    def _flush(self) -> None:
        try:
            for line in ray.get(self.relay.take.remote(), timeout=30):
                self.log.info(line)
        except (ray.exceptions.RayError, TimeoutError):
            pass  # a lost relay loses progress lines, never the run

    def _loop(self) -> None:
        while not self.stopped.wait(self.interval_s):
            self._flush()

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self._flush()


def node_memory(use_gpu: bool = False) -> list[float]:
    """Memory, in bytes, that Ray reports (its 'memory' resource: what tasks and actors may use
    next to the object store) for each live node that can host a training worker: one with
    CPUs, and GPUs when `use_gpu`. Empty on a cluster with no such node yet."""
    sizes = []
    for node in ray.nodes():
        resources = node.get("Resources") or {}
        if node.get("Alive") and resources.get("CPU", 0) > 0 and (resources.get("GPU", 0) > 0 or not use_gpu):
            sizes.append(float(resources.get("memory", 0)))
    return [size for size in sizes if size > 0]


def cluster_cpus() -> float:
    """CPUs the cluster has right now."""
    return float(ray.cluster_resources().get("CPU", 0.0))


@dataclass(frozen=True)
class ResourcePlan:
    """How the CPUs of the cluster are split between training workers and Ray Data."""

    cpus_per_worker: float
    """CPUs each Ray Train worker holds."""
    data_cpus: float
    """CPUs left to Ray Data (decode, crops, FAME)."""

    def per_rank(self, world_size: int) -> tuple[int, float]:
        """(decode tasks at once, num_cpus of each) of one training worker's data stream: the
        data CPUs shared out over the workers, whole CPUs per task where there are enough."""
        share = self.data_cpus / world_size
        tasks = max(1, int(share))
        return tasks, min(1.0, share / tasks)


def plan_resources(total_cpus: float, train: TrainConfig, data: DataConfig) -> ResourcePlan:
    """Split `total_cpus` so that Ray Data always keeps CPUs next to the training workers.

    Training workers get `train.cpus_per_worker` if set, else at most 1 CPU each from what
    remains after reserving `data.data_cpus` (default: a quarter of the CPUs, at least 1,
    at most half). The data tasks (decode, crops, FAME masks) share the rest.
    """
    workers = train.num_workers
    if train.cpus_per_worker > 0:
        cpus_per_worker = train.cpus_per_worker
    else:
        reserve = data.data_cpus or min(max(1.0, 0.25 * total_cpus), total_cpus / 2)
        cpus_per_worker = min(1.0, math.floor(100 * (total_cpus - reserve) / workers) / 100)
    data_cpus = total_cpus - cpus_per_worker * workers
    if cpus_per_worker <= 0 or data_cpus <= 0:
        raise ConfigError(
            f"{workers} training workers x {cpus_per_worker} CPUs leave no CPU for data loading on {total_cpus:g} CPUs",
            "lower train.cpus_per_worker, data.data_cpus or train.num_workers",
        )
    return ResourcePlan(cpus_per_worker=cpus_per_worker, data_cpus=data_cpus)


@dataclass(frozen=True)
class ChunkedTasks:
    """How a list of items is shared out to Ray tasks (`map_chunks`)."""

    task_cpus: float
    """num_cpus of each task."""
    max_chunk: int
    """At most this many items per task."""
    tasks_per_cpu: int
    """At least this many tasks per CPU of the cluster when there are enough items."""
    crashed: str
    """What an item whose single-item task still dies is reported as ('probe crashed', ...)."""


def map_chunks(
    fn, items: list, how: ChunkedTasks, *extra, fatal=(), on_item=None, every_s: float = 5.0, on_progress=None
):
    """`fn(chunk, *extra)` -> one result per item, over Ray tasks; the results in the items' order.

    A task whose worker dies (a decoder crash on a broken file) is retried item by item, so one
    bad file costs only itself (an item whose own task dies gets `"<how.crashed>: <error type>"`).
    A task that raises one of `fatal` cancels the others and raises that error (a failed write
    stops a job); `on_item(item, result)` sees each result as it arrives, `on_progress()` is
    called every `every_s` seconds while tasks are left.
    """
    if not items:
        return []
    remote = ray.remote(num_cpus=how.task_cpus, max_retries=0)(fn)
    cpus = max(1, int(cluster_cpus()))
    size = max(1, min(how.max_chunk, math.ceil(len(items) / (how.tasks_per_cpu * cpus))))
    pending = {
        remote.remote(items[i : i + size], *extra): list(range(i, min(i + size, len(items))))
        for i in range(0, len(items), size)
    }
    results: list = [None] * len(items)
    last = time.monotonic()
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=every_s)
        for ref in ready:
            positions = pending.pop(ref)
            try:
                found = ray.get(ref)
            except fatal:
                for other in pending:
                    ray.cancel(other, force=True)
                raise
            except ray.exceptions.RayError as error:
                if len(positions) > 1:
                    logger.warning(
                        "a task of %d items failed (%s); running them one by one", len(positions), type(error).__name__
                    )
                    pending.update({remote.remote([items[p]], *extra): [p] for p in positions})
                    continue
                found = [f"{how.crashed}: {type(error).__name__}"]
            for position, result in zip(positions, found):
                results[position] = result
                if on_item is not None:
                    on_item(items[position], result)
        if on_progress is not None and pending and time.monotonic() - last >= every_s:
            on_progress()
            last = time.monotonic()
    return results


# Every request the node guard makes to the GCS is bounded: at SIGTERM the node has seconds left.
GCS_TIMEOUT_S = 10.0
NODE_ID = re.compile(r"[0-9a-f]{56}")  # a Ray NodeID: 28 bytes, in hex


def gcs_address(address: str, timeout_s: float = GCS_TIMEOUT_S) -> str:
    """The GCS host:port of `address` ('auto': the cluster `ray start` ran on this machine),
    checked with a bounded TCP connect: an address nothing answers at fails in seconds, not
    after Ray's own retries (tens of seconds, many log lines)."""
    from ray._private import services

    try:
        resolved = services.canonicalize_bootstrap_address_or_die(address)
        host, _, port = resolved.rpartition(":")
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except (ConnectionError, OSError, ValueError) as error:
        raise ConfigError(
            f"no Ray cluster answers at {address} ({type(error).__name__})",
            "start Ray first (`ray start`), or fix --address / RAY_ADDRESS (host:port of the GCS)",
        ) from None
    return resolved


def _gcs_call(what: str, call):
    try:
        return call()
    except (ray.exceptions.RayError, ConnectionError, TimeoutError, OSError, RuntimeError) as error:
        first = (str(error).splitlines() or [""])[0][:200]
        raise ConfigError(
            f"{what} failed: {type(error).__name__}: {first}".rstrip(": "), "check `ray status`"
        ) from None


def check_node_id(node_id: str) -> None:
    """A Ray node id is 56 hex digits (the GCS answers a malformed one as if it were a node)."""
    if not NODE_ID.fullmatch(node_id or ""):
        raise ConfigError(
            f"--node-id {printable(node_id, 80)} is not a Ray node id (56 hex digits)", "see `ray list nodes`"
        )


def check_node(address: str, node_id: str, timeout_s: float = GCS_TIMEOUT_S):
    """A GCS client of the cluster at `address` on which `node_id` is a live node, or a
    ConfigError that says which of these is not so (the GCS accepts a drain of any id, even one
    it has never seen)."""
    from ray.core.generated import gcs_pb2

    check_node_id(node_id)
    gcs = _gcs_call(f"reaching the GCS at {address}", lambda: ray._raylet.GcsClient(address=address))
    nodes = _gcs_call(f"listing the nodes at {address}", lambda: gcs.get_all_node_info(timeout=timeout_s))
    info = {key.hex(): value for key, value in nodes.items()}.get(node_id)
    if info is None:
        raise ConfigError(
            f"node {node_id} is not in the cluster at {address}", "check the node id with `ray list nodes`"
        )
    if info.state != gcs_pb2.GcsNodeInfo.ALIVE:
        raise ConfigError(f"node {node_id} is not alive", "check the node id with `ray list nodes`")
    return gcs


def _draining(gcs, node_id: str, timeout_s: float) -> bool:
    """Whether the GCS reports the node as draining (as preempted)."""
    from ray.core.generated import common_pb2

    if node_id in _gcs_call("reading the draining nodes", lambda: gcs.get_draining_nodes(timeout=timeout_s)):
        return True
    nodes = _gcs_call("reading the node", lambda: gcs.get_all_node_info(timeout=timeout_s))
    info = {key.hex(): value for key, value in nodes.items()}.get(node_id)
    preempted = common_pb2.NodeDeathInfo.AUTOSCALER_DRAIN_PREEMPTED
    return info is not None and info.HasField("death_info") and info.death_info.reason == preempted


def drain_node(address: str, node_id: str, deadline_s: float, message: str, timeout_s: float = GCS_TIMEOUT_S) -> None:
    """Tell Ray's GCS that a node is being preempted and goes away in `deadline_s` seconds
    (what a cloud's spot reclaim does through the autoscaler, and `ray drain-node` by hand).

    Ray Train sees it (`ray.train.get_preemption_info`), the pretraining workers write a
    checkpoint at the step they are at, and the run restarts on other nodes from there. Ray
    schedules nothing new on a draining node. Raises ConfigError when the node is not a live
    node of the cluster, the GCS cannot be reached or refuses, or does not then report the node
    as draining: a drain that did not happen is never reported as done.
    """
    from ray.core.generated import autoscaler_pb2

    if not (math.isfinite(deadline_s) and deadline_s > 0):
        raise ConfigError(f"the drain deadline must be a positive number of seconds, got {deadline_s}")
    gcs = check_node(gcs_address(address, timeout_s), node_id, timeout_s)
    deadline_ms = time.time_ns() // 1_000_000 + int(deadline_s * 1000)
    reason = autoscaler_pb2.DrainNodeReason.Value("DRAIN_NODE_REASON_PREEMPTION")
    accepted, why = _gcs_call(
        f"draining node {node_id}", lambda: gcs.drain_node(node_id, reason, message, deadline_ms, timeout=timeout_s)
    )
    if not accepted:
        raise ConfigError(f"Ray refused to drain node {node_id}: {why}", "check the node id with `ray list nodes`")
    confirm_until = time.monotonic() + timeout_s
    while not _draining(gcs, node_id, timeout_s):
        if time.monotonic() > confirm_until:
            raise ConfigError(f"Ray accepted the drain of node {node_id} but does not report it draining")
        time.sleep(0.2)


def job_bundles(train: TrainConfig, data: DataConfig, copies: int = 1) -> list[dict]:
    """The resource bundles a job asks the cluster for: one per training worker (its CPUs, GPU
    and extra resources) and one CPU per Ray Data CPU, for `copies` runs at once (trials)."""
    worker = {"CPU": float(train.cpus_per_worker or 1.0), **{k: float(v) for k, v in train.worker_resources.items()}}
    if train.use_gpu:
        worker["GPU"] = 1.0
    data_cpus = math.ceil(data.data_cpus or COLD_DATA_CPUS_PER_WORKER * train.num_workers)
    return ([worker] * train.num_workers + [{"CPU": 1.0}] * data_cpus) * copies


def job_minimum(train: TrainConfig, data: DataConfig, copies: int = 1) -> dict:
    """What a cluster must hold for a job to be planned on it now: the GPUs and extra resources
    of its workers, and the CPUs the config fixes (at least one; `plan_resources` sizes the
    rest from what is there)."""
    need = _totals(job_bundles(train, data, copies))
    fixed = (train.cpus_per_worker * train.num_workers + data.data_cpus) * copies
    need["CPU"] = max(1.0, fixed)
    return need


def _totals(bundles: list[dict]) -> dict:
    need: dict = {}
    for bundle in bundles:
        for name, amount in bundle.items():
            need[name] = need.get(name, 0.0) + amount
    return need


def _missing(need: dict, have: dict) -> dict:
    return {name: amount for name, amount in need.items() if have.get(name, 0.0) + 1e-9 < amount}


def _shown(need: dict, have: dict) -> str:
    return ", ".join(f"{name} {have.get(name, 0.0):g}/{amount:g}" for name, amount in sorted(need.items()))


def await_resources(
    bundles: list[dict],
    timeout_s: float,
    what: str,
    minimum: dict | None = None,
    poll_s: float = 2.0,
    line_every_s: float = 15.0,
) -> None:
    """Make sure the cluster holds what a job asks for before it is planned from the cluster's
    size: at once when it holds `minimum` (default: all the bundles), else ask the autoscaler
    for the bundles (`request_resources`) and wait, with a progress line, until the nodes have
    joined or `timeout_s` says what is missing.

    The request stands until `release_resources()` (called when the job ends), so the autoscaler
    does not take idle data nodes away before the first Ray Data task reaches them.
    """
    need = _totals(bundles)
    if not _missing(minimum or need, ray.cluster_resources()):
        return
    if _local_instance:
        have = ray.cluster_resources()
        raise ConfigError(
            f"{what} needs {_shown(need, have)} (have/need) and this local Ray instance has no more",
            "lower train.num_workers, train.cpus_per_worker or data.data_cpus, or submit to a cluster (RAY_ADDRESS)",
        )
    from ray.autoscaler.sdk import request_resources

    request_resources(bundles=bundles)
    started = last_line = time.monotonic()
    logger.info(
        "%s: the cluster has %s (have/need); asked the autoscaler, waiting up to %.0f s",
        what,
        _shown(need, ray.cluster_resources()),
        timeout_s,
    )
    while True:
        have = ray.cluster_resources()
        missing = _missing(need, have)
        waited = time.monotonic() - started
        if not missing:
            logger.info("%s: the cluster has what it asked for after %.0f s (%s)", what, waited, _shown(need, have))
            return
        if waited >= timeout_s:
            release_resources()
            raise ConfigError(
                f"{what}: the cluster did not reach {_shown(need, have)} (have/need) within {timeout_s:.0f} s",
                (
                    "check `ray status` and the cluster YAML's node types and max_workers, lower the request, or "
                    "raise --set train.cluster_wait_s"
                ),
            )
        if time.monotonic() - last_line >= line_every_s:
            last_line = time.monotonic()
            logger.info("%s: waiting for nodes: %s, %.0f s of %.0f s", what, _shown(need, have), waited, timeout_s)
        time.sleep(poll_s)


def release_resources() -> None:
    """Withdraw what `await_resources` asked the autoscaler for (idle nodes may go again)."""
    if _local_instance or not ray.is_initialized():
        return
    from ray.autoscaler.sdk import request_resources

    try:
        request_resources(bundles=[])
    except Exception as error:  # noqa: BLE001 - never fail a finished job over this
        logger.warning("could not withdraw the resource request (%s)", error)
