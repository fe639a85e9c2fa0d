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
from dataclasses import dataclass

import ray

from fame_ray.config import DataConfig, TrainConfig
from fame_ray.errors import ConfigError

logger = logging.getLogger(__name__)


def connect_ray(num_cpus: float | None = None, dashboard: bool = False, worker_logs: bool = True) -> bool:
    """Join the cluster in RAY_ADDRESS (`ray job submit` sets it) or start a private local
    instance (never one that another process on this machine started).

    `dashboard`: a local instance serves the State API (Ray Train V2 frees the placement
    groups of runs whose Tune trial was stopped through it). `worker_logs`: forward the
    workers' log lines to this process (the progress line of rank 0 comes that way).
    Returns True if this call started or joined Ray, False if it was already initialised.
    """
    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        logger.info("connecting to the Ray cluster at %s", os.environ["RAY_ADDRESS"])
        ray.init(configure_logging=False, log_to_driver=worker_logs)
        return True
    logger.info("no RAY_ADDRESS: starting a local Ray instance")
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=dashboard, configure_logging=False, log_to_driver=worker_logs)
    return True


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
    decode_cpus: float
    """num_cpus of one decode task."""
    decode_concurrency: int
    """Decode tasks at once."""
    fame_cpus: float
    """num_cpus of one FAME batch task."""
    fame_concurrency: int
    """FAME batch tasks at once."""


def plan_resources(total_cpus: float, train: TrainConfig, data: DataConfig) -> ResourcePlan:
    """Split `total_cpus` so that Ray Data always keeps CPUs next to the training workers.

    Training workers get `train.cpus_per_worker` if set, else at most 1 CPU each from what
    remains after reserving `data.data_cpus` (default: a quarter of the CPUs, at least 1,
    at most half). Decode tasks take 3/4 and FAME tasks 1/4 of the data CPUs.
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
    decode_concurrency = max(1, int(data_cpus))
    fame_concurrency = max(1, math.ceil(decode_concurrency / 4))
    return ResourcePlan(
        cpus_per_worker=cpus_per_worker,
        data_cpus=data_cpus,
        decode_cpus=min(1.0, 0.75 * data_cpus / decode_concurrency),
        decode_concurrency=decode_concurrency,
        fame_cpus=min(1.0, 0.25 * data_cpus / fame_concurrency),
        fame_concurrency=fame_concurrency,
    )
