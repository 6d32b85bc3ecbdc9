"""The test infrastructure itself: the throwaway Redis, the per-test flush, the helpers."""

import os
from urllib.parse import urlsplit

import pytest
import redis as redis_lib
from django.conf import settings

from tests.helpers import (
    kill_leftover_procs,
    read_log,
    start_django_command,
    start_redis_server,
    wait_until,
)


def test_tests_use_a_throwaway_redis_not_the_default_port(redis_url):
    assert urlsplit(redis_url).port not in (None, 6379)
    assert os.environ["REDIS_URL"] == redis_url
    assert settings.BGJOBS["REDIS_URL"] == redis_url


def test_library_settings_resolve_to_the_throwaway_redis(redis_url):
    conf = pytest.importorskip("django_bgjobs.conf")

    assert conf.get_settings()["REDIS_URL"] == redis_url


@pytest.mark.parametrize("turn", [1, 2])
def test_redis_db_is_empty_at_each_test_start(redis, turn):
    # Given: whichever turn runs second finds what the first left, unless flushed
    assert redis.dbsize() == 0

    # When
    redis.set(f"left-over-{turn}", "x")

    # Then
    assert redis.dbsize() == 1


def test_wait_until_returns_the_truthy_value():
    calls = []

    def third_call():
        calls.append(1)
        return len(calls) if len(calls) >= 3 else None

    assert wait_until(third_call, timeout=1, interval=0) == 3


def test_wait_until_raises_assertion_error_when_deadline_passes():
    with pytest.raises(AssertionError, match="timed out after 0.05s waiting for never"):
        wait_until(lambda: False, timeout=0.05, message="never")


def test_extra_redis_server_can_be_killed_and_restarted_on_same_port():
    # Given
    with start_redis_server() as server:
        client = redis_lib.Redis.from_url(server.url, socket_timeout=1)
        client.set("k", "v")

        # When
        server.kill()

        # Then
        assert not server.ping()
        with pytest.raises(redis_lib.ConnectionError):
            client.get("k")

        # When
        server.start()

        # Then: same port, empty (nothing kept on disk)
        assert server.ping()
        assert client.get("k") is None
    assert not server.running


def test_django_subprocess_inherits_settings_and_test_redis(redis_url):
    # Given a command that prints what the subprocess sees
    code = (
        "import os; from django.conf import settings; "
        "print('URL', os.environ['REDIS_URL'], settings.BGJOBS['REDIS_URL'])"
    )

    # When
    proc = start_django_command("shell", "-c", code)

    # Then
    assert proc.wait(timeout=30) == 0, read_log(proc)
    assert f"URL {redis_url} {redis_url}" in read_log(proc)


@pytest.mark.django_db
def test_test_database_is_the_one_the_settings_name():
    from django.db import connection

    from tests.testapp.models import Author

    # Given
    Author.objects.create(name="Ada")

    # Then: the run's backend (SQLite or PostgreSQL) really holds the row
    assert Author.objects.get().name == "Ada"
    engine = settings.DATABASES["default"]["ENGINE"]
    assert connection.vendor == ("postgresql" if engine.endswith("postgresql") else "sqlite")


def test_kill_leftover_procs_spares_the_ones_to_keep():
    # Given two sleeping Django subprocesses
    sleep = "import time; time.sleep(60)"
    kept = start_django_command("shell", "-c", sleep)
    other = start_django_command("shell", "-c", sleep)

    # When
    killed = kill_leftover_procs(keep=[kept])

    # Then
    assert killed == 1
    assert other.poll() is not None
    assert kept.poll() is None
    kept.kill()
    kept.wait()


@pytest.mark.parametrize(("settings_module", "cwd"), [
    ("tests.settings", "."), ("exampleproject.settings", "example_project"),
], ids=["tests", "example_project"])
def test_settings_use_no_setting_the_installed_django_deprecates(settings_module, cwd):
    """Django 6.1 deprecates EMAIL_BACKEND for MAILERS (its RemovedInDjango... warnings are
    PendingDeprecationWarning or DeprecationWarning): on that Django, with warnings as errors,
    the settings still load."""
    import subprocess
    import sys

    from tests.helpers import REPO_ROOT, subprocess_env

    result = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-W", "error::PendingDeprecationWarning", "-c",
         "import django; django.setup(); from django.conf import settings; print(settings.DATABASES['default']['ENGINE'])"],
        cwd=REPO_ROOT / cwd, capture_output=True, text=True, timeout=60,
        env=subprocess_env({"DJANGO_SETTINGS_MODULE": settings_module}),
    )

    assert result.returncode == 0, result.stderr
