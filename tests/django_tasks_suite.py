#!/usr/bin/env python
"""Run Django's own tests of the Tasks framework against ``django_bgjobs.tasks.RedisTaskBackend``.

Usage (needs Django 6.x, so Python 3.12+, network access to PyPI the first time, and
``redis-server`` on PATH)::

    python tests/django_tasks_suite.py [--sdist PATH] [--cache-dir DIR] [-v]

Nothing is vendored.  The script:

1. Downloads the source distribution of the installed Django version
   (``pip download --no-binary :all: --no-deps Django==X.Y.Z``; cached in
   ``~/.cache/django-bgjobs``) and extracts ``tests/tasks/`` from it.  The ``django-tasks``
   backport's sdist ships no tests, and Django 5.2 has no ``tests/tasks``, so this
   runs on Django 6 only.
2. Runs three of its modules twice, each run in a child process with its own throwaway
   ``redis-server``: once unchanged (the baseline, against Django's own backends), and once
   with the backends swapped in their ``TASKS`` settings:

   * ``django.tasks.backends.dummy.DummyBackend`` -> :class:`RedisDummyBackend`: the
     ``RedisTaskBackend`` with no worker running (enqueue only, as the dummy backend), plus
     the dummy backend's two test helpers (``results``, ``clear()``) read from Redis;
   * ``django.tasks.backends.immediate.ImmediateBackend`` -> :class:`RedisImmediateBackend`:
     the ``RedisTaskBackend`` followed, after each enqueue, by a real worker ``Processor``
     step that runs the task (as the immediate backend runs it inside ``enqueue``).

   ``test_custom_backend.py`` is left out: it tests ``BaseTaskBackend`` with backends of its
   own and exercises no backend Django ships.
3. Prints the pass counts and, for every test that fails with this backend, the reason
   from :data:`KNOWN_DIFFERENCES`.  Exit status 0 when every failure is explained there.

Redis is flushed before every test, as in this project's own suite.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import unittest
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MODULES = ["test_tasks", "test_dummy_backend", "test_immediate_backend"]
DUMMY = "django.tasks.backends.dummy.DummyBackend"
IMMEDIATE = "django.tasks.backends.immediate.ImmediateBackend"
SWAPS = {
    DUMMY: "tests.django_tasks_suite.RedisDummyBackend",
    IMMEDIATE: "tests.django_tasks_suite.RedisImmediateBackend",
}

_IS_A = "asserts that the configured backend is an instance of Django's {0}; it is a RedisTaskBackend"
_DEFERS = (
    "inside transaction.atomic() django-bgjobs pushes the task (and writes its READY result) when the "
    "transaction commits (BGJOBS['DEFER_ON_COMMIT'], on by default), so a rollback enqueues nothing; "
    "Django's development backends act at once"
)
_RESULTS = "the ImmediateBackend cannot read results back; RedisTaskBackend can (supports_get_result = True)"

#: Test (``module.Class.method``) -> why it fails against RedisTaskBackend: a real difference.
KNOWN_DIFFERENCES = {
    "test_tasks.TaskTestCase.test_using_correct_backend": _IS_A.format("DummyBackend"),
    "test_tasks.TaskTestCase.test_get_backend": _IS_A.format("DummyBackend and ImmediateBackend"),
    "test_dummy_backend.DummyBackendTestCase.test_using_correct_backend": _IS_A.format("DummyBackend"),
    "test_immediate_backend.ImmediateBackendTestCase.test_using_correct_backend": _IS_A.format("ImmediateBackend"),
    "test_dummy_backend.DummyBackendTestCase.test_refresh_result": (
        "changes the stored result in memory (object.__setattr__ on backend.results[0]) and expects refresh() "
        "to see it; RedisTaskBackend's results live in Redis, so the change is made to a copy"
    ),
    "test_dummy_backend.DummyBackendTestCase.test_refresh_result_async": "as test_refresh_result",
    "test_dummy_backend.DummyBackendTransactionTestCase.test_doesnt_wait_until_transaction_commit_by_default": _DEFERS,
    "test_immediate_backend.ImmediateBackendTransactionTestCase.test_doesnt_wait_until_transaction_commit_by_default": (
        _DEFERS
    ),
    "test_immediate_backend.ImmediateBackendTestCase.test_cannot_get_result": _RESULTS,
    "test_immediate_backend.ImmediateBackendTestCase.test_cannot_refresh_result": _RESULTS,
    "test_immediate_backend.ImmediateBackendTestCase.test_cannot_pass_run_after": (
        "the ImmediateBackend refuses run_after; RedisTaskBackend schedules the task (supports_defer = True)"
    ),
}


# -- the backends as the dummy and immediate backends' tests use them ---------------------------

try:
    from django_bgjobs.tasks import RedisTaskBackend
except ImportError:  # no Tasks framework here: main() says what is needed
    RedisTaskBackend = object


class RedisDummyBackend(RedisTaskBackend):
    """``RedisTaskBackend`` with no worker, plus ``DummyBackend``'s test helpers over Redis."""

    @property
    def results(self):
        """Every stored result, oldest first (``DummyBackend.results`` is a list in enqueue order)."""
        from django_bgjobs import keys
        from django_bgjobs.connection import get_redis

        prefix = keys.task_result("")
        ids = [key.decode()[len(prefix):] for key in get_redis().scan_iter(match=keys.task_result("*"))]
        return sorted((self.get_result(result_id) for result_id in ids), key=lambda result: result.enqueued_at)

    def clear(self):
        from django_bgjobs import keys
        from django_bgjobs.connection import get_redis

        found = list(get_redis().scan_iter(match=keys.task_result("*")))
        if found:
            get_redis().delete(*found)


