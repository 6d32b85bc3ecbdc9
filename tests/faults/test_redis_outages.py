"""Fault case 3: Redis connections dropped under load, and Redis restarted.

``CLIENT KILL TYPE normal`` closes every client connection at once (the workers' and the web
side's), as a proxy restart or a network blip would; then Redis itself stops (SIGTERM, so it
writes its append-only file) and starts again on the same data.  Workers reconnect with
backoff and carry on; ``perform_later`` while Redis is down raises ``EnqueueError`` at once,
or, with ``ENQUEUE_RETRIES``, waits for Redis to come back.
"""

import re
import threading
import time

import pytest
from django.conf import settings
from django.test import override_settings

from django_bgjobs import EnqueueError
from tests.faults.harness import wait_for
from tests.faults.jobs import LedgerJob

pytestmark = pytest.mark.slow

JOBS = 10_000


@pytest.mark.faults_long
def test_no_job_is_lost_when_connections_are_killed_and_redis_restarts_under_load(fault_case):
    # Given: Redis with an append-only file, 10,000 jobs, two workers of 5 threads
    case = fault_case("case 3: CLIENT KILL x5, then a Redis restart (AOF), under load",
                      redis_args=("--appendonly", "yes"))
    jids = []
    for start in range(0, JOBS, 1_000):
        jids += [handle.jid for handle in LedgerJob.perform_bulk([(n,) for n in range(start, start + 1_000)])]
    workers = [case.worker("-c", "5"), case.worker("-c", "5")]
    for worker in workers:
        case.identity_of(worker.pid)
    in_flight = set()

    # When: five times, every client connection is killed
    killed = 0
    for round_ in range(1, 6):
        wait_for(lambda: case.runs_count() >= round_ * 1_000, 60, f"{round_ * 1_000} jobs performed")
        in_flight |= set(case.in_flight())
        killed += case.client.client_kill_filter(_type="normal", skipme=True)
        in_flight |= set(case.in_flight())
    # ... then Redis stops and starts again
    wait_for(lambda: case.runs_count() >= 6_000, 60, "6,000 jobs performed")
    in_flight |= set(case.in_flight())
    case.server.stop()
    started = time.monotonic()
    with pytest.raises(EnqueueError, match="Connection refused|connecting"):
        LedgerJob.perform_later("while Redis is down")
    enqueue_error_s = time.monotonic() - started
    down_at = time.monotonic()
    time.sleep(0.5)
    case.server.start()
    in_flight |= set(case.in_flight())

    # Then: every job ran; only jobs in flight at a fault ran twice; the workers carried on
    case.wait_accounted(jids, timeout=60)
    resumed_s = time.monotonic() - down_at
    # (a fetch whose reply was lost with its connection strands jobs; each worker pushes its own back)
    stranded = sum(_reclaimed(case.log(worker)) for worker in workers)
    figures = case.check(jids, in_flight, connections_killed=killed, redis_restarts=1,
                         enqueue_error_s=enqueue_error_s, all_done_s_after_restart=resumed_s,
                         stranded_jobs_reclaimed=stranded)
    assert figures.performed == len(jids)
    assert killed >= 10
    assert enqueue_error_s < 1
    for worker in workers:
        assert worker.poll() is None
        assert "Redis connection is back" in case.log(worker)
    wait_for(lambda: case.in_flight() == [], 10, "nothing left in flight")


def test_enqueue_waits_for_redis_to_come_back_when_enqueue_retries_is_set(fault_case):
    # Given: Redis (with its append-only file) stopped, coming back 0.5 s from now
    case = fault_case("case 3b: enqueue with ENQUEUE_RETRIES while Redis restarts", redis_args=("--appendonly", "yes"))
    worker = case.worker("-c", "2")
    case.identity_of(worker.pid)
    case.server.stop()
    threading.Timer(0.5, case.server.start).start()

    # When
    started = time.monotonic()
    with override_settings(BGJOBS={**settings.BGJOBS, "ENQUEUE_RETRIES": 8}):
        jid = LedgerJob.perform_later("retried").jid
    waited_s = time.monotonic() - started

    # Then: it waited, was written once, and the worker ran it
    case.wait_accounted([jid], timeout=30)
    figures = case.check([jid], enqueue_waited_s=waited_s)
    assert 0.4 < waited_s < 5
    assert figures.performed == 1 and figures.runs == 1


def _reclaimed(log):
    return sum(int(n) for n in re.findall(r"pushed back (\d+) job\(s\) stranded", log))
