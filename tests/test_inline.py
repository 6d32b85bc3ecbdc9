"""The inline backend (``BGJOBS["BACKEND"] = "inline"``), and the contract it shares with Redis and capture mode.

The contract tests at the top run against all three ways a job can be enqueued and
run: pushed to Redis and run as the worker runs it, the inline backend, and
``capture_jobs().perform_all()``.  Whatever a user relies on must hold in all three.
"""

import datetime
import decimal
from contextlib import contextmanager

import pytest
from django.conf import settings
from django.test import override_settings

from django_bgjobs import Job, execution, signals
from django_bgjobs.connection import get_redis
from django_bgjobs.errors import SerializationError
from django_bgjobs.payload import loads
from django_bgjobs.testing import capture_jobs
from tests.testapp.jobs import ChainJob, FailingJob, JobFailure, RecordJob, RecordKwargsJob, performed

SEEN = []


class PayloadJob(Job):
    """Keeps what it was given and the payload it ran from, for the tests to inspect."""

    def perform(self, *args, **kwargs):
        SEEN.append({"jid": self.jid, "args": args, "kwargs": kwargs, "payload": dict(self.payload)})


@pytest.fixture(autouse=True)
def _forget_seen():
    SEEN.clear()


def inline():
    return override_settings(BGJOBS={**settings.BGJOBS, "BACKEND": "inline"})


class RedisMode:
    """Push to Redis; run each payload as the worker does (queue tail first, through ``execution``)."""

    @contextmanager
    def active(self):
        yield

    def run_all(self):
        client = get_redis()
        while (raw := client.rpop("queue:default")) is not None:
            execution.perform_inline(loads(raw))


class InlineMode:
    """The inline backend: jobs ran inside ``perform_later`` already."""

    def active(self):
        return inline()

    def run_all(self):
        pass


class CaptureMode:
    """The test helper: captured, then ``perform_all``."""

    @contextmanager
    def active(self):
        with capture_jobs() as self.jobs:
            yield

    def run_all(self):
        self.jobs.perform_all()


@pytest.fixture(params=[RedisMode, InlineMode, CaptureMode], ids=["redis", "inline", "capture"])
def mode(request, redis):
    return request.param()


# -- the contract --------------------------------------------------------------------------------


def test_job_gets_the_jid_and_json_round_tripped_args_when_run_in_every_mode(mode):
    # When
    when = datetime.datetime(2024, 5, 17, 9, 30, tzinfo=datetime.UTC)
    with mode.active():
        handle = PayloadJob.perform_later((1, 2), decimal.Decimal("0.10"), when=when)
    mode.run_all()

    # Then: a tuple arrives as a list, as it would from Redis
    [seen] = SEEN
    assert seen["jid"] == handle.jid
    assert seen["args"] == ([1, 2], decimal.Decimal("0.10"))
    assert seen["kwargs"] == {"when": when}
    assert set(seen["payload"]) == {"class", "args", "jid", "queue", "retry", "created_at", "enqueued_at"}


def test_non_json_argument_raises_at_perform_later_and_nothing_runs_in_every_mode(mode, redis):
    with mode.active():
        with pytest.raises(SerializationError, match="argument 0 is of type builtins.object"):
            RecordJob.perform_later(object())
    mode.run_all()

    assert performed(redis) == []
    assert redis.keys("queue:*") == []


def test_jobs_enqueued_by_a_job_run_too_in_every_mode(mode, redis):
    with mode.active():
        ChainJob.perform_later(2)
        mode.run_all()
    mode.run_all()

    assert [entry["args"] for entry in performed(redis)] == [[2], [1], [0]]


# -- the inline backend --------------------------------------------------------------------------


def test_inline_runs_job_before_perform_later_returns_when_backend_is_inline(redis):
    with inline():
        handle = RecordJob.perform_later("now")

        assert performed(redis) == [{"jid": handle.jid, "args": ["now"]}]

    assert redis.keys("*") == ["test:performed"]


def test_inline_runs_scheduled_job_at_once_when_wait_is_set(redis):
    with inline():
        RecordJob.set(wait=datetime.timedelta(days=1)).perform_later("tomorrow")

    assert [entry["args"] for entry in performed(redis)] == [["tomorrow"]]
    assert redis.zcard("schedule") == 0


def test_inline_propagates_the_error_from_perform_later_when_perform_raises(redis):
    with inline(), pytest.raises(JobFailure, match="inline failure"):
        FailingJob.perform_later("inline failure")

    assert redis.zcard("retry") == 0


def test_inline_sends_started_and_succeeded_signals_when_job_runs():
    # Given
    seen = []

    def on_started(sender, **kwargs):
        seen.append(("started", sender))

    def on_succeeded(sender, **kwargs):
        seen.append(("succeeded", sender))

    signals.job_started.connect(on_started)
    signals.job_succeeded.connect(on_succeeded)
    try:
        # When
        with inline():
            RecordKwargsJob.perform_later(a=1)
    finally:
        signals.job_started.disconnect(on_started)
        signals.job_succeeded.disconnect(on_succeeded)

    # Then
    assert seen == [("started", RecordKwargsJob), ("succeeded", RecordKwargsJob)]


def test_inline_runs_each_job_of_a_bulk_in_order_when_perform_bulk_is_used(redis):
    with inline():
        handles = RecordJob.perform_bulk([(1,), (2,), (3,)])

    assert performed(redis) == [{"jid": h.jid, "args": [n]} for h, n in zip(handles, (1, 2, 3), strict=True)]


def test_inline_is_off_again_when_settings_are_restored(redis):
    with inline():
        RecordJob.perform_later(1)

    RecordJob.perform_later(2)

    assert redis.llen("queue:default") == 1
    assert [entry["args"] for entry in performed(redis)] == [[1]]
