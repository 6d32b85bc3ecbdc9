"""Async jobs: ``async def perform`` on the worker's event loop, and the ``a*`` enqueue methods.

The worker tests drive a :class:`Manager`'s processor in the test's thread
(``process_one(block=False)``) and wait for the event loop's finisher thread to write the end;
the end-to-end ones (marked slow) run ``runjobs`` subprocesses.
"""

import asyncio
import collections
import contextvars
import functools
import json
import threading
import time

import pytest
from asgiref.sync import async_to_sync

from django_bgjobs import Batch, Job, execution, signals
from django_bgjobs.connection import get_redis
from django_bgjobs.errors import ConfigurationError
from django_bgjobs.worker import event_loop
from django_bgjobs.worker.launcher import Launcher
from django_bgjobs.worker.poller import Poller
from tests.faults.harness import rerun_counts
from tests.helpers import dead_entries, read_log, run_queued, start_worker, stop_worker, wait_until, worker_manager
from tests.testapp.jobs import AsyncFailOnceJob, AsyncSleepJob, JobFailure, RecordJob, performed, record
from tests.testapp.unique_batch_jobs import RecordingCallback, callbacks

pytestmark = pytest.mark.django_db(transaction=True)

IDENTITY = "test-host:4242:async"
FAR_FUTURE_S = 4_000_000_000
_live = set()  # (jid) of AsyncProbeJob runs in progress, for the concurrency bound
#: docs/guarantees.rst: a finished async job's end is in Redis within this long (100 ending at
#: once), and a failed one's within FAILED_WINDOW_MS (a failure costs its traceback).
ACK_WINDOW_MS = 50
FAILED_WINDOW_MS = 150


class AsyncRecordJob(Job):
    async def perform(self, *args):
        await asyncio.sleep(0)
        await asyncio.to_thread(record, self.jid, args, current=execution.current_job() is self)
        return list(args)


class AsyncFailingJob(Job):
    async def perform(self, message):
        await asyncio.sleep(0)
        raise JobFailure(message)


class AsyncTimeoutJob(Job):
    timeout = 0.2

    async def perform(self):
        await asyncio.sleep(30)


class AsyncOwnTimeoutErrorJob(Job):
    """Raises TimeoutError itself, well inside its own timeout: a plain failure, not JobTimeout."""

    timeout = 30

    async def perform(self):
        raise TimeoutError("the upstream API timed out")


class AsyncExitJob(Job):
    async def perform(self):
        raise SystemExit(3)


class AsyncProbeJob(Job):
    """Counts how many run at once in ``test:async:peak``."""

    async def perform(self, n):
        _live.add(self.jid)
        peak = max(len(_live), int(get_redis().get("test:async:peak") or 0))
        get_redis().set("test:async:peak", peak)
        await asyncio.sleep(0.05)
        _live.discard(self.jid)


class AsyncHookedJob(Job):
    async def before_perform(self):
        await asyncio.to_thread(record, self.jid, ["before"])

    async def around_perform(self, perform):
        await asyncio.to_thread(record, self.jid, ["around-in"])
        result = await perform()
        await asyncio.to_thread(record, self.jid, ["around-out", result])
        return result

    def after_perform(self):  # a plain method is fine on an async job
        record(self.jid, ["after"])

    async def perform(self, value):
        await asyncio.sleep(0)
        return value * 2


class AsyncLoopProbeJob(Job):
    async def perform(self):
        return id(asyncio.get_running_loop())


_request_id = contextvars.ContextVar("test_request_id", default=None)


class AsyncContextJob(Job):
    """Returns the context variable a job_started receiver set."""

    async def perform(self):
        return _request_id.get()


def _async_wrapper(perform):
    @functools.wraps(perform)
    def wrapper(self, *args):
        return perform(self, *args)  # a plain function handing back the coroutine
    return wrapper


class DecoratedAsyncJob(Job):
    @_async_wrapper
    async def perform(self, value):
        await asyncio.sleep(0)
        return value


class BlockingAsyncJob(Job):
    """The mistake to catch: a blocking call inside an async job."""

    async def perform(self):
        time.sleep(0.6)


class SelfCancellingJob(Job):
    async def perform(self):
        asyncio.current_task().cancel()
        await asyncio.sleep(1)


_gate = {}  # "event": the asyncio.Event AsyncGatedJob waits on (made on the loop by the first one)


