"""The server middleware chain (``BGJOBS["SERVER_MIDDLEWARE"]`` around ``conf.SERVER_BUILTINS``):
it wraps every attempt a worker runs, threaded and async; an exception raised in it is the
job's failure, under the retry rules; its order is the settings' list, outermost first, and a
built-in named there runs at that place.  The inline backend runs it; ``perform_now`` does not.

The worker is driven in-process: a Manager's first processor in the test's thread
(``run_queued``), the event loop's threads for async jobs.
"""

import asyncio
import json
import time

import pytest

from django_bgjobs import Job, conf, middleware, signals
from django_bgjobs.job_end import Outcome
from tests.helpers import dead_entries, run_queued, worker_manager
from tests.testapp.jobs import FailingJob, JobFailure, RecordJob, ReturnJob, performed, record
from tests.testapp.server_middleware import SEEN
from tests.testapp.unique_batch_jobs import WhileExecutingJob

pytestmark = pytest.mark.django_db(transaction=True)

IDENTITY = "test-host:1:server-middleware"
MW = "tests.testapp.server_middleware."


class AsyncValueJob(Job):
    async def perform(self, value):
        await asyncio.sleep(0)
        await asyncio.to_thread(record, self.jid, [value])
        return [value, value]


class AsyncBrokenJob(Job):
    async def perform(self, message):
        await asyncio.sleep(0)
        raise JobFailure(message)


class CallbackJob(Job):
    def before_perform(self):
        SEEN.append(("callback", "before_perform"))

    def perform(self, value):
        return value


@pytest.fixture(autouse=True)
def _forget_what_was_seen():
    SEEN.clear()


def use(settings, *paths, **more):
    settings.BGJOBS = {**settings.BGJOBS, "SERVER_MIDDLEWARE": list(paths), **more}


def retry_entries(redis):
    return [json.loads(raw) for raw in redis.zrange("retry", 0, -1)]


# -- wrapping an attempt ------------------------------------------------------------------------


def test_a_middleware_sees_a_threaded_jobs_instance_and_payload_before_and_its_result_after(redis, settings):
    # Given
    use(settings, MW + "Recording")
    handle = ReturnJob.perform_later(21)

    # When
    with worker_manager(IDENTITY) as manager:
        run_queued(manager)
        counts = manager.counts()

    # Then
    assert SEEN == [("recording", "before", "ReturnJob", handle.jid, True), ("recording", "after", 21)]
    assert counts == (1, 0) and redis.keys("inflight:*") == []


def test_a_sync_middleware_gets_an_async_jobs_coroutine_and_an_async_one_awaits_its_result(redis, settings):
    # Given: a sync middleware outside an async one
    use(settings, MW + "Recording", MW + "AsyncRecording")
    handle = AsyncValueJob.perform_later(3)

    # When
    with worker_manager(IDENTITY) as manager:
        run_queued(manager)
        counts = manager.counts()

    # Then: the sync one ran in the processor thread, its "after" before the job ran; the
    # async one ran on the loop around perform and saw its result
    assert SEEN == [
        ("recording", "before", "AsyncValueJob", handle.jid, True),
        ("recording", "after", "a coroutine"),
        ("async", "before", "AsyncValueJob", handle.jid),
        ("async", "after", [3, 3]),
    ]
    assert [e["jid"] for e in performed()] == [handle.jid] and counts == (1, 0)
    assert redis.keys("inflight:*") == []


def test_an_async_middleware_leaves_plain_jobs_alone(redis, settings):
    use(settings, MW + "AsyncRecording", MW + "Recording")
    handle = ReturnJob.perform_later(1)

    with worker_manager(IDENTITY) as manager:
        run_queued(manager)

    assert SEEN == [("recording", "before", "ReturnJob", handle.jid, True), ("recording", "after", 1)]


@pytest.mark.parametrize("job_class, seen_by", [(FailingJob, "recording"), (AsyncBrokenJob, "async")])
def test_a_middleware_sees_the_exception_of_a_failing_job_which_goes_to_the_retry_set(
        redis, settings, job_class, seen_by):
    # Given
    use(settings, MW + "Recording", MW + "AsyncRecording")
    handle = job_class.perform_later("boom")

    # When
    with worker_manager(IDENTITY) as manager:
        run_queued(manager)
        counts = manager.counts()

    # Then: re-raised through the middleware to the worker, which applied the retry rules
    assert (seen_by, "raised", "JobFailure", "boom") in SEEN
    [entry] = retry_entries(redis)
    assert (entry["jid"], entry["retry_count"]) == (handle.jid, 0)
    assert entry["error_class"] == "tests.testapp.jobs.JobFailure"
    assert counts == (1, 1) and redis.keys("inflight:*") == []