class RedisImmediateBackend(RedisTaskBackend):
    """``RedisTaskBackend`` whose ``enqueue`` then drives a real worker ``Processor`` until the
    task's queue is empty, and returns the result read back from Redis."""

    def enqueue(self, task, args, kwargs):
        from django_bgjobs._tasks_compat import TaskResultDoesNotExist
        from django_bgjobs.worker.fetcher import Fetcher
        from django_bgjobs.worker.processor import Processor
        from django_bgjobs.worker.queues import QueueOrder

        result = super().enqueue(task, args, kwargs)
        processor = Processor(Fetcher("django-tasks-suite:0:immediate", QueueOrder([task.queue_name])))
        while processor.process_one(block=False):
            pass
        try:
            return self.get_result(result.id)
        except TaskResultDoesNotExist:
            return result  # not pushed yet: inside atomic() the push waits for the commit


# -- parent: fetch, run the children, report ----------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdist", type=Path, help="a Django sdist (.tar.gz) to take tests/tasks from")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "django-bgjobs")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each test's outcome")
    parser.add_argument("--child", nargs=2, metavar=("TESTS_DIR", "OUTPUT"), help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.child:
        return run_child(Path(options.child[0]), Path(options.child[1]))

    import django

    if django.VERSION < (6, 0):
        print(
            f"Django {django.__version__} has no django.tasks tests (they are in Django 6.0's tests/tasks, and the "
            "django-tasks backport's sdist ships none). Run this with Django 6, e.g.:\n"
            "  python3.12 -m venv /tmp/dj6 && /tmp/dj6/bin/pip install -e '.[test]' 'Django>=6.0,<6.1'\n"
            "  /tmp/dj6/bin/python tests/django_tasks_suite.py",
            file=sys.stderr,
        )
        return 2
    sdist = options.sdist or download_sdist(django.__version__, options.cache_dir)
    with tempfile.TemporaryDirectory(prefix="bgjobs-django-tasks-") as tmp:
        outcomes = {}
        for mode in ("baseline", "redis"):
            tests_dir = Path(tmp) / mode
            extract_tasks_tests(sdist, tests_dir, swap=(mode == "redis"))
            output = Path(tmp) / f"{mode}.json"
            child = subprocess.run(
                [sys.executable, __file__, "--child", str(tests_dir), str(output)],
                cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True,
            )
            if options.verbose or not output.exists():
                print(f"--- {mode} run ---\n{child.stdout}{child.stderr}", file=sys.stderr)
            if not output.exists():
                print(f"the {mode} run did not finish (exit status {child.returncode})", file=sys.stderr)
                return 1
            outcomes[mode] = json.loads(output.read_text())
    return report(django.__version__, sdist, outcomes, options.verbose)


def download_sdist(version, cache_dir):
    cache_dir.mkdir(parents=True, exist_ok=True)
    found = [p for p in cache_dir.iterdir() if p.name.lower() == f"django-{version}.tar.gz"]
    if found:
        return found[0]
    print(f"downloading the Django {version} source distribution from PyPI into {cache_dir}", file=sys.stderr)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
         f"Django=={version}", "-d", str(cache_dir)],
        check=True,
    )
    return next(p for p in cache_dir.iterdir() if p.name.lower() == f"django-{version}.tar.gz")


def extract_tasks_tests(sdist, tests_dir, swap):
    """Write ``tests/tasks/*.py`` of ``sdist`` to ``tests_dir/tasks/``, with backends swapped if ``swap``."""
    package = tests_dir / "tasks"
    package.mkdir(parents=True)
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if re.fullmatch(r"[^/]+/tests/tasks/[^/]+\.py", m.name)]
        if not members:
            raise SystemExit(f"{sdist} has no tests/tasks/: not a Django 6 source distribution")
        for member in members:
            source = archive.extractfile(member).read().decode()
            if swap:
                for original, replacement in SWAPS.items():
                    source = source.replace(f'"{original}"', f'"{replacement}"')
            (package / Path(member.name).name).write_text(source)


