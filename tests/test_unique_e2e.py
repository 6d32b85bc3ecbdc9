"""Unique jobs end to end: real ``runjobs`` processes racing for one lock, and ``kill -9``.

Run with ``-s`` to see the race counts.  Workers use ``tests.settings`` (heartbeat TTL 2 s,
``UNIQUE_RESCHEDULE_S`` 0.1 s).
"""

import collections
import os
import signal
import threading
import time

import pytest

from django_bgjobs import keys
from tests.helpers import stop_worker, wait_until
from tests.test_runjobs import inflight_jids, wait_for_workers, workers  # noqa: F401  (workers: a fixture)
from tests.testapp.jobs import performed
from tests.testapp.unique_batch_jobs import MAX_RUNNING_KEY, UntilExecutedJob, WhileExecutingJob

pytestmark = pytest.mark.slow


def overlapping_runs(runs):
    """How many pairs of consecutive runs (by start time) overlapped in time."""
    runs = sorted(runs, key=lambda r: r["start"])
    return sum(1 for a, b in zip(runs, runs[1:]) if b["start"] < a["end"])


def test_until_executed_job_is_queued_and_run_once_at_a_time_when_two_workers_and_200_enqueues_race(redis, workers):
    # Given: two worker processes of three threads
    pair = [workers("-c", "3"), workers("-c", "3")]
    wait_for_workers(redis, 2)

    # When: two threads enqueue the same job 100 times each while the workers run them
    accepted = []
    start = threading.Barrier(2)

    def enqueue():
        start.wait()
        for _ in range(100):
            handle = UntilExecutedJob.perform_later("race", 0.01)
            if handle is not None:
                accepted.append(handle.jid)
            time.sleep(0.002)

    threads = [threading.Thread(target=enqueue) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_until(lambda: len(performed()) >= len(accepted), timeout=20, message="every accepted job run")
    codes = [stop_worker(proc) for proc in pair]

    # Then: every accepted job ran once, never two at a time, and no lock is left
    runs = performed()
    counts = collections.Counter(run["jid"] for run in runs)
    print(
        f"\nuntil_executed race: enqueues=200 accepted={len(accepted)} refused={200 - len(accepted)} "
        f"runs={len(runs)} overlapping={overlapping_runs(runs)} max_running={redis.get(MAX_RUNNING_KEY)} "
        f"pids={len({run['pid'] for run in runs})}"
    )
    assert codes == [0, 0]
    assert 1 <= len(accepted) < 200
    assert sorted(counts) == sorted(accepted) and set(counts.values()) == {1}
    assert redis.get(MAX_RUNNING_KEY) == "1"
    assert overlapping_runs(runs) == 0
    assert redis.keys("unique:*") == []


def test_while_executing_jobs_all_run_and_never_overlap_when_two_workers_race(redis, workers):
    # Given: 30 equal jobs waiting
    jids = [h.jid for h in WhileExecutingJob.perform_bulk([("race", 0.02)] * 30)]

    # When: two worker processes of three threads take them
    pair = [workers("-c", "3"), workers("-c", "3")]
    wait_until(lambda: len(performed()) >= 30, timeout=30, message="30 runs")
    logs = [open(proc.log_path).read() for proc in pair]
    codes = [stop_worker(proc) for proc in pair]

    # Then
    runs = performed()
    rescheduled = sum(log.count("rescheduled in") for log in logs)
    print(
        f"\nwhile_executing race: jobs=30 runs={len(runs)} overlapping={overlapping_runs(runs)} "
        f"max_running={redis.get(MAX_RUNNING_KEY)} rescheduled={rescheduled} "
        f"per_pid={sorted(collections.Counter(run['pid'] for run in runs).values())}"
    )
    assert codes == [0, 0]
    assert sorted(run["jid"] for run in runs) == sorted(jids)
    assert redis.get(MAX_RUNNING_KEY) == "1"
    assert overlapping_runs(runs) == 0
    assert rescheduled > 0
    assert redis.keys("unique:*") == []


def test_until_executed_lock_is_held_while_the_killed_workers_job_is_recovered_and_freed_when_it_ends(redis, workers):
    # Given: the job runs on a worker that is then killed with kill -9
    handle = UntilExecutedJob.perform_later("crash", 1.5)
    first = workers("-c", "1")
    [victim] = wait_for_workers(redis, 1)
    wait_until(lambda: inflight_jids(redis, victim) == [handle.jid], timeout=10, message="the job in flight")
    os.kill(first.pid, signal.SIGKILL)
    first.wait()

    # Then: the lock is still held: an equal job is refused
    assert UntilExecutedJob.perform_later("crash", 1.5) is None

    # When: another worker recovers the job
    second = workers("-c", "1")
    wait_until(lambda: [run["jid"] for run in performed()] == [handle.jid], timeout=15, message="the recovered run")

    # Then: its end freed the lock
    wait_until(lambda: redis.keys("unique:*") == [], timeout=5, message="the lock freed")
    assert UntilExecutedJob.perform_later("crash", 0) is not None
    assert stop_worker(second) == 0


def test_run_lock_of_a_killed_worker_is_taken_over_by_its_recovered_job(redis, workers):
    # Given: a while_executing job running, its worker killed with kill -9
    handle = WhileExecutingJob.perform_later("crash", 1.5)
    first = workers("-c", "1")
    [victim] = wait_for_workers(redis, 1)
    wait_until(lambda: redis.keys("unique:*:run"), timeout=10, message="the run lock taken")
    [run_lock] = redis.keys("unique:*:run")
    assert redis.hget(run_lock, "heartbeat") == keys.process(victim)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()

    # When
    killed_at = time.monotonic()
    second = workers("-c", "1")
    wait_until(lambda: [run["jid"] for run in performed()] == [handle.jid], timeout=15, message="the recovered run")

    # Then: it ran within the heartbeat TTL plus the job, not after the lock's 24 h TTL
    assert time.monotonic() - killed_at < 10
    wait_until(lambda: redis.keys("unique:*") == [], timeout=5, message="the run lock freed")
    assert stop_worker(second) == 0
