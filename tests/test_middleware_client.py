"""Client middleware: the chain runs once per payload on every path a new job takes into Redis
(one test per path), and never when the API moves a job that is already there; what a
middleware changes is what Redis holds, and a payload it stops leaves nothing behind.

The middleware classes are in ``tests/testapp/client_middleware.py``; each test names them in
``BGJOBS["CLIENT_MIDDLEWARE"]``.
"""

import json
import time

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import transaction
from django.test import override_settings

from django_bgjobs import Batch, BatchStatus, keys
from django_bgjobs.api import DeadSet, Queue, RetrySet, ScheduledSet
from django_bgjobs.batches.client import CALLBACK_JOB_NAME
from django_bgjobs.errors import ConfigurationError
from django_bgjobs.testing import capture_jobs
from django_bgjobs.cron.server import Scheduler
from tests.helpers import snapshot
from tests.testapp import client_middleware as middleware
from tests.testapp.jobs import RecordJob, performed
from tests.testapp.unique_batch_jobs import RecordingCallback, UntilExecutedJob

T0 = 1_800_000_000.0  # a fixed clock for the recurring-job tests, on a whole minute


def client_middleware(*names, **more):
    """``override_settings`` with these classes of ``tests/testapp/client_middleware.py`` as CLIENT_MIDDLEWARE."""
    paths = [name if "." in name else f"tests.testapp.client_middleware.{name}" for name in names]
    base = {k: v for k, v in settings.BGJOBS.items() if k != "SCHEDULE_FILE"}
    return override_settings(BGJOBS={**base, "CLIENT_MIDDLEWARE": paths, **more})


def queued(redis, queue="default"):
    """The payloads waiting in ``queue``, oldest first."""
    return [json.loads(raw) for raw in reversed(redis.lrange(keys.queue(queue), 0, -1))]


@pytest.fixture(autouse=True)
def _nothing_seen_yet():
    middleware.SEEN.clear()
    yield
    middleware.SEEN.clear()


# -- every path runs the chain ------------------------------------------------------------------


def test_perform_later_runs_the_chain_once(redis):
    with client_middleware("Recording"):
        handle = RecordJob.perform_later(1)

    [payload] = middleware.seen("recording")
    assert (payload["class"], payload["jid"], payload["args"]) == (RecordJob.name, handle.jid, [1])
    assert [p["jid"] for p in queued(redis)] == [handle.jid]


def test_set_perform_later_runs_the_chain_with_its_options(redis):
    with client_middleware("Recording"):
        handle = RecordJob.set(queue="low", wait=60).perform_later(2)

    [payload] = middleware.seen("recording")
    assert (payload["jid"], payload["queue"], payload["at"]) == (handle.jid, "low", handle.scheduled_at)
    assert redis.zcard(keys.schedule()) == 1


def test_perform_bulk_runs_the_chain_once_per_payload(redis):
    with client_middleware("Recording"):
        handles = RecordJob.perform_bulk([(1,), (2,), (3,)])

    assert [p["jid"] for p in middleware.seen("recording")] == [h.jid for h in handles]
    assert [p["args"] for p in middleware.seen("recording")] == [[1], [2], [3]]


def test_aperform_later_runs_the_chain(redis):
    async def view():
        return await RecordJob.aperform_later(4)

    with client_middleware("Recording"):
        handle = async_to_sync(view)()

    assert [p["jid"] for p in middleware.seen("recording")] == [handle.jid]
    assert [p["jid"] for p in queued(redis)] == [handle.jid]


def test_a_recurring_tick_runs_the_chain(redis):
    # Given a schedule every minute, loaded at T0
    schedule = {"every_minute": {"cron": "* * * * *", "class": RecordJob.name, "args": [7]}}
    with client_middleware("Recording", SCHEDULE=schedule):
        scheduler = Scheduler()
        scheduler.sync(now=T0)

        # When its tick comes
        assert scheduler.enqueue_due(now=T0 + 60) == 1

    # Then
    [payload] = middleware.seen("recording")
    assert (payload["cron"], payload["cron_at"], payload["args"]) == ("every_minute", T0 + 60, [7])
    assert [p["jid"] for p in queued(redis)] == [payload["jid"]]


