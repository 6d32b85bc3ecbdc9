"""Fault cases: fixtures, the ``faults_long`` switch and the figures at the end of the run.

Cases marked ``faults_long`` (the longest: thousands of jobs, several kills) are skipped unless
``BGJOBS_FAULTS_LONG=1``; ``runtests.py`` sets it, so ``bash scripts/test.sh`` and CI run them
and a quick ``pytest`` does not.  Every case is also marked ``slow`` (it starts ``runjobs``).
"""

import os

import pytest

from tests.faults.harness import REPORTS, FaultCase


def pytest_collection_modifyitems(config, items):
    if os.environ.get("BGJOBS_FAULTS_LONG") == "1":
        return
    skip = pytest.mark.skip(reason="long fault case: set BGJOBS_FAULTS_LONG=1 (runtests.py does)")
    for item in items:
        if "faults_long" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    if REPORTS:
        terminalreporter.section("fault case figures")
        for line in REPORTS:
            terminalreporter.write_line(line)


@pytest.fixture
def fault_case(tmp_path):
    """``fault_case(name, redis_args=())`` starts a :class:`FaultCase`; all are closed at the end."""
    cases = []

    def make(name, redis_args=()):
        case = FaultCase(name, tmp_path / f"case{len(cases) + 1}", redis_args)
        cases.append(case)
        return case

    yield make
    for case in reversed(cases):
        case.close()
