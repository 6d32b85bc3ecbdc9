"""django_bgjobs.client: what perform_later writes to Redis, and when.

The payload and keys are Sidekiq's, so these tests read Redis directly and compare
with what a Sidekiq client would have written.
"""

import datetime
import json
import math
import re
import socket
import threading
import time

import pytest
import redis as redis_lib
from django.conf import settings
from django.db import transaction
from django.test import override_settings

from django_bgjobs import conf, connection, signals
from django_bgjobs.errors import (
    BgJobsError,
    ConfigurationError,
    EnqueueError,
    PayloadTooLargeError,
    SerializationError,
)
from django_bgjobs.payload import now_s
from tests.helpers import start_redis_server
from tests.testapp.jobs import NoopJob, NoRetryJob, RecordJob
from tests.testapp.models import Author

JID_RE = re.compile(r"^[0-9a-f]{24}$")


def bgjobs(**changes):
    return override_settings(BGJOBS={**settings.BGJOBS, **changes})


def queued(redis, queue="default"):
    """The payloads in ``queue:<queue>`` in the order a worker takes them (oldest first)."""
    return [json.loads(raw) for raw in reversed(redis.lrange(f"queue:{queue}", 0, -1))]


def command_calls(redis):
    """Redis's own count of calls per command since the last ``CONFIG RESETSTAT``."""
    return {name.removeprefix("cmdstat_"): stat["calls"] for name, stat in redis.info("commandstats").items()}


