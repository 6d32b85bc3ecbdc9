#!/usr/bin/env bash
# The whole test suite on a fresh machine: the README's test command, and what .ci/run calls.
# Needs python3 and redis-server on PATH; PostgreSQL at 127.0.0.1:5432 adds a second run.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
exec .venv/bin/python runtests.py "$@"
