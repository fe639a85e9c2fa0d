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
import threading
from dataclasses import dataclass

import ray
from ray.data import DataContext

from fame_ray.config import DataConfig, TrainConfig
from fame_ray.errors import ConfigError

logger = logging.getLogger(__name__)


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
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=dashboard, configure_logging=False, log_to_driver=verbose)
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
