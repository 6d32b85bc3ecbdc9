"""django_bgjobs.checks: each id fires on its mistake, with a hint, and touches no network."""

import json
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from django_bgjobs import conf, connection
from django_bgjobs.checks import check_job_queues, check_redis_eviction, check_reliability_settings, check_settings
from tests.helpers import REPO_ROOT, start_redis_server, subprocess_env


def bgjobs(**changes):
    """override_settings for the test BGJOBS with ``changes`` applied."""
    return override_settings(BGJOBS={**settings.BGJOBS, **changes})


def ids(messages):
    return [message.id for message in messages]


def test_no_message_when_settings_are_valid():
    assert check_settings() == []


def test_no_message_when_bgjobs_is_not_set():
    with override_settings():
        del settings.BGJOBS
        assert check_settings() == []


@pytest.mark.parametrize("value", [["default"], "redis://localhost", 42])
def test_e001_when_bgjobs_is_not_a_dict(monkeypatch, value):
    # Given (override_settings would fail earlier: its signal rebuilds the settings from the bad value)
    monkeypatch.setattr(settings, "BGJOBS", value)

    # When
    messages = check_settings()

    # Then
    assert ids(messages) == ["django_bgjobs.E001"]
    assert "QUEUES" in messages[0].hint


@pytest.mark.parametrize(
    "queues",
    [[], ["default", "has space"], ["x" * 129], "default", ["default", 5], ["default,abc"], ["default,0"],
     ["default", "."], ["..,2"]],
    ids=["empty", "space", "too-long", "bare-string", "not-a-string", "bad-weight", "zero-weight",
         "dot", "dot-dot"],
)
def test_e002_when_queues_is_not_a_list_of_valid_names(queues):
    with bgjobs(QUEUES=queues):
        messages = check_settings()

    assert ids(messages) == ["django_bgjobs.E002"]
    assert messages[0].hint == "BGJOBS['QUEUES'] = ['critical', 'default', 'low']"


def test_no_e002_when_queues_are_weighted():
    with bgjobs(QUEUES=["critical,3", "default, 2", "low,1"]):
        assert check_settings() == []


def test_e003_when_backend_is_unknown():
    with bgjobs(BACKEND="celery"):
        messages = check_settings()

    assert ids(messages) == ["django_bgjobs.E003"]
    assert "'celery'" in messages[0].msg
    assert "inline" in messages[0].hint


@pytest.mark.parametrize("concurrency", [0, -1, "5", 2.5, True])
def test_e004_when_concurrency_is_not_a_whole_number_of_at_least_one(concurrency):
    with bgjobs(CONCURRENCY=concurrency):
        messages = check_settings()

    assert ids(messages) == ["django_bgjobs.E004"]


@pytest.mark.parametrize("concurrency", [0, "100", 2.5, False])
def test_e004_when_async_concurrency_is_not_a_whole_number_of_at_least_one(concurrency):
    with bgjobs(ASYNC_CONCURRENCY=concurrency):
        messages = check_settings()

    assert ids(messages) == ["django_bgjobs.E004"]
    assert "ASYNC_CONCURRENCY" in messages[0].msg
    assert messages[0].hint


@pytest.mark.parametrize("prefetch", [-1, "5", 2.5, True])
def test_e030_when_prefetch_is_neither_none_nor_a_whole_number(prefetch):
    with bgjobs(PREFETCH=prefetch):
        messages = check_settings()

    assert ids(messages) == ["django_bgjobs.E030"]
    assert "None" in messages[0].hint


@pytest.mark.parametrize("prefetch", [None, 0, 20])
def test_no_e030_when_prefetch_is_none_or_a_whole_number(prefetch):
    with bgjobs(PREFETCH=prefetch):
        assert check_settings() == []


@pytest.mark.parametrize("key", ["UNIQUE_LOCK_TTL_S", "UNIQUE_RESCHEDULE_S", "BATCH_TTL_S", "BATCH_UNFINISHED_TTL_S"])
@pytest.mark.parametrize("value", [0, -5, "3600", None, True])
def test_e040_when_a_unique_or_batch_ttl_is_not_a_positive_number(key, value):
    with bgjobs(**{key: value}):
        messages = check_settings()

    assert ids(messages) == ["django_bgjobs.E040"]
    assert key in messages[0].msg