@pytest.fixture
def unreachable_redis(monkeypatch):
    """Point the library at a port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"redis://127.0.0.1:{port}/0"
    # The REDIS_URL environment variable wins over BGJOBS["REDIS_URL"] (and the test run sets it).
    monkeypatch.setenv("REDIS_URL", url)
    with bgjobs(REDIS_URL=url):  # setting_changed clears the settings cache and the shared client
        yield port
    monkeypatch.undo()
    conf.get_settings.cache_clear()
    connection.reset()


@pytest.fixture
def received():
    """Every job_enqueued signal sent during the test, as (sender, kwargs)."""
    seen = []

    def receiver(sender, **kwargs):
        seen.append((sender, kwargs))

    signals.job_enqueued.connect(receiver)
    yield seen
    signals.job_enqueued.disconnect(receiver)


# -- the payload -------------------------------------------------------------------------------


def test_perform_later_writes_sidekiqs_payload_to_queue_when_called(redis):
    # When
    before = now_s()
    handle = RecordJob.perform_later(1, "two", [3])
    after = now_s()

    # Then
    raw = redis.lindex("queue:default", 0)
    payload = json.loads(raw)
    assert set(payload) == {"class", "args", "jid", "queue", "retry", "created_at", "enqueued_at"}
    assert payload["class"] == "tests.testapp.jobs.RecordJob"
    assert payload["args"] == [1, "two", [3]]
    assert JID_RE.match(payload["jid"]) and payload["jid"] == handle.jid
    assert payload["queue"] == "default"
    assert payload["retry"] is True
    assert before <= payload["created_at"] <= payload["enqueued_at"] <= after
    assert raw.endswith(f'"enqueued_at":{payload["enqueued_at"]}}}')  # last, for the Lua poller
    assert redis.smembers("queues") == {"default"}
    assert redis.llen("queue:default") == 1
    assert sorted(redis.keys("*")) == ["queue:default", "queues"]


def test_perform_later_returns_a_handle_when_job_is_enqueued(redis):
    handle = RecordJob.set(queue="low").perform_later("x")

    assert (handle.job_class, handle.queue, handle.args, handle.scheduled_at) == (RecordJob, "low", ["x"], None)


def test_perform_later_keeps_order_when_called_several_times(redis):
    handles = [RecordJob.perform_later(n) for n in range(3)]

    assert [p["jid"] for p in queued(redis)] == [h.jid for h in handles]


def test_jids_differ_when_many_jobs_are_enqueued(redis):
    handles = RecordJob.perform_bulk([(n,) for n in range(200)])

    assert len({handle.jid for handle in handles}) == 200


def test_set_queue_writes_to_that_queue_when_given(redis):
    RecordJob.set(queue="mail.low").perform_later()

    assert redis.llen("queue:mail.low") == 1
    assert redis.smembers("queues") == {"mail.low"}
    assert queued(redis, "mail.low")[0]["queue"] == "mail.low"


@pytest.mark.parametrize(("option", "stored"), [(3, 3), (0, 0), (False, False), (True, True)])
def test_set_retry_is_stored_in_payload_when_given(redis, option, stored):
    RecordJob.set(retry=option).perform_later()

    value = queued(redis)[0]["retry"]
    assert value == stored and type(value) is type(stored)  # 0 and False mean different things


def test_class_retry_option_is_stored_in_payload_when_set_on_the_class(redis):
    NoRetryJob.perform_later()

    assert queued(redis)[0]["retry"] is False


def test_keys_carry_prefix_when_key_prefix_is_set(redis):
    with bgjobs(KEY_PREFIX="shop"):
        RecordJob.perform_later()
        RecordJob.set(wait=60).perform_later()

    assert sorted(redis.keys("*")) == ["shop:queue:default", "shop:queues", "shop:schedule"]


# -- scheduled jobs ----------------------------------------------------------------------------


@pytest.mark.parametrize("wait", [90, 90.0, datetime.timedelta(seconds=90)])
def test_set_wait_adds_job_to_schedule_with_due_time_as_score_when_wait_given(redis, wait):
    # When
    before = now_s()
    handle = RecordJob.set(wait=wait).perform_later("later")
    after = now_s()

    # Then
    [(raw, score)] = redis.zrange("schedule", 0, -1, withscores=True)
    payload = json.loads(raw)
    assert before + 90 <= score <= after + 90
    assert score == handle.scheduled_at
    assert payload["args"] == ["later"]
    assert "enqueued_at" not in payload and "at" not in payload  # as Sidekiq stores it: the score says when
    assert redis.exists("queue:default", "queues") == 0


def test_set_wait_until_uses_its_timestamp_as_score_when_aware_datetime_given(redis):
    # Given
    when = datetime.datetime(2099, 5, 17, 12, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=2)))

    # When
    RecordJob.set(wait_until=when).perform_later()

    # Then
    [(raw, score)] = redis.zrange("schedule", 0, -1, withscores=True)
    assert score == when.timestamp() and "at" not in json.loads(raw)


def test_set_wait_until_in_the_past_pushes_at_once_when_due_already(redis):
    RecordJob.set(wait_until=datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)).perform_later()

    assert redis.llen("queue:default") == 1
    assert redis.zcard("schedule") == 0


def test_set_wait_zero_pushes_at_once(redis):
    RecordJob.set(wait=0).perform_later()

    assert redis.llen("queue:default") == 1


@override_settings(USE_TZ=False, TIME_ZONE="Europe/Paris")
def test_set_wait_until_reads_naive_datetime_in_default_zone_when_use_tz_is_off(redis):
    RecordJob.set(wait_until=datetime.datetime(2099, 1, 1, 12, 0)).perform_later()

    [(_, score)] = redis.zrange("schedule", 0, -1, withscores=True)
    assert score == datetime.datetime(2099, 1, 1, 11, 0, tzinfo=datetime.UTC).timestamp()


# -- mistakes write nothing --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("enqueue", "error", "message"),
    [
        (lambda: RecordJob.set(wait=-5).perform_later(), ValueError, "wait must be"),
        (lambda: RecordJob.set(wait="5").perform_later(), TypeError, "not str"),
        (lambda: RecordJob.set(wait_until=datetime.datetime(2099, 1, 1)).perform_later(), ValueError, "naive"),
        (lambda: RecordJob.set(queue="two words").perform_later(), ValueError, "queue name 'two words'"),
        (lambda: RecordJob.set(queue="q" * 300).perform_later(), ValueError, "1 to 128"),
        (lambda: RecordJob.perform_later(object()), SerializationError, "argument 0 is of type builtins.object"),
        (lambda: RecordJob.perform_later(1, {2, 3}), SerializationError, "argument 1 is of type builtins.set"),
        (lambda: RecordJob.perform_later(math.nan), SerializationError, "argument 0 is nan"),
        (lambda: RecordJob.perform_later("a", "b", {1: "x"}), SerializationError, "argument 2 is a dict with a int"),
        (lambda: RecordJob.perform_later([1, [math.inf]]), SerializationError, "argument 0 is inf"),
        (lambda: NoopJob.perform_later(when=object()), SerializationError, "keyword argument 'when'"),
        (lambda: RecordJob.perform_bulk([(1,), (2,), (object(),)]), SerializationError, "argument 0"),
        (lambda: RecordJob.perform_bulk([(1,), 2]), TypeError, "perform_bulk item 1 is a int"),
    ],
    ids=[
        "negative-wait", "string-wait", "naive-wait-until", "queue-with-space", "queue-300-chars", "object",
        "set", "nan", "int-key", "nested-inf", "bad-kwarg", "bad-bulk-item-arg", "bulk-item-not-tuple",
    ],
)
def test_nothing_is_written_when_enqueue_fails_on_a_mistake(redis, enqueue, error, message):
    with pytest.raises(error, match=message):
        enqueue()

    assert redis.dbsize() == 0


def test_serialization_error_is_a_type_error_and_library_error():
    with pytest.raises(TypeError) as failure:
        RecordJob.perform_later(object())

    assert isinstance(failure.value, BgJobsError)


def test_unknown_backend_raises_configuration_error_when_enqueueing(redis):
    with bgjobs(BACKEND="rabbit"), pytest.raises(ConfigurationError, match="'redis' or 'inline'"):
        RecordJob.perform_later()

    assert redis.dbsize() == 0


# -- bulk ------------------------------------------------------------------------------------------


def test_perform_bulk_writes_a_thousand_jobs_in_one_atomic_step_when_given_a_thousand(redis):
    # Given: the push script already loaded (a first call may need EVAL after a NOSCRIPT)
    RecordJob.perform_later("warm-up")
    redis.delete("queue:default")
    redis.config_resetstat()

    # When
    handles = RecordJob.perform_bulk([(n, f"item-{n}") for n in range(1000)])

    # Then: one script call (lua/push.lua) holding one SADD and one LPUSH of all of them
    calls = command_calls(redis)
    assert calls.get("evalsha") == 1 and "multi" not in calls
    assert calls.get("sadd") == 1 and calls.get("lpush") == 1
    assert len(handles) == 1000
    payloads = queued(redis)
    assert [p["jid"] for p in payloads] == [h.jid for h in handles]
    assert payloads[999]["args"] == [999, "item-999"]


def test_perform_bulk_of_more_jobs_than_one_lua_call_can_unpack_writes_them_all_in_order(redis):
    handles = RecordJob.perform_bulk([(n,) for n in range(10_000)])  # Lua unpack() stops near 8,000

    assert [p["jid"] for p in queued(redis)] == [h.jid for h in handles]


def test_perform_bulk_writes_nothing_when_list_is_empty(redis):
    assert RecordJob.perform_bulk([]) == []
    assert redis.dbsize() == 0


def test_perform_bulk_schedules_all_jobs_when_configured_with_wait(redis):
    RecordJob.set(wait=60).perform_bulk([(1,), (2,)])

    assert redis.zcard("schedule") == 2
    assert redis.exists("queue:default") == 0


# -- transactions ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_enqueue_waits_for_commit_when_inside_atomic_block(redis):
    # When
    with transaction.atomic():
        Author.objects.create(name="Ada")
        handle = RecordJob.perform_later("after commit")

        # Then: nothing in Redis yet, but the jid is known at once
        assert redis.dbsize() == 0
        assert JID_RE.match(handle.jid)

    # Then
    assert [p["jid"] for p in queued(redis)] == [handle.jid]


@pytest.mark.django_db(transaction=True)
def test_enqueue_writes_nothing_when_transaction_rolls_back(redis):
    with pytest.raises(RuntimeError), transaction.atomic():
        RecordJob.perform_later("never")
        raise RuntimeError("roll back")

    assert redis.dbsize() == 0


@pytest.mark.django_db(transaction=True)
def test_enqueue_in_rolled_back_savepoint_is_dropped_when_outer_block_commits(redis):
    # When
    with transaction.atomic():
        kept = RecordJob.perform_later("outer")
        with pytest.raises(RuntimeError), transaction.atomic():
            RecordJob.perform_later("inner")
            raise RuntimeError("roll back the savepoint")

    # Then
    assert [p["jid"] for p in queued(redis)] == [kept.jid]


@pytest.mark.django_db(transaction=True)
def test_enqueue_writes_at_once_when_defer_on_commit_is_off(redis):
    with bgjobs(DEFER_ON_COMMIT=False), transaction.atomic():
        RecordJob.perform_later()

        assert redis.llen("queue:default") == 1


@pytest.mark.django_db(transaction=True)
def test_bad_argument_raises_at_perform_later_when_inside_atomic_block(redis):
    with transaction.atomic():
        with pytest.raises(SerializationError):
            RecordJob.perform_later(object())

    assert redis.dbsize() == 0


# -- Redis down --------------------------------------------------------------------------------


def test_enqueue_raises_enqueue_error_naming_the_server_when_redis_is_unreachable(redis, unreachable_redis):
    with pytest.raises(EnqueueError) as failure:
        RecordJob.perform_later(1)

    assert f"127.0.0.1:{unreachable_redis}/0" in str(failure.value)
    assert "tests.testapp.jobs.RecordJob" in str(failure.value)
    assert isinstance(failure.value, BgJobsError)


@pytest.mark.django_db(transaction=True)
def test_enqueue_error_surfaces_at_commit_when_redis_is_unreachable_and_push_was_deferred(unreachable_redis):
    # When / Then: the row is committed, and the failed push is not silent
    with pytest.raises(EnqueueError), transaction.atomic():
        Author.objects.create(name="Ada")
        RecordJob.perform_later(1)

    assert Author.objects.filter(name="Ada").exists()


def test_job_enqueued_signal_is_not_sent_when_redis_is_unreachable(unreachable_redis, received):
    with pytest.raises(EnqueueError):
        RecordJob.perform_later()

    assert received == []


def test_enqueue_error_and_the_next_push_works_when_redis_refuses_a_command(redis, received):
    # Given: the queue's key holds a string, so LPUSH fails inside the MULTI
    redis.set("queue:default", "not a list")

    # When
    with pytest.raises(EnqueueError, match="WRONGTYPE"):
        RecordJob.perform_later(1)
    redis.delete("queue:default")
    jid = RecordJob.perform_later(2).jid

    # Then: the connection went back to the pool in step, and only the second job is queued
    assert [json.loads(raw)["jid"] for raw in redis.lrange("queue:default", 0, -1)] == [jid]
    assert [kwargs["payload"]["jid"] for _, kwargs in received] == [jid]


# -- signals -----------------------------------------------------------------------------------


def test_job_enqueued_signal_is_sent_per_job_after_push_when_enqueued(redis, received):
    # When
    now = RecordJob.perform_later(1)
    later = RecordJob.set(wait=30).perform_later(2)

    # Then
    assert [sender for sender, _ in received] == [RecordJob, RecordJob]
    assert [kwargs["payload"]["jid"] for _, kwargs in received] == [now.jid, later.jid]
    assert received[0][1]["scheduled_at"] is None
    assert received[1][1]["scheduled_at"] == later.scheduled_at


# -- Redis silent, back soon, or given too much ------------------------------------------------


@pytest.fixture
def silent_redis(monkeypatch):
    """Point the library at a server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    monkeypatch.setenv("REDIS_URL", url)
    with bgjobs(REDIS_URL=url, SOCKET_TIMEOUT_S=0.3):
        yield
    listener.close()
    monkeypatch.undo()
    conf.get_settings.cache_clear()
    connection.reset()


