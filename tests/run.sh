#!/usr/bin/env bash
# The whole suite: unit tests in one process, then each integration file in a process of its
# own, so that one file's Ray instance or multi-node cluster can never leak into the next.
# Prints one closing line over all of them and exits non-zero if any failed.
set -u
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
reports=$(mktemp -d)
trap 'rm -rf "$reports"' EXIT
status=0
"$python" -m pytest tests/unit --junitxml="$reports/unit.xml" "$@" || status=1
for file in tests/integration/test_*.py; do
    "$python" -m pytest "$file" --junitxml="$reports/$(basename "$file" .py).xml" "$@" || status=1
done
"$python" - "$reports" <<'PY'
import sys, glob, xml.etree.ElementTree as ET
totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
for path in glob.glob(f"{sys.argv[1]}/*.xml"):
    for suite in ET.parse(path).getroot().iter("testsuite"):
        for key in totals:
            totals[key] += int(suite.get(key, 0))
failed = totals["failures"] + totals["errors"]
passed = totals["tests"] - failed - totals["skipped"]
print(f"suite: {passed} passed, {failed} failed, {totals['skipped']} skipped")
PY
exit $status
