"""django-bgjobs: ``NoopJob.perform_later`` / ``perform_bulk``; ``python -m django runjobs``."""

import os
import sys

LABEL = "django-bgjobs"
BULK = True
MULTIPROCESS = "native"  # runjobs --processes N

_job = None


def _setup():
    global _job
    if _job is None:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bgjobs_bench.settings")
        import django

        django.setup()
        from bgjobs_bench.jobs import NoopJob

        _job = NoopJob
    return _job


def available():
    try:
        import django_bgjobs  # noqa: F401
    except ImportError as exc:
        return f"django_bgjobs is not importable ({exc})"
    return None


def version():
    import django_bgjobs

    return django_bgjobs.__version__


def connect():
    _setup()
    from django_bgjobs.connection import get_redis

    get_redis().ping()


def enqueue(t):
    _job.perform_later(t)


def enqueue_bulk(n):
    _job.perform_bulk([(0,)] * n)


def worker_argv(processes, threads, index):
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bgjobs_bench.settings")
    return [sys.executable, "-m", "django", "runjobs", "-c", str(threads), "--processes", str(processes)]