def test_a_batch_callback_runs_the_chain(redis):
    # Given a batch with a success callback
    batch = Batch().on("success", RecordingCallback)

    # When it ends (empty: at the end of its block)
    with client_middleware("Recording"):
        with batch.jobs():
            pass

    # Then
    [payload] = middleware.seen("recording")
    assert payload["class"] == CALLBACK_JOB_NAME and payload["args"][:2] == [batch.bid, "success"]
    assert [p["jid"] for p in queued(redis)] == [payload["jid"]]
    assert redis.zcard(keys.batch_callbacks()) == 0


def test_a_django_tasks_enqueue_runs_the_chain(redis):
    from tests.testapp import tasks

    with client_middleware("Recording"):
        result = tasks.add.enqueue(1, 2)

    [payload] = middleware.seen("recording")
    assert (payload["class"], payload["jid"]) == ("django_bgjobs.tasks.TaskJob", result.id)
    assert [p["jid"] for p in queued(redis)] == [result.id]


def test_api_queue_push_runs_the_chain(redis):
    item = {"class": RecordJob.name, "args": [5], "jid": "c" * 24, "retry": True, "queue": "default",
            "created_at": 1.0, "at": 2.0}

    with client_middleware("Recording"):
        record = Queue("low").push(item)

    [payload] = middleware.seen("recording")
    assert (payload["jid"], payload["queue"]) == ("c" * 24, "low") and "at" not in payload
    assert record.jid == "c" * 24
    assert [p["jid"] for p in queued(redis, "low")] == ["c" * 24]


def test_the_chain_does_not_run_when_the_api_moves_a_job_already_in_redis(redis):
    # Given: a scheduled job, one waiting for its retry and a dead one
    scheduled = RecordJob.set(wait=3600).perform_later("scheduled")
    retrying = {"class": RecordJob.name, "args": ["retrying"], "jid": "a" * 24, "queue": "default", "retry": True,
                "created_at": 1.0, "retry_count": 0, "error_class": "X", "failed_at": 1.0}
    dead = dict(retrying, args=["dead"], jid="d" * 24)
    redis.zadd(keys.retry(), {json.dumps(retrying): time.time() + 3600})
    redis.zadd(keys.dead(), {json.dumps(dead): time.time()})

    # When the API moves each of them to its queue
    with client_middleware("Recording"):
        assert ScheduledSet().find_job(scheduled.jid).add_to_queue()
        assert RetrySet().find_job("a" * 24).retry()
        assert DeadSet().find_job("d" * 24).retry()

    # Then
    assert middleware.SEEN == []
    assert sorted(p["jid"] for p in queued(redis)) == sorted([scheduled.jid, "a" * 24, "d" * 24])


# -- what a middleware does is what is written ------------------------------------------------


def test_what_a_middleware_changes_is_what_redis_holds(redis):
    with client_middleware("Tenant"):
        RecordJob.perform_later(1)
        RecordJob.set(wait=60).perform_later(2)

    assert [p["tenant"] for p in queued(redis)] == ["acme"]
    assert [json.loads(raw)["tenant"] for raw in redis.zrange(keys.schedule(), 0, -1)] == ["acme"]


def test_captured_payloads_show_what_the_middleware_did(redis):
    with client_middleware("Tenant"), capture_jobs() as jobs:
        RecordJob.perform_later(1)

    assert jobs[0].payload["tenant"] == "acme"
    assert redis.dbsize() == 0


def test_the_inline_backend_runs_the_chain_before_the_job(redis):
    with client_middleware("Recording", BACKEND="inline"):
        handle = RecordJob.perform_later(3)

    assert [p["jid"] for p in middleware.seen("recording")] == [handle.jid]
    assert [r["args"] for r in performed()] == [[3]]


def test_a_middleware_returning_none_writes_nothing_and_perform_later_returns_none(redis, raw_redis):
    # Given: a batch open, so its counts could change, and nothing else in Redis yet
    batch = Batch()
    with batch.jobs():
        before = snapshot(raw_redis)

        # When every kind of enqueue is stopped: to the queue, scheduled, unique, in bulk
        with client_middleware("Stop"):
            handles = [
                RecordJob.perform_later(1),
                RecordJob.set(wait=60).perform_later(2),
                UntilExecutedJob.perform_later("locked"),
                *RecordJob.perform_bulk([(3,), (4,)]),
            ]
        after = snapshot(raw_redis)

    # Then: queues, the schedule, locks and the batch's counts are as they were
    assert handles == [None] * 5
    assert after == before
    assert len(middleware.seen("stop")) == 5
    assert BatchStatus(batch.bid).total == 0