class AsyncGatedJob(Job):
    """Waits until the test opens the gate, so that all of them end at once; then fails or not."""

    async def perform(self, fail):
        await _gate.setdefault("event", asyncio.Event()).wait()
        if fail:
            raise JobFailure("gated failure")


class AsyncBatchChildJob(Job):
    async def perform(self, n):
        await asyncio.sleep(0.01)


@pytest.fixture
def manager():
    with worker_manager(IDENTITY) as manager:
        yield manager



# -- the class and the client side ------------------------------------------------------------


def test_async_perform_marks_the_class_async_and_a_plain_one_does_not():
    assert AsyncRecordJob.is_async is True
    assert RecordJob.is_async is False


def test_plain_around_perform_on_an_async_job_is_refused_at_class_creation():
    with pytest.raises(ConfigurationError, match="around_perform must be async def"):
        class BadAroundJob(Job):
            def around_perform(self, perform):
                return perform()

            async def perform(self):
                pass


def test_async_hook_on_a_plain_job_is_refused_at_class_creation():
    with pytest.raises(ConfigurationError, match="before_perform is async def but perform is not"):
        class BadBeforeJob(Job):
            async def before_perform(self):
                pass

            def perform(self):
                pass


def test_async_perform_behind_a_plain_decorator_is_still_awaited():
    assert DecoratedAsyncJob.is_async is True
    assert DecoratedAsyncJob.perform_now(5) == 5


def test_a_plain_perform_that_returns_an_awaitable_fails_instead_of_succeeding_silently():
    class HiddenAsyncJob(Job):
        def perform(self):
            return asyncio.sleep(0)

    with pytest.raises(TypeError, match="returned an awaitable without being async def"):
        HiddenAsyncJob.perform_now()


def test_perform_now_runs_an_async_job_and_returns_its_result(redis):
    assert AsyncRecordJob.perform_now(1, "x") == [1, "x"]
    [entry] = performed()
    assert entry["args"] == [1, "x"] and entry["current"] is True


def test_perform_now_enforces_an_async_jobs_timeout():
    from django_bgjobs.errors import JobTimeout

    with pytest.raises(JobTimeout, match="ran past its timeout of 0.2s"):
        AsyncTimeoutJob.perform_now()


def test_a_timeout_error_raised_by_the_job_itself_is_not_reported_as_its_timeout():
    with pytest.raises(TimeoutError, match="upstream API"):
        AsyncOwnTimeoutErrorJob.perform_now()


def test_aperform_later_from_async_code_pushes_the_payload(redis):
    async def view():
        return await AsyncRecordJob.aperform_later(7), await RecordJob.set(queue="low").aperform_later("a")

    first, second = async_to_sync(view)()

    [raw] = redis.lrange("queue:default", 0, -1)
    assert json.loads(raw)["jid"] == first.jid and json.loads(raw)["args"] == [7]
    assert json.loads(redis.lindex("queue:low", 0))["jid"] == second.jid


def test_aperform_bulk_pushes_every_payload(redis):
    handles = async_to_sync(AsyncRecordJob.aperform_bulk)([(1,), (2,), (3,)])
    # Sidekiq's order: LPUSH, so the list holds the newest first
    assert [json.loads(raw)["jid"] for raw in redis.lrange("queue:default", 0, -1)] == [h.jid for h in handles][::-1]


def test_aperform_later_refuses_bad_arguments_and_writes_nothing(redis):
    with pytest.raises(TypeError, match="JSON"):
        async_to_sync(AsyncRecordJob.aperform_later)(object())
    assert redis.keys("*") == []


def test_aperform_now_awaits_an_async_job_and_runs_a_plain_one(redis):
    async def view():
        return await AsyncHookedJob.aperform_now(4), await RecordJob.aperform_now("sync")

    assert async_to_sync(view)() == (8, None)
    assert [e["args"] for e in performed()] == [["before"], ["around-in"], ["around-out", 8], ["after"], ["sync"]]


def test_aperform_now_runs_an_async_job_on_the_callers_event_loop():
    async def view():
        return id(asyncio.get_running_loop()), await AsyncLoopProbeJob.aperform_now()

    caller_loop, job_loop = async_to_sync(view)()
    assert job_loop == caller_loop


