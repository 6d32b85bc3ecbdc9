"""Debian's real Ruby Sidekiq (``ruby-sidekiq``, 6.4.1) against the test Redis.

:func:`ruby` runs a Ruby snippet after ``tests/ruby/prelude.rb`` (Sidekiq's client and
API on ``REDIS_URL``; ``emit(value)`` hands a JSON value back) and returns what it
emitted.  :func:`start_sidekiq` starts a real ``sidekiq`` process with the job classes of
``tests/ruby/jobs.rb``.  The ``sidekiq`` fixture skips, saying why, when Ruby, Sidekiq or
rack-test is missing (``.ci/run`` installs ``ruby-sidekiq ruby-rack-test`` and sets
``BGJOBS_TEST_SIDEKIQ=require``, which turns that skip into a failure).
"""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.helpers import REPO_ROOT, _started_procs

RUBY_DIR = REPO_ROOT / "tests" / "ruby"


def missing_reason():
    """None when Ruby can load Sidekiq, its Web UI and rack-test; else what is missing."""
    if not shutil.which("ruby") or not shutil.which("sidekiq"):
        return "no ruby/sidekiq on PATH (apt-get install ruby-sidekiq ruby-rack-test)"
    probe = subprocess.run(
        ["ruby", "-e", 'require "sidekiq"; require "sidekiq/web"; require "rack/test"; print Sidekiq::VERSION'],
        capture_output=True, text=True, timeout=60,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        return f"Ruby cannot load sidekiq, sidekiq/web and rack/test ({last}); apt-get install ruby-sidekiq ruby-rack-test"
    return None


@pytest.fixture(scope="session")
def sidekiq_version():
    """The Ruby Sidekiq version, or a skip (a failure under ``BGJOBS_TEST_SIDEKIQ=require``)."""
    reason = missing_reason()
    if reason:
        if os.environ.get("BGJOBS_TEST_SIDEKIQ") == "require":
            pytest.fail(f"BGJOBS_TEST_SIDEKIQ=require but {reason}")
        pytest.skip(reason)
    return subprocess.run(["ruby", "-e", 'require "sidekiq"; print Sidekiq::VERSION'],
                          capture_output=True, text=True, check=True).stdout


def ruby(code, timeout=60):
    """Run ``code`` after the prelude; return the value of its last ``emit`` (None if none)."""
    script = (RUBY_DIR / "prelude.rb").read_text() + "\n" + code
    done = subprocess.run(["ruby", "-"], input=script, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ), cwd=REPO_ROOT)
    if done.returncode != 0:
        raise AssertionError(f"ruby exited {done.returncode}:\n{done.stderr[-4000:]}\n{done.stdout[-2000:]}")
    results = [line[len("RESULT "):] for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(results[-1]) if results else None


def start_sidekiq(*args):
    """Start ``sidekiq -r tests/ruby/jobs.rb ARGS`` (e.g. ``"-q", "ruby"``) on the test Redis.

    Its output goes to ``proc.log_path``; the process is killed after the test like a worker."""
    log_path = Path(tempfile.mkdtemp(prefix="bgjobs-sidekiq-")) / "sidekiq.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["sidekiq", "-r", str(RUBY_DIR / "jobs.rb"), "-c", "2", *args],
            cwd=REPO_ROOT, env=dict(os.environ), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
    proc.log_path = log_path
    _started_procs.append(proc)
    return proc
