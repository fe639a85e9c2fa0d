"""Logging: every module uses `logging`; in Ray Train workers rank 0 alone logs progress (pretrain.worker)."""

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