def test_test_helpers_run_async_jobs_like_plain_ones(redis):
    from django_bgjobs.testing import capture_jobs, perform_enqueued_jobs

    with capture_jobs() as jobs:
        AsyncRecordJob.perform_later("captured")
    jobs.assert_enqueued(AsyncRecordJob, args=["captured"])
    jobs.perform_all()
    with perform_enqueued_jobs():
        async_to_sync(AsyncRecordJob.aperform_later)("inline from async code")

    assert [e["args"] for e in performed()] == [["captured"], ["inline from async code"]]
    assert redis.keys("queue:*") == []


def test_jobs_pushed_with_aperform_later_inside_a_batch_block_join_the_batch(redis):
    async def view():
        batch = Batch()
        with batch.jobs():
            await AsyncRecordJob.aperform_later(1)
            await asyncio.gather(AsyncRecordJob.aperform_later(2), AsyncRecordJob.aperform_later(3))
        return batch

    batch = async_to_sync(view)()

    assert {json.loads(raw)["bid"] for raw in redis.lrange("queue:default", 0, -1)} == {batch.bid}
    assert batch.status().total == 3


# -- the worker --------------------------------------------------------------------------------


def test_worker_runs_an_async_job_on_the_event_loop_and_acknowledges_it(redis, manager):
    jid = AsyncRecordJob.perform_later("hello").jid
    seen = []
    on_started = lambda sender, job, **kw: seen.append(("started", threading.current_thread().name))  # noqa: E731
    on_done = lambda sender, job, result, **kw: seen.append(("succeeded", result, threading.current_thread().name))  # noqa: E731
    signals.job_started.connect(on_started)
    signals.job_succeeded.connect(on_done)
    try:
        run_queued(manager)
    finally:
        signals.job_started.disconnect(on_started)
        signals.job_succeeded.disconnect(on_done)

    assert [(e["jid"], e["args"], e["current"]) for e in performed()] == [(jid, ["hello"], True)]
    assert redis.keys("inflight:*") == []
    assert manager.counts() == (1, 0)
    # the signals are sent from worker threads, never from the loop (their receivers may use the ORM)
    assert seen == [("started", threading.current_thread().name), ("succeeded", ["hello"], "bgjobs-async-finisher")]


def test_what_a_job_started_receiver_puts_in_a_context_variable_reaches_the_job_and_its_end(redis, manager):
    ends = []

    def on_started(sender, job, **kwargs):
        _request_id.set(f"req-{job.jid}")

    def on_succeeded(sender, job, result, **kwargs):
        ends.append((result, _request_id.get()))

    signals.job_started.connect(on_started, sender=AsyncContextJob)
    signals.job_succeeded.connect(on_succeeded, sender=AsyncContextJob)
    try:
        jid = AsyncContextJob.perform_later().jid
        run_queued(manager)
    finally:
        signals.job_started.disconnect(on_started, sender=AsyncContextJob)
        signals.job_succeeded.disconnect(on_succeeded, sender=AsyncContextJob)

    assert ends == [(f"req-{jid}", f"req-{jid}")]
    assert _request_id.get() is None  # nothing leaked into the processor thread (here: the test)


@pytest.mark.parametrize("signal", ["job_succeeded", "job_died"])
def test_a_raising_signal_receiver_neither_strands_the_job_nor_stops_the_finisher(redis, manager, signal):
    # job_succeeded raising fails the attempt, as in a thread; job_died raising is logged (the burial is written)
    def broken(sender, **kwargs):
        raise RuntimeError("receiver bug")

    getattr(signals, signal).connect(broken)
    try:
        first = (AsyncRecordJob if signal == "job_succeeded" else AsyncFailingJob.set(retry=0)).perform_later("x").jid
        run_queued(manager)
    finally:
        getattr(signals, signal).disconnect(broken)
    jid = AsyncRecordJob.perform_later("next").jid
    run_queued(manager)

    assert manager.busy_work() == {} and redis.keys("inflight:*") == []
    assert jid in {e["jid"] for e in performed()}
    if signal == "job_succeeded":
        [raw] = redis.zrange("retry", 0, -1)
        assert json.loads(raw)["jid"] == first and json.loads(raw)["error_message"] == "receiver bug"
    else:
        assert [d["jid"] for d in dead_entries(redis)] == [first]


