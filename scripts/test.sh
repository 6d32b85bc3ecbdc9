#!/usr/bin/env bash
# The whole test suite on a fresh machine: the README's test command, and what .ci/run calls.
# Needs python3 and redis-server on PATH; each test run starts its own redis-server.
# Runs tox.ini's matrix in sequence (scripts/matrix.py): the full suite (slow, browser,
# faults, then PostgreSQL when 127.0.0.1:5432 answers) on Python 3.11 + Django 5.2 and the
# fast tests on every other Python x Django pair, then prints a results table.
# Arguments are passed to pytest in every run.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]" "tox>=4.11"
.venv/bin/python scripts/matrix.py "$@"