def report(version, sdist, outcomes, verbose):
    baseline, redis = outcomes["baseline"], outcomes["redis"]
    print(f"\nDjango {version} tests/tasks ({sdist.name}): modules {', '.join(MODULES)}")
    print(f"{'module':<28}{'tests':>7}{'Django backends':>17}{'RedisTaskBackend':>18}")
    for module in MODULES:
        ids = [test for test in redis if test.startswith(module + ".")]
        base = sum(baseline.get(test, {}).get("outcome") == "passed" for test in ids)
        ours = sum(redis[test]["outcome"] == "passed" for test in ids)
        print(f"{module:<28}{len(ids):>7}{base:>17}{ours:>18}")
    total = len(redis)
    passed = Counter(entry["outcome"] for entry in redis.values())["passed"]
    base_passed = Counter(entry["outcome"] for entry in baseline.values())["passed"]
    print(f"{'total':<28}{total:>7}{base_passed:>17}{passed:>18}\n")
    unexplained = 0
    for test, entry in sorted(redis.items()):
        if verbose:
            print(f"  {entry['outcome']:<8} {test}")
        if entry["outcome"] == "passed":
            continue
        reason = KNOWN_DIFFERENCES.get(test)
        if reason is None:
            unexplained += 1
            print(f"UNEXPLAINED {entry['outcome']}: {test}\n    {entry['message']}")
        else:
            print(f"{entry['outcome']}: {test}\n    difference: {reason}")
    stale = sorted(test for test in KNOWN_DIFFERENCES if redis.get(test, {}).get("outcome") == "passed")
    for test in stale:
        print(f"now passes (remove from KNOWN_DIFFERENCES): {test}")
    print(f"\n{passed} of {total} pass against RedisTaskBackend; {total - passed - unexplained} failures are "
          f"known differences, {unexplained} unexplained.")
    return 1 if unexplained or base_passed != total else 0


# -- child: one run of the extracted tests ------------------------------------------------------


class _Result(unittest.TextTestResult):
    """Flushes the suite's Redis before each test and keeps one outcome per test method."""

    redis_client = None
    outcomes = {}

    def startTest(self, test):
        self.redis_client.flushdb()
        self.outcomes.setdefault(_test_id(test), {"outcome": "passed", "message": ""})
        super().startTest(test)

    def _mark(self, test, outcome, err):
        entry = self.outcomes.setdefault(_test_id(test), {"outcome": "passed", "message": ""})
        if entry["outcome"] == "passed":
            entry["outcome"] = outcome
            entry["message"] = self._exc_info_to_string(err, test).strip().splitlines()[-1] if err else ""

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._mark(test, "failed", err)

    def addError(self, test, err):
        super().addError(test, err)
        self._mark(test, "error", err)

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._mark(test, "failed" if issubclass(err[0], test.failureException) else "error", err)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self.outcomes[_test_id(test)] = {"outcome": "skipped", "message": reason}


def _test_id(test):
    return test.id().removeprefix("tasks.")


def run_child(tests_dir, output):
    import django
    from django.conf import settings
    from django.test.runner import DiscoverRunner

    sys.path.insert(0, str(tests_dir))
    sys.path.insert(0, str(REPO_ROOT))
    from tests.helpers import start_redis_server

    server = start_redis_server()
    os.environ["REDIS_URL"] = server.url  # wins over BGJOBS["REDIS_URL"]: never the user's Redis
    try:
        swapped = "tests.django_tasks_suite" in (tests_dir / "tasks" / "test_tasks.py").read_text()
        settings.configure(
            SECRET_KEY="django-tasks-suite",
            INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django_bgjobs"],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
            USE_TZ=True,
            # Django's runtests.py uses the global default (the ImmediateBackend) when tests/tasks/tasks.py
            # is imported; its @task functions are validated, and here registered, by that backend.
            TASKS={"default": {"BACKEND": SWAPS[IMMEDIATE] if swapped else IMMEDIATE}},
            BGJOBS={"REDIS_URL": server.url, "QUEUES": ["default"], "RECORD_FAILED_JOBS": False,
                    "FETCH_TIMEOUT_S": 0.2},
        )
        django.setup()
        import redis

        _Result.redis_client = redis.Redis.from_url(server.url)

        class Runner(DiscoverRunner):
            def get_resultclass(self):
                return _Result

        runner = Runner(verbosity=1, interactive=False, top_level=str(tests_dir))
        runner.run_tests([f"tasks.{module}" for module in MODULES])
        output.write_text(json.dumps(_Result.outcomes, indent=1))
    finally:
        server.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