def test_a_job_handed_over_after_shutdown_began_is_not_started_and_stays_in_flight(redis, manager):
    manager.event_loop.abandon()  # shutdown has begun
    AsyncRecordJob.perform_later("late")

    manager.processors[0].process_one(block=False)

    assert performed() == [] and manager.busy_work() == {}
    assert redis.llen(f"inflight:{IDENTITY}:default") == 1  # for the launcher to push back
    assert manager.counts() == (0, 0)


def test_async_jobs_that_end_together_are_written_together_in_one_round_trip(redis, monkeypatch):
    # Given: 30 async jobs, a third of them failing, all waiting on one gate (and a finisher
    # that writes every 1 s at most, so that a slow machine does not split its writes)
    monkeypatch.setattr(event_loop, "WRITE_WITHIN_S", 1.0)
    _gate.clear()
    with worker_manager(IDENTITY, async_concurrency=50) as manager:
        jids = [h.jid for h in AsyncGatedJob.perform_bulk([(n % 3 == 0,) for n in range(30)])]
        while manager.processors[0].process_one(block=False):
            pass
        wait_until(lambda: "event" in _gate and len(manager.busy_work()) == 30)
        before = redis.info("commandstats")

        # When: the gate opens and all of them end at once
        manager.event_loop.loop.call_soon_threadsafe(_gate["event"].set)
        wait_until(lambda: not manager.busy_work(), message="async jobs to end")
        after = redis.info("commandstats")

    # Then: a few MULTIs wrote the 20 acks and 10 retry entries (one per end: 30), no job is
    # left in flight, and each failure is in the retry set once
    def calls(name):
        return after.get(f"cmdstat_{name}", {}).get("calls", 0) - before.get(f"cmdstat_{name}", {}).get("calls", 0)

    round_trips = calls("exec") + calls("evalsha") + calls("eval")
    assert 1 <= round_trips <= 3, round_trips
    assert redis.keys("inflight:*") == []
    assert sorted(json.loads(raw)["jid"] for raw in redis.zrange("retry", 0, -1)) == sorted(jids[::3])
    assert manager.counts() == (30, 10)


def test_many_async_jobs_run_at_once_but_never_more_than_the_setting(redis):
    with worker_manager(IDENTITY, concurrency=2, async_concurrency=4) as manager:
        AsyncProbeJob.perform_bulk([(n,) for n in range(20)])
        run_queued(manager)
    assert int(redis.get("test:async:peak")) == 4
    assert manager.counts() == (20, 0) and redis.keys("inflight:*") == []


def test_failed_async_job_goes_to_the_retry_set_with_its_error(redis, manager):
    jid = AsyncFailingJob.perform_later("disk full").jid
    run_queued(manager)

    [raw] = redis.zrange("retry", 0, -1)
    job = json.loads(raw)
    assert (job["jid"], job["retry_count"], job["error_message"]) == (jid, 0, "disk full")
    assert job["error_class"] == "tests.testapp.jobs.JobFailure"
    assert redis.keys("inflight:*") == [] and manager.counts() == (1, 1)


def test_async_job_out_of_retries_goes_to_the_dead_set(redis, manager):
    jid = AsyncFailingJob.set(retry=1).perform_later("still broken").jid
    run_queued(manager)
    Poller().enqueue_due(now=FAR_FUTURE_S)
    run_queued(manager)

    [dead] = dead_entries(redis)
    assert dead["jid"] == jid and dead["retry_count"] == 1
    assert manager.counts() == (2, 2)


@pytest.mark.parametrize(("job_class", "error_class", "message"), [
    (AsyncTimeoutJob, "django_bgjobs.errors.JobTimeout", "ran past its timeout of 0.2s"),
    (AsyncExitJob, "SystemExit", "3"),  # SystemExit must not stop the loop
    (SelfCancellingJob, "RuntimeError", "the job's task was cancelled"),  # never a success
])
def test_async_job_that_times_out_or_exits_fails_and_the_loop_carries_on(redis, manager, job_class, error_class,
                                                                         message):
    job_class.perform_later()
    jid = AsyncRecordJob.perform_later("after").jid
    run_queued(manager)

    [raw] = redis.zrange("retry", 0, -1)
    assert json.loads(raw)["error_class"] == error_class, json.loads(raw)
    assert message in json.loads(raw)["error_message"]
    assert [e["jid"] for e in performed()] == [jid]