@pytest.fixture
def stopped_redis(monkeypatch):
    """A throwaway server of this test's own, stopped; the library points at it."""
    server = start_redis_server()
    server.stop()
    monkeypatch.setenv("REDIS_URL", server.url)
    conf.get_settings.cache_clear()
    connection.reset()
    yield server
    server.cleanup()
    monkeypatch.undo()
    conf.get_settings.cache_clear()
    connection.reset()


def test_enqueue_raises_enqueue_error_within_the_socket_timeout_when_redis_never_answers(silent_redis):
    # When
    started = time.monotonic()
    with pytest.raises(EnqueueError, match="did not answer in time") as failure:
        RecordJob.perform_later(1)

    # Then: no hang, and no second attempt behind the caller's back
    assert time.monotonic() - started < 0.3 + 2
    assert "tests.testapp.jobs.RecordJob" in str(failure.value)


def test_enqueue_tries_again_and_succeeds_when_redis_comes_back_within_enqueue_retries(stopped_redis):
    # Given: the server comes back 0.3 s from now; retries wait 0.1 + 0.2 + 0.4 + ... s
    threading.Timer(0.3, stopped_redis.start).start()

    # When
    with bgjobs(ENQUEUE_RETRIES=6):
        handle = RecordJob.perform_later("late")

    # Then: written once
    client = redis_lib.Redis.from_url(stopped_redis.url, decode_responses=True)
    assert [json.loads(raw)["jid"] for raw in client.lrange("queue:default", 0, -1)] == [handle.jid]


