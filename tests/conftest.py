"""Session setup: a throwaway ``redis-server`` that the whole test run may wipe.

Unless ``BGJOBS_TEST_REDIS_URL`` is already set (then that server is used and
left running), ``pytest_configure`` starts ``redis-server`` on a free loopback
port, keeping nothing on disk, and points both ``BGJOBS_TEST_REDIS_URL`` and
``REDIS_URL`` at it.  Setting ``REDIS_URL`` matters twice: ``django_bgjobs.conf``
lets it override ``BGJOBS["REDIS_URL"]``, so a developer's own ``REDIS_URL``
can never be the database these tests flush; and worker subprocesses inherit it.

pytest-django imports the settings module before any conftest is loaded, so
``tests/settings.py`` has already read ``BGJOBS_TEST_REDIS_URL`` by the time
this runs; the loaded ``settings.BGJOBS`` is therefore updated in place too.

Every test starts with that Redis database flushed (``FLUSHDB``, never
``FLUSHALL``) and the settings cache cleared, and ends with any worker
subprocess it started and forgot to stop killed (ones started by a wider-scoped
fixture are left to that fixture; the session's end kills whatever remains).
"""

import atexit
import os
from pathlib import Path

import pytest
import redis as redis_lib

from tests.helpers import kill_leftover_procs, start_redis_server, started_procs

_session_server = None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    global _session_server
    _check_installed_package()
    url = os.environ.get("BGJOBS_TEST_REDIS_URL")
    if not url:
        _session_server = start_redis_server()
        atexit.register(_session_server.cleanup)
        url = _session_server.url
    atexit.register(kill_leftover_procs)  # atexit runs last-in first: workers go before Redis
    os.environ["BGJOBS_TEST_REDIS_URL"] = url
    os.environ["REDIS_URL"] = url

    from django.conf import settings

    if settings.configured and isinstance(getattr(settings, "BGJOBS", None), dict):
        settings.BGJOBS["REDIS_URL"] = url
    _clear_settings_cache()


def pytest_unconfigure(config):
    global _session_server
    kill_leftover_procs()  # workers first, so they do not log a vanished Redis
    if _session_server is not None:
        _session_server.cleanup()
        _session_server = None


def pytest_report_header(config):
    import django_bgjobs

    owner = "started for this run" if _session_server is not None else "from BGJOBS_TEST_REDIS_URL"
    return [
        f"bgjobs test redis: {os.environ.get('BGJOBS_TEST_REDIS_URL')} ({owner})",
        f"django_bgjobs {django_bgjobs.__version__} from {Path(django_bgjobs.__file__).parent}",
    ]


def _check_installed_package():
    """With ``BGJOBS_TEST_INSTALLED_IN`` set (scripts/check_wheel.py sets it to a virtualenv's
    site-packages), stop unless ``django_bgjobs`` is imported from there, so a checkout on
    ``sys.path`` cannot stand in for the installed wheel."""
    site_packages = os.environ.get("BGJOBS_TEST_INSTALLED_IN")
    if not site_packages:
        return
    import django_bgjobs

    location = Path(django_bgjobs.__file__).resolve()
    if not location.is_relative_to(Path(site_packages).resolve()):
        raise pytest.UsageError(f"django_bgjobs is imported from {location}, not from {site_packages}")


def _clear_settings_cache():
    try:
        from django_bgjobs import conf
    except ImportError:
        return
    cache_clear = getattr(getattr(conf, "get_settings", None), "cache_clear", None)
    if cache_clear is not None:
        cache_clear()


@pytest.fixture(scope="session")
def redis_url():
    """URL of the throwaway Redis database the tests may wipe."""
    return os.environ["BGJOBS_TEST_REDIS_URL"]


@pytest.fixture(scope="session")
def _session_redis(redis_url):
    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _fresh_redis_and_settings(_session_redis):
    running_before = started_procs()
    _session_redis.flushdb()
    _clear_settings_cache()
    yield
    kill_leftover_procs(keep=running_before)


@pytest.fixture
def redis(redis_url, _session_redis):
    """A ``redis.Redis`` client (``decode_responses=True``) on the flushed test database."""
    _session_redis.flushdb()
    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def raw_redis(redis_url):
    """A client that does not decode responses (for DUMP; see ``helpers.snapshot``)."""
    client = redis_lib.Redis.from_url(redis_url)
    yield client
    client.close()