def test_running_async_job_is_reported_as_busy_work_and_stays_in_flight(redis, manager):
    AsyncSleepJob.perform_later(0.5)
    manager.processors[0].process_one(block=False)

    [(queue, raw, _)] = wait_until(lambda: list(manager.event_loop.busy_work().values()))
    assert queue == "default" and json.loads(raw)["class"] == AsyncSleepJob.name
    assert manager.busy_work() == manager.event_loop.busy_work()
    assert redis.llen(f"inflight:{IDENTITY}:default") == 1
    wait_until(lambda: not manager.busy_work())
    assert redis.llen(f"inflight:{IDENTITY}:default") == 0


def test_a_loop_blocked_by_a_job_is_reported_with_the_jobs_running(redis, manager, monkeypatch, caplog):
    from django_bgjobs.worker import event_loop

    monkeypatch.setattr(event_loop, "BLOCKED_AFTER_S", 0.3)
    jid = BlockingAsyncJob.perform_later().jid
    manager.processors[0].process_one(block=False)
    time.sleep(0.45)

    assert manager.event_loop.check_blocked() >= 0.3
    assert "event loop has been blocked" in caplog.text and f"jid={jid}" in caplog.text
    wait_until(lambda: not manager.busy_work())
    time.sleep(event_loop.TICK_S + 0.1)  # the loop ticks again once the job returns
    assert manager.event_loop.check_blocked() == 0


def test_stop_cancels_async_jobs_still_running_and_they_write_nothing(redis, manager):
    AsyncSleepJob.perform_bulk([(30,), (30,)])
    processor = manager.processors[0]
    processor.process_one(block=False)
    processor.process_one(block=False)
    wait_until(lambda: len(manager.busy_work()) == 2)

    abandoned = manager.stop(time.monotonic() + 0.2)

    assert sorted(json.loads(raw)["class"] for _, raw, _ in abandoned) == [AsyncSleepJob.name] * 2
    time.sleep(0.2)  # the cancelled tasks end; their ends must not be written
    assert redis.llen(f"inflight:{IDENTITY}:default") == 2  # left for the launcher to push back
    assert redis.zcard("retry") == 0 and redis.zcard("dead") == 0 and performed() == []
    assert manager.counts() == (0, 0)


def test_async_hooks_run_around_perform_in_the_worker(redis, manager):
    jid = AsyncHookedJob.perform_later(21).jid
    run_queued(manager)
    assert [(e["jid"], e["args"]) for e in performed()] == [
        (jid, ["before"]), (jid, ["around-in"]), (jid, ["around-out", 42]), (jid, ["after"]),
    ]


def test_batch_of_async_jobs_fires_its_success_callback_once(redis, manager):
    batch = Batch().on("success", RecordingCallback, {"kind": "async"})
    with batch.jobs():
        AsyncBatchChildJob.perform_bulk([(n,) for n in range(10)])
    run_queued(manager)  # the children, then the callback job
    run_queued(manager)

    assert batch.status().success
    assert [(c["event"], c["options"], c["total"]) for c in callbacks()] == [("success", {"kind": "async"}, 10)]


def test_stranded_check_sees_running_async_jobs_as_held(redis):
    launcher = Launcher(queues=["default"], concurrency=1, schedule=False)
    try:
        AsyncSleepJob.perform_later(0.5)
        launcher.manager.processors[0].process_one(block=False)
        wait_until(lambda: launcher.manager.busy_work())
        later = time.monotonic() + 3600
        assert launcher.reclaim_stranded(now=later - 1) == 0
        assert launcher.reclaim_stranded(now=later) == 0  # held the whole time: never pushed back
        assert redis.llen("queue:default") == 0
    finally:
        launcher.manager.event_loop.abandon()
        launcher.manager.event_loop.stop()


# -- end to end ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_hundred_async_sleeps_run_concurrently_on_one_process(redis):
    # Given: 200 jobs of asyncio.sleep(0.1): one after another they would take 20 s
    jids = {h.jid for h in AsyncSleepJob.perform_bulk([(0.1,)] * 200)}
    proc = start_worker("-c", "2", "-q", "default")
    try:
        started = time.monotonic()
        wait_until(lambda: len(performed()) == 200, timeout=60, message="200 async jobs")
        elapsed_s = time.monotonic() - started
    finally:
        assert stop_worker(proc) == 0
    runs = performed()

    # Then: each ran once, and they overlapped far beyond the 2 threads
    assert {e["jid"] for e in runs} == jids and len(runs) == 200
    events = sorted([(e["started"], 1) for e in runs] + [(e["ended"], -1) for e in runs])
    peak = running = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    print(f"\n200 x asyncio.sleep(0.1) on one process, -c 2: {elapsed_s:.2f}s (start included), peak {peak} at once")
    assert peak >= 50
    assert elapsed_s < 10
    assert redis.keys("inflight:*") == [] and redis.zcard("retry") == 0