def test_enqueue_raises_at_once_without_waiting_when_enqueue_retries_is_0(stopped_redis):
    started = time.monotonic()
    with pytest.raises(EnqueueError, match="Connection refused|connecting"):
        RecordJob.perform_later(1)

    assert time.monotonic() - started < 1


def test_enqueue_raises_payload_too_large_and_writes_nothing_when_a_payload_passes_max_payload_bytes(redis):
    with bgjobs(MAX_PAYLOAD_BYTES=1000):
        with pytest.raises(PayloadTooLargeError, match=r"over BGJOBS\['MAX_PAYLOAD_BYTES'\] \(1,000\)") as failure:
            RecordJob.perform_bulk([("small",), ("x" * 1000,)])
        RecordJob.perform_later("x" * 800)

    assert isinstance(failure.value, ValueError) and isinstance(failure.value, BgJobsError)
    assert len(queued(redis)) == 1


def test_nothing_is_written_when_one_payload_of_a_push_with_locks_and_a_batch_is_too_large(redis, raw_redis):
    # Given: an open batch (its counts) and unique jobs (their locks): the push's planned form
    from django_bgjobs import Batch
    from tests.helpers import snapshot
    from tests.testapp.unique_batch_jobs import UntilExecutedJob

    batch = Batch()
    with batch.jobs():
        before = snapshot(raw_redis)

        # When
        with bgjobs(MAX_PAYLOAD_BYTES=1000), pytest.raises(PayloadTooLargeError):
            UntilExecutedJob.perform_bulk([("small",), ("x" * 1000,)])
        after = snapshot(raw_redis)

    # Then: no job, no lock, no count
    assert after == before
    assert redis.keys("unique:*") == []


def test_any_payload_size_is_accepted_when_max_payload_bytes_is_none(redis):
    with bgjobs(MAX_PAYLOAD_BYTES=None):
        RecordJob.perform_later("x" * 2_000_000)

    assert len(queued(redis)) == 1