def test_no_e040_when_unique_and_batch_ttls_are_positive_numbers():
    with bgjobs(UNIQUE_LOCK_TTL_S=0.5, UNIQUE_RESCHEDULE_S=1, BATCH_TTL_S=60, BATCH_UNFINISHED_TTL_S=3600.0):
        assert check_settings() == []


def test_e005_names_each_unknown_key_and_the_closest_known_one_when_bgjobs_has_typos():
    with bgjobs(CONCURENCY=3, QUEUE=["x"], redis_url="redis://elsewhere/0", ZZZ=1):
        messages = check_settings()

    assert ids(messages) == ["django_bgjobs.E005"] * 4
    assert [m.msg for m in messages] == [
        "BGJOBS has an unknown key 'CONCURENCY'.", "BGJOBS has an unknown key 'QUEUE'.",
        "BGJOBS has an unknown key 'ZZZ'.", "BGJOBS has an unknown key 'redis_url'.",
    ]
    assert messages[0].hint.startswith("Did you mean 'CONCURRENCY'? Known keys: ")
    assert messages[1].hint.startswith("Did you mean 'QUEUES'?")
    assert messages[2].hint.startswith("Known keys: ") and "REDIS_URL" in messages[2].hint
    assert messages[3].hint.startswith("Did you mean 'REDIS_URL'?")
    assert all(m.is_serious() for m in messages)


def test_w001_names_a_deprecated_key_and_its_replacement_when_bgjobs_still_uses_it(monkeypatch):
    # Given: a key on the way out (none is today: the table is empty)
    monkeypatch.setitem(conf.DEPRECATED, "OLD_QUEUES", "QUEUES")

    # When
    with bgjobs(OLD_QUEUES=["default"]):
        messages = check_settings()

    # Then: a warning, not the unknown-key error
    assert ids(messages) == ["django_bgjobs.W001"]
    assert messages[0].msg == "BGJOBS['OLD_QUEUES'] is deprecated."
    assert messages[0].hint == "Use QUEUES instead."
    assert messages[0].is_serious() is False