@pytest.mark.slow
def test_sigterm_pushes_back_async_jobs_that_outlive_the_shutdown_timeout(redis):
    AsyncSleepJob.perform_bulk([(0.2,)] * 5 + [(30,)] * 3)
    proc = start_worker("-c", "1", "-q", "default", "--timeout", "1")
    wait_until(lambda: len(performed()) == 5, timeout=30)
    assert stop_worker(proc) == 0

    assert "3 job(s) still running after 1" in read_log(proc)
    assert [json.loads(raw)["args"] for raw in redis.lrange("queue:default", 0, -1)] == [[30]] * 3
    assert redis.keys("inflight:*") == [] and redis.zcard("retry") == 0 and len(performed()) == 5


def _kill9_once(redis, job_class, worker_args):
    """300 jobs of ``job_class`` (0.3 s of ``asyncio.sleep``, then a ledger row); a worker is
    killed -9 once 100 have finished, another runs the rest.  Returns the :class:`KillCounts`
    of the kill and, for each finished job run again, how long before the kill it finished
    (ms, by Redis's clock: from its ledger row to the kill)."""
    redis.delete("test:performed", "test:finished", "retry")
    jids = {h.jid for h in job_class.perform_bulk([(0.3,)] * 300)}
    first = start_worker(*worker_args)
    wait_until(lambda: redis.llen("test:performed") >= 100, timeout=60, interval=0.005)
    seconds, micros = redis.time()
    first.kill()
    first.wait()
    finished = {e["jid"] for e in performed()}
    counts = rerun_counts([json.loads(raw)["jid"] for key in redis.keys("inflight:*") for raw in redis.lrange(key, 0, -1)],
                          finished)
    killed_at = seconds + micros / 1e6
    waited_ms = sorted(max(killed_at - redis.zscore("test:finished", jid), 0) * 1000 for jid in counts.finished)
    second = start_worker(*worker_args)
    try:
        wait_until(lambda: {e["jid"] for e in performed()} == jids, timeout=60, message="every jid performed")
        if job_class is AsyncFailOnceJob:
            wait_until(lambda: redis.zcard("retry") == len(jids), timeout=30, message="every job in the retry set")
    finally:
        assert stop_worker(second) == 0
    runs = collections.Counter(e["jid"] for e in performed())
    # Only the finished jobs still in flight at the kill ran twice (an unfinished one wrote no row then)
    assert {jid for jid, n in runs.items() if n > 1} == counts.finished and max(runs.values()) <= 2
    assert redis.keys("inflight:*") == [] and redis.llen("queue:default") == 0
    return counts, waited_ms


@pytest.mark.slow
@pytest.mark.parametrize("job_class, window_ms", [(AsyncSleepJob, ACK_WINDOW_MS), (AsyncFailOnceJob, FAILED_WINDOW_MS)],
                         ids=["succeeding", "failing"])
def test_async_jobs_that_finished_before_a_kill_9_do_not_run_again_past_the_window(redis, job_class, window_ms):
    # Given/When: five times, 300 async jobs (100 at once on the loop), a worker killed with
    # SIGKILL right as the first 100 finish together, and another that runs the rest
    kills = [_kill9_once(redis, job_class, ("-c", "2", "-q", "default")) for _ in range(5)]

    # Then: every job ran (or failed once: a failure is not retried twice); the jobs running at
    # the kill ran again, as at-least-once allows; of the finished ones, only those whose end
    # was not written yet, all finished within the window of docs/guarantees.rst
    for n, (counts, waited_ms) in enumerate(kills, 1):
        print(f"\nasync {job_class.__name__} kill -9 #{n}: " + counts.line("300 jobs")
              + (f" (finished {waited_ms[0]:.1f} to {waited_ms[-1]:.1f} ms before the kill)" if waited_ms else ""))
    assert sum(len(counts.running) for counts, _ in kills) > 5 * 2  # the loop's jobs were in flight too
    assert max((ms for _, waited_ms in kills for ms in waited_ms), default=0) < window_ms
