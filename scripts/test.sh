#!/usr/bin/env bash
# The whole test suite on a fresh machine: the README's test command, and what .ci/run calls.
# Needs python3 and redis-server on PATH; PostgreSQL at 127.0.0.1:5432 adds a second run.
# Then scripts/check_wheel.py checks the built wheel from a fresh virtualenv.
# When a Python 3.12+ is also on the machine (PATH or pyenv), a third run checks Django 6.x.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test,docs,release]"

# The docs site first (a few seconds): any warning fails the run (-W) and every cross-reference
# must resolve (-n).  Its code examples are checked by tests/test_docs_examples.py.
echo "test.sh: building the docs (sphinx-build -W --keep-going -n)"
.venv/bin/python -m sphinx -W --keep-going -n -q -b html docs docs/_build/html

.venv/bin/python runtests.py "$@"

# The release: build the sdist and wheel, compare their contents with what a user needs, run
# twine check --strict, install the wheel in a fresh virtualenv and run the example's smoke run
# and the fast tests from it (not from this checkout).
.venv/bin/python scripts/check_wheel.py

# Django 6.x needs Python 3.12+: find one, or say plainly that this run is skipped.
python6=""
for candidate in python3.12 python3.13 "$HOME"/.pyenv/versions/3.12*/bin/python "$HOME"/.pyenv/versions/3.13*/bin/python; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
        python6="$candidate"
        break
    fi
done
if [ -z "$python6" ]; then
    echo "test.sh: no Python 3.12+ found; the Django 6.x run is skipped (Django 5.2 was tested above)"
    exit 0
fi
echo "test.sh: Django 6.x run with $("$python6" --version) (SQLite, not slow)"
if [ ! -x .venv-django6/bin/python ]; then
    "$python6" -m venv .venv-django6
fi
.venv-django6/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]" "Django>=6.0,<7"
BGJOBS_TEST_POSTGRES=skip .venv-django6/bin/python runtests.py -m "not slow" "$@"
