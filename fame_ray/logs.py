"""Logging: one rank-zero switch decides who logs; every module uses `logging`."""

import logging
import os

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# At DEBUG these libraries log whole HTTP requests: the Authorization header (the AWS access key
# id), X-Amz-Security-Token (the session token) and presigned URLs. They stay at WARNING
# whatever FAME_RAY_LOG_LEVEL says, so a debug log is safe to paste into an issue.
QUIET_LOGGERS = ("botocore", "boto3", "urllib3", "s3transfer")


def setup(level: str = "") -> None:
    """Configure the root logger once (level from FAME_RAY_LOG_LEVEL, default INFO)."""
    level = level or os.environ.get("FAME_RAY_LOG_LEVEL", "INFO")
    logging.basicConfig(level=level.upper(), format=_FORMAT, datefmt="%H:%M:%S")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def is_rank_zero(rank: int | None = None) -> bool:
    """True on the process that logs and writes checkpoints (rank 0, or no Ray Train)."""
    if rank is not None:
        return rank == 0
    try:
        import ray.train

        return ray.train.get_context().get_world_rank() == 0
    except Exception:  # outside a Ray Train worker: a single process is rank zero
        return True
