"""Security properties that live outside any one module: the torch version the package accepts
and what debug logging may print. (Run names, URIs, checkpoints and the CLI's bad input have
their own tests; infra and runtime envs are in test_cluster_configs.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
FAKE_KEY_ID = "AKIAFAKEKEYID1234567"
FAKE_SESSION_TOKEN = "FAKE-SESSION-TOKEN-for-the-log-test-9f8e7d"


def test_torch_below_2_6_is_refused():
    """torch < 2.6 lets a crafted file run code even with weights_only=True (CVE-2025-32434)."""
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    [torch] = [Requirement(d) for d in dependencies if Requirement(d).name == "torch"]
    assert not torch.specifier.contains("2.5.1") and not torch.specifier.contains("2.4.0")
    assert torch.specifier.contains("2.6.0") and torch.specifier.contains("2.13.0")
    # The Makefile installs this exact build first; the range must accept it as it is.
    assert '"torch==2.13.0"' in (ROOT / "Makefile").read_text()


def test_debug_logging_never_prints_aws_credentials(s3_server):
    """FAME_RAY_LOG_LEVEL=DEBUG: botocore logs request headers (the key id, the session token)."""
    script = textwrap.dedent("""
        import logging, sys
        from fame_ray import logs, storage
        logs.setup()
        logging.getLogger("fame_ray.test").debug("debug logging is on")
        storage.boto3_client(sys.argv[1]).list_buckets()
    """)
    env = {
        **os.environ,
        "FAME_RAY_LOG_LEVEL": "DEBUG",
        "AWS_ACCESS_KEY_ID": FAKE_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": "fake-secret-for-the-log-test",
        "AWS_SESSION_TOKEN": FAKE_SESSION_TOKEN,
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-c", script, s3_server], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    logged = done.stdout + done.stderr
    assert "debug logging is on" in logged  # the level really was DEBUG
    for secret in (FAKE_KEY_ID, FAKE_SESSION_TOKEN, "fake-secret-for-the-log-test"):
        assert secret not in logged


def test_no_unsafe_yaml_or_pickle_loader_in_the_package():
    """The README promises yaml.safe_load only, and no unpickling of files (torch.load with
    weights_only=True is checked in test_loading.py)."""
    import ast

    unsafe = {
        ("yaml", "load"),
        ("yaml", "unsafe_load"),
        ("yaml", "full_load"),
        ("yaml", "load_all"),
        ("pickle", "load"),
        ("pickle", "loads"),
        ("cloudpickle", "load"),
        ("cloudpickle", "loads"),
    }
    found, safe_loads = [], 0
    for path in (ROOT / "fame_ray").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
            ):
                call = (node.func.value.id, node.func.attr)
                safe_loads += call == ("yaml", "safe_load")
                if call in unsafe:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert safe_loads > 0 and not found, found