@pytest.mark.parametrize("job_class", [RecordJob, AsyncValueJob])
def test_a_middlewares_own_error_fails_the_job_into_the_retry_set_and_sends_job_failed(redis, settings, job_class):
    # Given
    use(settings, MW + "Exploding")
    failed = []

    def on_failed(sender, exception, **kwargs):
        failed.append((sender, type(exception).__name__))

    signals.job_failed.connect(on_failed)
    try:
        handle = job_class.perform_later("explode")

        # When
        with worker_manager(IDENTITY) as manager:
            run_queued(manager)
            counts = manager.counts()
    finally:
        signals.job_failed.disconnect(on_failed)

    # Then: perform never ran; the job waits to retry with the middleware's error
    assert performed() == []
    [entry] = retry_entries(redis)
    assert entry["jid"] == handle.jid
    assert entry["error_class"] == "tests.testapp.server_middleware.MiddlewareFailure"
    assert entry["error_message"] == "the tenant service is down"
    assert failed == [(job_class, "MiddlewareFailure")]
    assert counts == (1, 1) and redis.keys("inflight:*") == []


def test_a_middlewares_error_follows_the_jobs_retry_rules(redis, settings):
    # Given: a job with no retries left
    use(settings, MW + "Exploding")
    handle = RecordJob.set(retry=0).perform_later("explode")

    # When
    with worker_manager(IDENTITY) as manager:
        run_queued(manager)

    # Then
    [dead] = dead_entries(redis)
    assert (dead["jid"], dead["dead_reason"]) == (handle.jid, "retries exhausted (0 of 0)")
    assert redis.zcard("retry") == 0


# -- order ------------------------------------------------------------------------------------


def test_middleware_run_in_the_order_listed_outermost_first(redis, settings):
    # Given
    use(settings, MW + "Outer", MW + "Inner")
    handle = ReturnJob.perform_later(7)

    # When
    with worker_manager(IDENTITY) as manager:
        run_queued(manager)

    # Then
    assert [(who, event) for who, event, *_ in SEEN] == [
        ("outer", "before"), ("inner", "before"), ("inner", "after"), ("outer", "after"),
    ]
    assert SEEN[0][3] == SEEN[1][3] == handle.jid


def test_the_users_middleware_go_around_the_built_ins_by_default(settings):
    use(settings, MW + "Outer", MW + "Inner")

    assert middleware.order(middleware.SERVER) == [MW + "Outer", MW + "Inner", *conf.SERVER_BUILTINS]


@pytest.mark.parametrize("placed_inside_the_lock_rules", [False, True])
def test_a_middleware_listed_after_a_built_in_runs_inside_it(redis, settings, placed_inside_the_lock_rules):
    # Given: the probe either around everything (the default) or named after two built-ins
    before = ["django_bgjobs.expiry.Expiry", "django_bgjobs.unique.server.LockRules"]
    use(settings, *(before if placed_inside_the_lock_rules else []), MW + "LockProbe")
    unique = WhileExecutingJob.perform_later("k")
    late = RecordJob.set(expires_in=0.05).perform_later("too late")
    time.sleep(0.1)

    # When
    with worker_manager(IDENTITY) as manager:
        run_queued(manager)

    # Then: inside, the probe sees the run lock its job holds, and never the job the expiry
    # dropped; around everything, it sees both jobs before any built-in ran
    probed = {jid: (holder, in_worker) for _, jid, holder, in_worker in SEEN}
    if placed_inside_the_lock_rules:
        assert middleware.order(middleware.SERVER)[:3] == [*before, MW + "LockProbe"]
        assert probed == {unique.jid: (unique.jid, True)}
    else:
        assert probed == {unique.jid: (None, True), late.jid: (None, True)}
    assert [e["jid"] for e in performed()] == [unique.jid]
    assert redis.keys("unique:*") == [] and redis.keys("inflight:*") == []


