"""Batches end to end: real ``runjobs`` processes, 1,000 children, deaths, and ``kill -9``
of the worker running the batch's last job.  Run with ``-s`` to see the counts.

Children that fail retry at once (``retry_in`` returns 0), so the poller (every 0.05 s in
``tests.settings``) brings them back without the backoff.
"""

import collections
import os
import signal
import time

import pytest

from django_bgjobs import Batch, BatchStatus
from tests.helpers import stop_worker, wait_until
from tests.test_runjobs import inflight_jids, wait_for_workers, workers  # noqa: F401  (workers: a fixture)
from tests.testapp.jobs import performed
from tests.testapp.unique_batch_jobs import BatchChildJob, DyingChildJob, ParentJob, RecordingCallback, callbacks

pytestmark = pytest.mark.slow


def events(bid=None):
    return collections.Counter(c["event"] for c in callbacks() if bid is None or c["bid"] == bid)


def test_success_fires_once_when_1000_children_some_failing_first_run_on_two_workers(redis, workers):
    # Given: 1,000 children, every tenth failing twice before it succeeds
    batch = Batch(description="1,000 children")
    batch.on("success", RecordingCallback, {"n": 1000}).on("complete", RecordingCallback)
    with batch.jobs():
        BatchChildJob.perform_bulk([(n, 2 if n % 10 == 0 else 0) for n in range(1_000)])

    # When: two worker processes of five threads run them
    started = time.monotonic()
    pair = [workers("-c", "5"), workers("-c", "5")]
    wait_until(lambda: events(batch.bid)["success"], timeout=60, message="the success callback")
    elapsed_s = time.monotonic() - started
    time.sleep(0.5)  # a second callback, if there were one, would run by now
    codes = [stop_worker(proc) for proc in pair]

    # Then
    status = BatchStatus(batch.bid)
    runs = [run for run in performed() if run.get("bid") == batch.bid]
    fired = events(batch.bid)
    print(
        f"\n1,000 children: runs={len(runs)} distinct={len({r['jid'] for r in runs})} "
        f"callbacks={dict(fired)} pending={status.pending} failures={status.failures} elapsed_s={elapsed_s:.2f}"
    )
    assert codes == [0, 0]
    assert fired == {"complete": 1, "success": 1}
    assert (status.total, status.pending, status.failures) == (1_000, 0, 0)
    assert len({r["jid"] for r in runs}) == 1_000
    assert next(c for c in callbacks() if c["event"] == "success")["pending"] == 0


def test_complete_and_death_fire_once_and_success_never_when_children_die(redis, workers):
    # Given: 980 children that succeed and 20 that die on their first failure
    batch = Batch(description="some die")
    for event in ("success", "complete", "death"):
        batch.on(event, RecordingCallback)
    with batch.jobs():
        BatchChildJob.perform_bulk([(n,) for n in range(980)])
        DyingChildJob.perform_bulk([(n,) for n in range(20)])

    # When
    pair = [workers("-c", "5"), workers("-c", "5")]
    wait_until(lambda: events(batch.bid)["complete"], timeout=60, message="the complete callback")
    time.sleep(0.5)
    codes = [stop_worker(proc) for proc in pair]

    # Then
    status = BatchStatus(batch.bid)
    fired = events(batch.bid)
    print(f"\nsome die: callbacks={dict(fired)} pending={status.pending} dead={status.dead} "
          f"dead_set={redis.zcard('dead')}")
    assert codes == [0, 0]
    assert fired == {"complete": 1, "death": 1}
    assert (status.pending, status.dead, status.success) == (20, 20, False)


def test_callback_fires_once_after_recovery_when_the_worker_running_the_last_child_is_killed(redis, workers):
    # Given: 50 quick children and one slow one, on a worker of five threads
    batch = Batch(description="last one killed").on("success", RecordingCallback).on("complete", RecordingCallback)
    with batch.jobs():
        BatchChildJob.perform_bulk([(n,) for n in range(50)])
        slow = BatchChildJob.perform_later("slow", 0, 2.0).jid
    first = workers("-c", "5")
    [victim] = wait_for_workers(redis, 1)
    wait_until(lambda: BatchStatus(batch.bid).pending == 1 and slow in inflight_jids(redis, victim), timeout=20,
               message="only the slow child left, in flight")

    # When: the worker running it is killed, and another takes over
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert events(batch.bid) == {}
    second = workers("-c", "2")
    wait_until(lambda: events(batch.bid)["success"], timeout=20, message="the success callback after recovery")
    time.sleep(0.5)

    # Then
    fired = events(batch.bid)
    slow_runs = [run for run in performed() if run["jid"] == slow]
    print(f"\nkill -9 of the last child's worker: callbacks={dict(fired)} slow_child_runs={len(slow_runs)}")
    assert fired == {"complete": 1, "success": 1}
    assert len(slow_runs) == 1
    assert stop_worker(second) == 0


def test_the_issues_example_runs_on_a_worker_and_calls_on_success_once(redis, workers):
    # Given
    ParentJob.perform_later(list(range(1, 21)))

    # When
    worker = workers("-c", "5")
    wait_until(lambda: events()["success"], timeout=20, message="on_success")
    time.sleep(0.3)

    # Then
    assert events() == {"success": 1, "complete": 1}
    [success] = [c for c in callbacks() if c["event"] == "success"]
    assert success["options"] == {"user_ids": list(range(1, 21))}
    assert stop_worker(worker) == 0