def test_runjobs_refuses_to_start_with_e005_when_bgjobs_has_a_mistyped_redis_url():
    # When: REDIS_URL mistyped, so the worker would otherwise start against localhost:6379/0
    result = subprocess.run(
        [sys.executable, "-m", "django", "runjobs"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        env=subprocess_env({"BGJOBS_TEST_EXTRA_SETTINGS": json.dumps({"REDIS_ULR": "redis://prod:6379/0"})}),
    )

    # Then
    assert result.returncode != 0
    assert "django_bgjobs.E005" in result.stderr
    assert "Did you mean 'REDIS_URL'?" in result.stderr
    assert "Traceback" not in result.stderr


def test_w002_names_each_job_whose_class_queue_no_worker_serves_when_queues_leave_it_out():
    # Given: a job on "reports", which BGJOBS["QUEUES"] does not name
    from django_bgjobs import Job

    class ReportJob(Job):
        name = "tests.test_checks.ReportJob"
        queue = "reports"

        def perform(self):
            return None

    # When
    with bgjobs(QUEUES=["critical", "default,2", "low"]):
        unserved = [m for m in check_job_queues() if "ReportJob" in m.msg]
    with bgjobs(QUEUES=["default", "reports,3"]):
        served = [m for m in check_job_queues() if "ReportJob" in m.msg]

    # Then
    assert ids(unserved) == ["django_bgjobs.W002"]
    assert unserved[0].msg == (
        "Job tests.test_checks.ReportJob has queue 'reports', which is not in BGJOBS['QUEUES']: a worker "
        "started without -q never runs it, and its jobs wait for ever."
    )
    assert unserved[0].hint == "Add 'reports' to BGJOBS['QUEUES'], or start a worker with -q reports."
    assert served == []


def test_w002_leaves_out_the_library_own_jobs_whose_queue_is_chosen_per_payload():
    with bgjobs(QUEUES=["only"]):
        names = " ".join(m.msg for m in check_job_queues())

    assert "django_bgjobs." not in names  # BatchCallbackJob, TaskJob, PruneFailedJobs
    assert "tests.testapp.jobs.RecordJob" in names


def test_checks_open_no_redis_connection_when_redis_is_unreachable():
    # Given: a Redis URL nothing listens on, and no client created yet
    with bgjobs(REDIS_URL="redis://127.0.0.1:1/0", BACKEND="bogus"):
        assert connection._client is None

        # When
        messages = check_settings()

        # Then
        assert ids(messages) == ["django_bgjobs.E003"]
        assert connection._client is None


@pytest.mark.django_db  # Django 6's own checks may query the database
def test_manage_py_check_reports_errors_when_settings_are_wrong():
    with bgjobs(CONCURRENCY=0):
        with pytest.raises(SystemCheckError, match=r"django_bgjobs\.E004"):
            call_command("check")


# -- reliability settings and the Redis eviction policy ---------------------------------------


@pytest.mark.parametrize(("key", "value"), [
    ("SOCKET_CONNECT_TIMEOUT_S", 0), ("SOCKET_TIMEOUT_S", -1), ("SOCKET_TIMEOUT_S", "5"),
    ("ENQUEUE_RETRIES", -1), ("ENQUEUE_RETRIES", 1.5), ("MAX_PAYLOAD_BYTES", 100), ("MAX_PAYLOAD_BYTES", True),
    ("JOB_TIMEOUT_GRACE_S", -1), ("JOB_TIMEOUT_GRACE_S", float("inf")), ("MAX_CRASHES", 0), ("MAX_CRASHES", None),
])
def test_e050_names_the_setting_when_a_reliability_setting_is_out_of_range(key, value):
    with bgjobs(**{key: value}):
        messages = check_reliability_settings()

    assert ids(messages) == ["django_bgjobs.E050"]
    assert messages[0].msg == f"BGJOBS[{key!r}] is {value!r}."
    assert repr(conf.DEFAULTS[key]) in messages[0].hint


def test_no_e050_when_payloads_are_unlimited_and_retries_are_on():
    with bgjobs(MAX_PAYLOAD_BYTES=None, ENQUEUE_RETRIES=3, JOB_TIMEOUT_GRACE_S=0):
        assert check_reliability_settings() == []


@pytest.fixture
def evicting_redis(monkeypatch):
    """A server of its own whose maxmemory-policy evicts keys; the library points at it."""
    server = start_redis_server(extra_args=("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"))
    monkeypatch.setenv("REDIS_URL", server.url)
    conf.get_settings.cache_clear()
    connection.reset()
    yield server
    monkeypatch.undo()
    conf.get_settings.cache_clear()
    connection.reset()
    server.cleanup()


def test_w050_warns_that_jobs_may_be_lost_when_redis_may_evict_keys_under_check_deploy(evicting_redis):
    # When
    messages = run_checks(include_deployment_checks=True, tags=["redis"])

    # Then
    assert ids(messages) == ["django_bgjobs.W050"]
    assert "'allkeys-lru'" in messages[0].msg and "noeviction" in messages[0].msg
    assert "maxmemory-policy noeviction" in messages[0].hint
    assert messages[0].is_serious() is False


@pytest.mark.django_db  # Django 6's own checks may query the database
def test_plain_check_asks_redis_nothing_when_redis_may_evict_keys(evicting_redis):
    messages = run_checks()

    assert "django_bgjobs.W050" not in ids(messages)
    assert connection._client is None


def test_no_w050_when_redis_policy_is_noeviction(redis):
    assert redis.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}

    assert check_redis_eviction() == []


def test_w051_names_the_server_when_redis_cannot_be_asked_under_check_deploy(monkeypatch):
    # Given
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    conf.get_settings.cache_clear()
    connection.reset()

    # When
    messages = check_redis_eviction()

    # Then
    assert ids(messages) == ["django_bgjobs.W051"]
    assert "127.0.0.1:1/0" in messages[0].msg
    monkeypatch.undo()
    conf.get_settings.cache_clear()
    connection.reset()


def test_eviction_check_is_silent_when_the_backend_is_inline():
    with bgjobs(BACKEND="inline", REDIS_URL="redis://127.0.0.1:1/0"):
        assert check_redis_eviction() == []