# -- end writes ------------------------------------------------------------------------------


def test_a_middlewares_end_writes_join_every_end_of_a_job_in_the_worker_and_the_api(redis, settings):
    # Given: a middleware keeping its own state about every job
    from django_bgjobs.api import Queue

    use(settings, MW + "EndLedger")
    done = RecordJob.perform_later("ok")
    failed = FailingJob.perform_later("boom")
    with worker_manager(IDENTITY) as manager:
        run_queued(manager)
    waiting = RecordJob.perform_later("never runs")

    # When: an operator deletes the waiting one
    assert Queue("default").find_job(waiting.jid).delete() is True

    # Then: each end was written, with its one outcome name
    assert redis.lrange("test:ends", 0, -1) == [
        f"succeeded:{done.jid}", f"retried:{failed.jid}", f"deleted:{waiting.jid}",
    ]


# -- outside a worker -------------------------------------------------------------------------


def test_the_inline_backend_runs_the_server_chain_and_perform_now_only_the_jobs_callbacks(redis, settings):
    # Given
    use(settings, MW + "Recording", BACKEND="inline")

    # When: enqueued inline, as a worker would run it
    handle = CallbackJob.perform_later(5)

    # Then
    assert SEEN == [
        ("recording", "before", "CallbackJob", handle.jid, True), ("callback", "before_perform"),
        ("recording", "after", 5),
    ]

    # When: run now, in this process
    SEEN.clear()
    assert CallbackJob.perform_now(6) == 6

    # Then: no server middleware, the job's own callbacks
    assert SEEN == [("callback", "before_perform")]


def test_a_job_ends_with_one_outcome_name_wherever_it_is_read(redis, settings):
    # The worker, the retry rules and the API share one enum: a retried job's outcome is
    # the same member whichever module names it.
    from django_bgjobs import job_end, retry

    assert retry.RetryIn.outcome is job_end.Outcome.RETRIED is Outcome.RETRIED
    assert Outcome("dead") is Outcome.DEAD and Outcome.DEAD == "dead"


class AsyncExpiringJob(Job):
    async def perform(self):
        await asyncio.sleep(0)


def test_an_async_middleware_runs_inside_the_sync_built_ins_so_a_job_they_drop_is_dropped(redis, settings):
    # Given: an async user middleware (listed outside the built-ins), and an async job past its expires_in
    settings.BGJOBS = {**settings.BGJOBS, "SERVER_MIDDLEWARE": [MW + "AsyncRecording"]}
    AsyncExpiringJob.set(expires_in=0.01).perform_later()
    deadline = time.monotonic() + 5
    while time.time() < json.loads(redis.lindex("queue:default", 0))["expiry"] and time.monotonic() < deadline:
        time.sleep(0.01)

    # When
    with worker_manager("mw:1:expiry") as manager:
        run_queued(manager)

    # Then: dropped unrun by the expiry built-in, as without the middleware, which never saw it
    assert redis.zcard("retry") == 0 and redis.zcard("dead") == 0 and redis.llen("queue:default") == 0
    assert [entry for entry in SEEN if entry[0] == "async"] == []


def test_a_job_a_built_in_drops_unrun_sends_no_signal_and_a_job_that_runs_sends_the_pair(redis):
    # Given: one job past its expires_in, one that runs
    seen = []

    def receiver(signal, sender, payload, **kwargs):
        seen.append((signal, payload["args"]))

    handlers = {sig: (lambda sender, payload, sig=sig, **kw: receiver(sig, sender, payload))
                for sig in (signals.job_started, signals.job_succeeded, signals.job_failed)}
    for sig, handler in handlers.items():
        sig.connect(handler, weak=False)
    try:
        RecordJob.set(expires_in=0.01).perform_later("late")
        deadline = time.monotonic() + 5
        while time.time() < json.loads(redis.lindex("queue:default", 0))["expiry"] and time.monotonic() < deadline:
            time.sleep(0.01)
        RecordJob.perform_later("on time")

        # When
        with worker_manager("mw:1:signals") as manager:
            run_queued(manager)
    finally:
        for sig, handler in handlers.items():
            sig.disconnect(handler)

    # Then
    assert [(sig, args) for sig, args in seen] == [
        (signals.job_started, ["on time"]), (signals.job_succeeded, ["on time"]),
    ]
