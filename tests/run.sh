#!/usr/bin/env bash
# The whole suite: unit tests (in two worker processes), then each integration file in a process of its
# own, so that one file's Ray instance or multi-node cluster can never leak into the next.
# Prints one closing line over all of them and exits non-zero if any failed.
set -u
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
reports=$(mktemp -d)
trap 'rm -rf "$reports"' EXIT
status=0
# Unit tests in two processes (pytest-xdist): most of their time is CLI subprocesses and
# interpreter start-up, which two cores overlap (measured: 188 s in one process, 125 s in two).
"$python" -m pytest tests/unit -n 2 --junitxml="$reports/unit.xml" "$@" || status=1
for file in tests/integration/test_*.py; do
    "$python" -m pytest "$file" --junitxml="$reports/$(basename "$file" .py).xml" "$@" || status=1
done
"$python" - "$reports" <<'PY'
import sys, glob, xml.etree.ElementTree as ET
totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
seconds = {}
cases = []
failures = []
for path in sorted(glob.glob(f"{sys.argv[1]}/*.xml")):
    for case in ET.parse(path).getroot().iter("testcase"):
        cases.append((float(case.get("time", 0.0)), f"{case.get('classname', '')}::{case.get('name', '')}"))
        for problem in (*case.iter("failure"), *case.iter("error")):
            where = f"{case.get('classname', '')}::{case.get('name', '')}"
            failures.append((where, (problem.text or problem.get("message") or "").strip().splitlines()))
    for suite in ET.parse(path).getroot().iter("testsuite"):

        for key in totals:
            totals[key] += int(suite.get(key, 0))
        name = path.rsplit("/", 1)[-1][: -len(".xml")]
        seconds[name] = seconds.get(name, 0.0) + float(suite.get("time", 0.0))
# Where the suite's time goes (it must stay under 30 minutes on a 2-core machine).
for name, spent in sorted(seconds.items(), key=lambda item: -item[1]):
    print(f"{spent:8.1f} s  {name}")
print(f"{sum(seconds.values()):8.1f} s  in all")
print("slowest tests:")
for spent, where in sorted(cases, reverse=True)[:15]:
    print(f"{spent:8.1f} s  {where}")
# Every failure's last lines again at the very end, where a truncated CI log still shows them.
for where, lines in failures:
    print(f"FAILED {where}")
    for line in lines[-25:]:
        print(f"    {line[:300]}")
failed = totals["failures"] + totals["errors"]

passed = totals["tests"] - failed - totals["skipped"]
print(f"suite: {passed} passed, {failed} failed, {totals['skipped']} skipped")
PY
exit $status
