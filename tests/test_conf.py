"""django_bgjobs.conf: settings read lazily from one dict, reset by override_settings."""

import subprocess
import sys

from django.conf import settings
from django.test import override_settings

from django_bgjobs import conf, connection
from tests.helpers import REPO_ROOT


def test_defaults_are_sidekiqs_when_setting_leaves_them_out():
    with override_settings(BGJOBS={}):
        merged = conf.get_settings()

    assert merged["CONCURRENCY"] == 5
    assert merged["SHUTDOWN_TIMEOUT_S"] == 25
    assert merged["MAX_RETRIES"] == 25
    assert merged["DEAD_MAX_JOBS"] == 10_000
    assert merged["DEAD_TIMEOUT_S"] == 180 * 24 * 60 * 60
    assert merged["QUEUES"] == ["default"]
    assert merged["BACKEND"] == "redis"
    assert merged["DEFER_ON_COMMIT"] is True
    assert merged["KEY_PREFIX"] == ""


def test_get_reads_new_value_when_override_settings_changes_bgjobs():
    # Given
    assert conf.get("CONCURRENCY") == 5

    # When
    with override_settings(BGJOBS={**settings.BGJOBS, "CONCURRENCY": 12}):
        inside = conf.get("CONCURRENCY")

    # Then
    assert inside == 12
    assert conf.get("CONCURRENCY") == 5


def test_get_settings_is_cached_when_settings_do_not_change():
    assert conf.get_settings() is conf.get_settings()


def test_redis_url_environment_variable_wins_when_set(monkeypatch, redis_url):
    # Given: the test run's REDIS_URL points at the throwaway server
    with override_settings(BGJOBS={**settings.BGJOBS, "REDIS_URL": "redis://127.0.0.1:1/5"}):
        # Then
        assert conf.get("REDIS_URL") == redis_url

        # When the variable is unset
        monkeypatch.delenv("REDIS_URL")
        conf.get_settings.cache_clear()

        # Then
        assert conf.get("REDIS_URL") == "redis://127.0.0.1:1/5"
    monkeypatch.undo()
    conf.get_settings.cache_clear()
    assert conf.get("REDIS_URL") == redis_url


def test_connection_is_forgotten_when_bgjobs_setting_changes(redis):
    # Given
    first = connection.get_redis()
    assert connection.get_redis() is first

    # When
    with override_settings(BGJOBS={**settings.BGJOBS, "KEY_PREFIX": "x"}):
        # Then
        assert connection._client is None
        assert connection.get_redis() is not first


def test_unknown_keys_lists_keys_not_in_defaults_when_setting_has_typos():
    with override_settings(BGJOBS={"QUEUES": ["default"], "CONCURENCY": 3, "retries": 1}):
        assert conf.unknown_keys() == ["CONCURENCY", "retries"]


def test_importing_client_modules_reads_no_setting_when_django_is_not_configured():
    # Given: a Python with no DJANGO_SETTINGS_MODULE, where reading a setting raises
    code = (
        "import django_bgjobs, django_bgjobs.conf, django_bgjobs.keys, django_bgjobs.job, "
        "django_bgjobs.client, django_bgjobs.connection, django_bgjobs.testing\n"
        "from django.conf import settings\n"
        "assert not settings.configured\n"
        "print('ok')\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT)}

    # When
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)

    # Then
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
