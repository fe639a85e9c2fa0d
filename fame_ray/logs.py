"""Logging: one rank-zero switch decides who logs; every module uses `logging`."""

import logging
import os

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup(level: str = "") -> None:
    """Configure the root logger once (level from FAME_RAY_LOG_LEVEL, default INFO)."""
    level = level or os.environ.get("FAME_RAY_LOG_LEVEL", "INFO")
    logging.basicConfig(level=level.upper(), format=_FORMAT, datefmt="%H:%M:%S")


def is_rank_zero(rank: int | None = None) -> bool:
    """True on the process that logs and writes checkpoints (rank 0, or no Ray Train)."""
    if rank is not None:
        return rank == 0
    try:
        import ray.train

        return ray.train.get_context().get_world_rank() == 0
    except Exception:  # outside a Ray Train worker: a single process is rank zero
        return True
