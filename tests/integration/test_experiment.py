"""The background-bias experiment's quick form through the real CLI: synthetic sets, one FAME and
one MoCo pretraining through Ray Data and Ray Train, probes, and the three result files.

FAME must beat plain MoCo on the motion probe by MARGIN points. Measured on a 2-core VM: FAME
68.1, MoCo 47.5 (+20.6); the margin leaves room for the machine's noise, not for a tie.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.timeout(900)]

FAME_RAY = os.path.join(os.path.dirname(sys.executable), "fame-ray")
MARGIN = 0.10


def test_quick_experiment_shows_fame_ahead_of_moco_on_motion(tmp_path):
    out = tmp_path / "bias"
    done = subprocess.run(
        [FAME_RAY, "experiment", "background-bias", "--out", str(out), "--quick"],
        capture_output=True,
        text=True,
        timeout=850,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((out / "results.json").read_text())
    fame, moco = record["methods"]["fame"], record["methods"]["moco"]
    for method in (fame, moco):
        assert set(method) == {"motion", "scene", "biased_to_decorrelated"}
        assert all(0 <= method[readout]["mean"] <= 1 for readout in method)
    assert fame["motion"]["mean"] >= moco["motion"]["mean"] + MARGIN, record
    assert record["chance"]["motion"] == pytest.approx(1 / 8)
    table = (out / "results.md").read_text()
    assert "| fame |" in table and "| moco |" in table and "random init" in table
    assert Image.open(out / "results.png").size == (900, 480)
    assert "| fame |" in done.stdout  # the table is printed too
    # Quiet by default: no Ray Data progress logs, no per-report Ray Train lines.
    assert "Starting execution" not in done.stderr and "Reporting training result" not in done.stderr
