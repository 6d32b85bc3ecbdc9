#!/usr/bin/env python
"""Run the tox matrix in sequence and print one results table.

Usage (what ``scripts/test.sh`` does): ``python scripts/matrix.py [pytest args...]``.

The combinations are tox.ini's ``envlist`` (``pyXY-djangoAB``), the one list of what is
tested; ``tests/test_matrix.py`` checks that pyproject's classifiers and ``requires-python``
claim exactly those versions.  ``FULL`` gets the whole suite (slow, browser, the longest
fault cases, then the PostgreSQL run: ``runtests.py``'s defaults); every other
combination gets the fast tests on SQLite.  They run one after another: on a 2-core
machine parallel runs would only slow each other down.

Interpreters are looked up as ``pythonX.Y`` on PATH (pyenv shims that cannot run it do
not count), then in ``~/.pyenv/versions/X.Y*``; if none is found, ``pyenv`` is there and
the run requires every Python (below), ``pyenv install`` is tried.  A combination whose Python is still missing is reported in
the table; with ``BGJOBS_TEST_PYTHONS=require`` (``.ci/run`` sets it) or ``CI`` set, that
fails the run, otherwise it is printed as MISSING and the others still count.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
FULL = "py311-django52"
FAST = ["-m", "not slow and not browser and not faults_long"]
ENV_NAME = re.compile(r"^py(\d)(\d+)-django(\d)(\d)$")


def combinations():
    """tox.ini's envlist as [(env, python version)]."""
    out = subprocess.run(
        [sys.executable, "-m", "tox", "-l"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    envs = [line.strip() for line in out.splitlines() if ENV_NAME.match(line.strip())]
    if FULL not in envs:
        raise SystemExit(f"matrix: {FULL} (the full-suite combination) is not in tox.ini's envlist")
    return [(env, "{}.{}".format(*ENV_NAME.match(env).groups()[:2])) for env in envs]


def real_executable(python, version):
    """The interpreter behind ``python`` (a pyenv shim resolves to its target) if it is
    Python X.Y, else None."""
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2], sys.executable)"],
            capture_output=True, text=True, timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    found, _, executable = out.stdout.strip().partition(" ")
    return executable if out.returncode == 0 and found == version else None


def find_python(version):
    """Path of a working ``pythonX.Y``, or None."""
    candidates = [shutil.which(f"python{version}")]
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"), reverse=True)
    for candidate in candidates:
        executable = candidate and real_executable(candidate, version)
        if executable:
            return executable
    return None


def find_or_install(version, install):
    python = find_python(version)
    if python is None and install and shutil.which("pyenv"):
        print(f"matrix: no Python {version} found; trying `pyenv install --skip-existing {version}`", flush=True)
        subprocess.call(["pyenv", "install", "--skip-existing", version])
        python = find_python(version)
    return python


def run_env(env, python, pytest_args, summary_file):
    """Run one tox env; return (exit code, seconds, counts summed over its runtests.py runs)."""
    extra = pytest_args if env == FULL else [*FAST, *pytest_args]
    environ = dict(os.environ, BGJOBS_TEST_SUMMARY=str(summary_file))
    if env != FULL:
        environ["BGJOBS_TEST_POSTGRES"] = "skip"
    # The found interpreter's directory first, so tox's discovery takes it, not a pyenv shim.
    environ["PATH"] = os.pathsep.join([str(Path(python).parent), environ.get("PATH", "")])
    command = [sys.executable, "-m", "tox", "-e", env, "--", *extra]
    print(f"\n{f' tox -e {env} ({python}) ':#^78}", flush=True)
    started = time.monotonic()
    code = subprocess.call(command, cwd=REPO_ROOT, env=environ)
    took = time.monotonic() - started
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    runs_done = []
    if summary_file.exists():
        for line in summary_file.read_text().splitlines():
            run = json.loads(line)
            runs_done.append(run["label"])
            for key in counts:
                counts[key] += run["counts"][key]
    return code, took, counts, runs_done


def main(pytest_args):
    require = os.environ.get("BGJOBS_TEST_PYTHONS") == "require" or bool(os.environ.get("CI"))
    rows, failed = [], False
    started = time.monotonic()
    found, matrix = {}, combinations()
    for env, version in matrix:
        if version not in found:
            found[version] = find_or_install(version, install=require)
            where = found[version] or "MISSING (not on PATH, not in ~/.pyenv/versions)"
            print(f"matrix: Python {version}: {where}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bgjobs-matrix-") as tmp:
        for env, version in matrix:
            kind = "full" if env == FULL else "fast, SQLite"
            if found[version] is None:
                status = "FAIL" if require else "MISSING"
                failed = failed or require
                rows.append((status, env, kind, f"no Python {version} on this machine", 0.0))
                continue
            code, took, counts, runs_done = run_env(env, found[version], pytest_args, Path(tmp) / f"{env}.jsonl")
            failed = failed or code != 0
            detail = (
                f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
                f" ({' + '.join(runs_done) or 'no run'})"
            )
            rows.append(("OK" if code == 0 else "FAIL", env, kind, detail, took))
    total = time.monotonic() - started
    print("\n" + " test matrix ".center(78, "="))
    for status, env, kind, detail, took in rows:
        print(f"{status:<7} {env:<15} {kind:<12} {detail}  {took / 60:.1f} min")
    missing = sum(status == "MISSING" for status, *_ in rows)
    verdict = "FAILED" if failed else "all combinations passed"
    if missing and not failed:
        verdict = f"the others passed; {missing} combination(s) NOT TESTED: their Python is missing"
    print(f"matrix total: {total / 60:.1f} min; {verdict}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