def test_a_recurring_tick_stopped_by_a_middleware_is_used_up_and_not_offered_again(redis):
    schedule = {"every_minute": {"cron": "* * * * *", "class": RecordJob.name}}
    with client_middleware("Stop", SCHEDULE=schedule):
        scheduler = Scheduler()
        scheduler.sync(now=T0)

        counts = [scheduler.enqueue_due(now=T0 + 60), scheduler.enqueue_due(now=T0 + 61)]

    assert counts == [0, 0]
    assert len(middleware.seen("stop")) == 1  # the second pass found the tick taken
    assert queued(redis) == []
    assert float(redis.hget(keys.cron_state("every_minute"), "last_tick")) == T0 + 60


def test_a_batch_callback_stopped_by_a_middleware_leaves_the_outbox_and_its_parent_does_not_wait(redis):
    # Given a parent batch whose child batch has a success callback, which will join the parent
    parent = Batch().on("success", RecordingCallback)
    with parent.jobs():
        child = Batch().on("success", RecordingCallback)

        # When the child ends and a middleware stops its callback
        with client_middleware("Stop"), child.jobs():
            pass

    # Then the callback is gone, and the parent, which counted it, succeeds without it
    assert [p["args"][:2] for p in middleware.seen("stop")] == [[child.bid, "success"]]
    assert redis.zcard(keys.batch_callbacks()) == 0
    parent_status = BatchStatus(parent.bid)
    assert parent_status.success and parent_status.total == 1 and parent_status.pending == 0
    assert [p["args"][:2] for p in queued(redis)] == [[parent.bid, "success"]]


def test_middleware_run_in_the_order_listed_the_first_outermost(redis):
    with client_middleware("First", "Second"):
        RecordJob.perform_later(1)

    assert [who for who, _ in middleware.SEEN] == ["first", "second"]
    assert middleware.seen("second")[0]["order"] == "first"
    assert queued(redis)[0]["order"] == "first then second"


def test_a_middleware_placed_after_a_built_in_sees_what_the_built_in_added(redis):
    # Given: the user's middleware goes around the built-ins, unless the list names one
    with client_middleware("Recording"):
        with Batch().jobs():
            RecordJob.perform_later("outside")
    with client_middleware("django_bgjobs.batches.BatchMembership", "Recording"):
        with Batch().jobs() as batch:
            RecordJob.perform_later("inside")

    outside, inside = middleware.seen("recording")
    assert "bid" not in outside
    assert inside["bid"] == batch.bid


@pytest.mark.django_db(transaction=True)
def test_the_chain_runs_at_the_commit_and_not_at_all_when_the_transaction_rolls_back(redis):
    with client_middleware("Recording"):
        # When
        with transaction.atomic():
            handle = RecordJob.perform_later(1)
            assert middleware.SEEN == []
        # Then
        assert [p["jid"] for p in middleware.seen("recording")] == [handle.jid]

        # When
        with pytest.raises(RuntimeError), transaction.atomic():
            RecordJob.perform_later(2)
            raise RuntimeError("roll back")

    # Then
    assert len(middleware.SEEN) == 1
    assert [p["jid"] for p in queued(redis)] == [handle.jid]


def test_a_write_a_push_may_not_do_is_refused_and_nothing_is_written(redis):
    with client_middleware("ForbiddenWrite"), pytest.raises(ConfigurationError, match="may not run 'DEL'"):
        RecordJob.perform_later(1)

    assert redis.dbsize() == 0


def test_the_built_in_middleware_let_a_payload_through_when_the_chain_is_called_outside_a_push(redis):
    # Given: the client chain of the built-ins alone, called by hand (no push in progress)
    from django_bgjobs import middleware as chains

    chain = chains.build(chains.CLIENT, lambda payload: payload)
    payload = UntilExecutedJob.set().build_payloads([(("x",), {})])[0]

    # When
    with Batch().jobs():
        result = chain(dict(payload))

    # Then: the batch's bid is stamped, nothing is attached or written
    assert {k: v for k, v in result.items() if k != "bid"} == payload and "bid" in result
    assert redis.keys("unique:*") == [] and redis.llen(keys.queue("default")) == 0
