#!/usr/bin/env bash
# The whole test suite on a fresh machine: the README's test command, and what .ci/run calls.
# Needs python3 and redis-server on PATH; each test run starts its own redis-server.
# Runs tox.ini's matrix in sequence (scripts/matrix.py): the full suite (slow, browser,
# faults, then PostgreSQL when 127.0.0.1:5432 answers) on Python 3.11 + Django 5.2 and the
# fast tests on every other Python x Django pair, then prints a results table.
# Then scripts/check_wheel.py checks the built wheel from a fresh virtualenv.
# Arguments are passed to pytest in every run.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test,docs,release]" "tox>=4.11"

# The docs site first (a few seconds): any warning fails the run (-W) and every cross-reference
# must resolve (-n).  Its code examples are checked by tests/test_docs_examples.py.
echo "test.sh: building the docs (sphinx-build -W --keep-going -n)"
.venv/bin/python -m sphinx -W --keep-going -n -q -b html docs docs/_build/html

.venv/bin/python scripts/matrix.py "$@"

# The release: build the sdist and wheel, compare their contents with what a user needs, run
# twine check --strict, install the wheel in a fresh virtualenv and run the example's smoke run
# and the fast tests from it (not from this checkout).
.venv/bin/python scripts/check_wheel.py
