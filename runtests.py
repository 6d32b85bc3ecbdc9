#!/usr/bin/env python
"""Run the test suite on SQLite, then on PostgreSQL when one answers.

Usage: ``python runtests.py [pytest args...]`` (the args are passed to both runs).

1. SQLite (``tests.settings``): every test, slow end-to-end ones included, and the
   longest fault cases (``BGJOBS_FAULTS_LONG=1`` unless set otherwise).
2. PostgreSQL (``tests.settings_postgres``) when 127.0.0.1:5432 accepts a
   connection: everything but the ``slow`` and ``browser`` tests, to keep the
   total time down (the admin's browser tests exercise no database feature).  Set
   ``BGJOBS_TEST_POSTGRES=require`` to fail instead of skipping when it does
   not answer, or ``=skip`` to never run it.

Each pytest run starts its own throwaway redis-server (see tests/conftest.py).
Exit status is non-zero if any run failed, including a run that collected no
tests (pytest's exit code 5), which always means something is broken.  With
``BGJOBS_TEST_SUMMARY=FILE`` each run's result is appended to FILE as a JSON line
(``scripts/matrix.py`` reads them for its table).
"""

import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent
PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"

PYTEST_EXIT_MEANINGS = {
    0: "passed",
    1: "tests failed",
    2: "interrupted",
    3: "internal error",
    4: "usage error",
    5: "no tests collected",
}


def postgres_unavailable_reason():
    """None when PostgreSQL accepts a connection, else why not."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[test]')"
    try:
        psycopg.connect(PG_DSN).close()
    except Exception as exc:  # any failure means: no usable server
        return f"no connection to PostgreSQL at 127.0.0.1:5432 ({str(exc).strip().splitlines()[0]})"
    return None


def run_pytest(label, settings_module, extra_args, report_dir):
    """Run pytest once; return (exit code, seconds, counts dict from its JUnit report)."""
    banner = f" {label}: DJANGO_SETTINGS_MODULE={settings_module} "
    print(f"\n{banner:=^78}", flush=True)
    env = dict(os.environ, DJANGO_SETTINGS_MODULE=settings_module)
    env.setdefault("BGJOBS_FAULTS_LONG", "1")  # the longest fault cases (tests/faults) run here
    report = Path(report_dir) / f"{settings_module}.xml"
    command = [sys.executable, "-m", "pytest", *extra_args]
    print("$ " + shlex.join(command), flush=True)
    started = time.monotonic()
    code = subprocess.call([*command, f"--junitxml={report}"], cwd=REPO_ROOT, env=env)
    return code, time.monotonic() - started, read_counts(report)


def read_counts(report):
    """Passed / failed / skipped counts from a JUnit XML report (zeros if there is none)."""
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    try:
        root = ET.parse(report).getroot()
    except (OSError, ET.ParseError):
        return counts
    for suite in root.iter("testsuite"):
        tests, skipped = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
        failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        counts["failed"] += failed
        counts["skipped"] += skipped
        counts["passed"] += max(tests - failed - skipped, 0)
    return counts


def main(argv):
    with tempfile.TemporaryDirectory(prefix="bgjobs-runtests-") as report_dir:
        return run_all(list(argv), report_dir)


def run_all(pytest_args, report_dir):
    results = []

    code, took, counts = run_pytest("SQLite", "tests.settings", pytest_args, report_dir)
    results.append(("SQLite", code, took, counts))

    pg_mode = os.environ.get("BGJOBS_TEST_POSTGRES", "auto")
    reason = "BGJOBS_TEST_POSTGRES=skip" if pg_mode == "skip" else postgres_unavailable_reason()
    if reason is None:
        code, took, counts = run_pytest(
            "PostgreSQL", "tests.settings_postgres", [*pytest_args, "-m", "not slow and not browser"], report_dir
        )
        results.append(("PostgreSQL (not slow, not browser)", code, took, counts))
    elif pg_mode == "require":
        print(f"\nPostgreSQL run required but impossible: {reason}", flush=True)
        results.append(("PostgreSQL (not slow, not browser)", 1, 0.0, {"passed": 0, "failed": 0, "skipped": 0}))
    else:
        print(f"\nSkipping the PostgreSQL run: {reason}", flush=True)

    summary = os.environ.get("BGJOBS_TEST_SUMMARY")
    if summary:
        with open(summary, "a") as out:
            for label, code, took, counts in results:
                out.write(json.dumps({"label": label, "code": code, "seconds": took, "counts": counts}) + "\n")

    print("\n" + " summary ".center(78, "="))
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    for label, code, took, counts in results:
        meaning = PYTEST_EXIT_MEANINGS.get(code, "failed")
        status = "OK  " if code == 0 else "FAIL"
        print(
            f"{status} {label:<34} pytest exit {code} ({meaning}): {counts['passed']} passed, "
            f"{counts['failed']} failed, {counts['skipped']} skipped in {took:.1f}s"
        )
        for key in totals:
            totals[key] += counts[key]
    if reason is not None and pg_mode != "require":
        print(f"SKIP PostgreSQL: {reason}")
    failed_runs = [label for label, code, _, _ in results if code != 0]
    print("all runs passed" if not failed_runs else f"failed runs: {', '.join(failed_runs)}")
    print(f"total: {totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped", flush=True)
    return 1 if failed_runs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
