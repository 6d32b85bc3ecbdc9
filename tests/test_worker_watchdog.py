"""django_bgjobs.worker.watchdog: JobTimeout raised inside perform, never outside it; stuck jobs reported.

The watchdog's one-step method, :meth:`Watchdog.check`, is called with a clock here; the jobs
run in real threads, because raising in a thread is what is being tested.
"""

import json
import threading
import time

import pytest

from django_bgjobs import Job, JobTimeout
from django_bgjobs.worker.fetcher import Fetcher
from django_bgjobs.worker.processor import Processor
from django_bgjobs.worker.queues import QueueOrder
from django_bgjobs.worker.watchdog import Guard, Watchdog, raise_in_thread

pytestmark = pytest.mark.django_db(transaction=True)


class TimedJob(Job):
    """Sleeps in small steps (so an exception reaches it) for ``seconds``; 0.2 s timeout."""

    timeout = 0.2
    retry = 2

    def perform(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.005)
        return "finished"


def job_with(timeout):
    job = TimedJob()
    job.jid, job.payload = "a" * 24, {}
    job.timeout = timeout
    return job


def run_in_thread(guard, job, call):
    """Run ``guard(job, call)`` in a thread; return (thread, outcome dict filled when it ends)."""
    outcome = {}

    def target():
        try:
            outcome["result"] = guard(job, call)
        except BaseException as exc:  # noqa: BLE001 - the outcome is what the test looks at
            outcome["error"] = exc
        # Anything raised after the guard returned would land here, outside perform.
        try:
            for _ in range(20_000):
                pass
            outcome["after"] = "clean"
        except BaseException as exc:  # noqa: BLE001
            outcome["after"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


def wait_armed(guard):
    deadline = time.monotonic() + 5
    while guard.deadline is None:
        assert time.monotonic() < deadline, "the guard never armed"
        time.sleep(0.001)


def test_job_timeout_is_raised_inside_perform_when_the_job_runs_past_its_timeout():
    # Given: a job looping in Python for 5 s with a 0.2 s timeout
    guard = Guard()
    watchdog = Watchdog([guard], grace_s=10)
    job = job_with(0.2)
    thread, outcome = run_in_thread(guard, job, lambda: job.perform(5))
    wait_armed(guard)

    # When
    started = time.monotonic()
    watchdog.check(now=guard.deadline + 0.01)
    thread.join(5)

    # Then: perform ended at once with JobTimeout naming the job and the timeout, nothing after it
    assert time.monotonic() - started < 1
    assert isinstance(outcome["error"], JobTimeout)
    assert str(outcome["error"]) == "tests.test_worker_watchdog.TimedJob ran past its timeout of 0.2s"
    assert outcome["after"] == "clean"
    assert guard.deadline is None


def test_nothing_is_raised_when_the_job_ends_within_its_timeout():
    # Given
    guard = Guard()
    watchdog = Watchdog([guard], grace_s=10)
    job = job_with(30)

    # When
    thread, outcome = run_in_thread(guard, job, lambda: job.perform(0.05))
    thread.join(5)
    stuck = watchdog.check(now=time.monotonic() + 3600)

    # Then
    assert outcome == {"result": "finished", "after": "clean"}
    assert stuck == []


def test_guard_calls_perform_unarmed_when_the_job_has_no_timeout():
    guard = Guard()
    job = job_with(None)

    assert guard(job, lambda: "ran") == "ran"
    assert guard.deadline is None and guard.thread_id is None


def test_a_job_timeout_raised_as_perform_returns_never_lands_outside_it():
    # Given: the watchdog's raise arrives in the very last instant of perform, 200 times over
    for _ in range(200):
        guard = Guard()
        job = job_with(60)

        def perform():
            with guard.lock:
                guard.raised = True
                raise_in_thread(threading.get_ident(), JobTimeout)
            return "finished"

        # When
        thread, outcome = run_in_thread(guard, job, perform)
        thread.join(5)

        # Then: either perform saw it, or the guard dropped it; never the code after the guard
        assert outcome.get("result") == "finished" or isinstance(outcome.get("error"), JobTimeout)
        assert outcome["after"] == "clean"


def test_stuck_job_is_reported_once_when_it_runs_its_grace_past_the_timeout_in_c_code():
    # Given: a job blocked in one C call (time.sleep) that JobTimeout cannot reach
    reported = []
    guard = Guard()
    watchdog = Watchdog([guard], grace_s=0.3, on_stuck=reported.append)
    job = job_with(0.2)
    thread, outcome = run_in_thread(guard, job, lambda: time.sleep(1.0))
    wait_armed(guard)
    deadline = guard.deadline

    # When
    watchdog.check(now=deadline + 0.01)
    assert thread.is_alive()
    first = watchdog.check(now=deadline + 0.35)
    second = watchdog.check(now=deadline + 0.5)
    thread.join(5)

    # Then: reported once, and the exception reached perform once the C call returned
    assert first == [guard] and second == [] and reported == [guard]
    assert isinstance(outcome["error"], JobTimeout)
    assert outcome["after"] == "clean"


def test_processor_retries_the_job_and_runs_the_next_one_when_a_job_times_out(redis):
    # Given: a processor with a guard and a watchdog thread, a job that would run 5 s, a quick one behind
    fetcher = Fetcher("host:1:abc", QueueOrder(["default"]))
    processor = Processor(fetcher)
    processor.guard = Guard(processor)
    watchdog = Watchdog([processor.guard], grace_s=10)
    watchdog.start()
    slow = TimedJob.perform_later(5).jid
    quick = TimedJob.perform_later(0).jid

    # When
    started = time.monotonic()
    try:
        assert processor.process_one(block=False)
        assert processor.process_one(block=False)
    finally:
        watchdog.stop_event.set()
        fetcher.flush()

    # Then: the slow one failed with JobTimeout within a tick of its timeout and waits to retry
    assert time.monotonic() - started < 2
    [entry] = [json.loads(raw) for raw in redis.zrange("retry", 0, -1)]
    assert entry["jid"] == slow
    assert entry["error_class"] == "django_bgjobs.errors.JobTimeout"
    assert entry["error_message"] == "tests.test_worker_watchdog.TimedJob ran past its timeout of 0.2s"
    assert redis.keys("inflight:*") == []
    assert (processor.processed, processor.failed) == (2, 1)
    assert quick not in redis.zrange("retry", 0, -1)
