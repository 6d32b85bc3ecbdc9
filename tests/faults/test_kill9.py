"""Fault cases 1 and 2: worker processes killed with SIGKILL mid-run lose no job.

The workers run ``tests.faults.settings`` (the test settings: heartbeat every 0.2 s, expiring
after 2 s), so a dead worker's jobs come back about 2 s after the kill; with the defaults
(5 s / 30 s) that is about 30 to 35 s.
"""

import random
import time

import pytest

from tests.faults.harness import wait_for
from tests.faults.jobs import LedgerJob

pytestmark = pytest.mark.slow

HEARTBEAT_TTL_S = 2  # tests.settings
HEARTBEAT_INTERVAL_S = 0.2


def enqueue_ledger_jobs(count, queue="default", batch=1_000):
    jids = []
    for start in range(0, count, batch):
        handles = LedgerJob.set(queue=queue).perform_bulk([(n,) for n in range(start, min(start + batch, count))])
        jids += [handle.jid for handle in handles]
    return jids


@pytest.mark.faults_long
def test_no_job_is_lost_when_the_worker_is_killed_9_five_times_during_20000_jobs(fault_case):
    # Given: 20,000 jobs, one worker of 5 threads, and five kill moments drawn at random
    case = fault_case("case 1: kill -9 five times during 20,000 jobs")
    seed = random.randrange(1_000_000)
    rng = random.Random(seed)
    jids = enqueue_ledger_jobs(20_000)
    worker = case.worker("-c", "5")
    in_flight_at_kills, recoveries_s = set(), []

    # When: each worker, once it has run a random 500 to 3,000 jobs, is killed -9 and another
    # started at once
    for _ in range(5):
        identity = case.identity_of(worker.pid)
        threshold = case.runs_count() + rng.randrange(500, 3_000)
        wait_for(lambda: case.runs_count() >= threshold, 60, f"{threshold} jobs performed")
        time.sleep(rng.uniform(0, 0.05))
        case.kill9(worker.pid)
        worker.wait()
        killed_at = time.monotonic()
        in_flight = case.in_flight(identity)
        assert in_flight, "the kill should catch jobs in flight"
        in_flight_at_kills |= set(in_flight)
        worker = case.worker("-c", "5")
        wait_for(lambda: not case.client.keys(f"inflight:{identity}:*"), 20, "the killed worker's jobs pushed back")
        recoveries_s.append(time.monotonic() - killed_at)

    # Then: every job ran; only jobs in flight at a kill ran twice; each recovery took about the TTL
    case.wait_accounted(jids, timeout=120)
    figures = case.check(
        jids, in_flight_at_kills, kills=len(recoveries_s), seed=seed,
        recovery_s_min=min(recoveries_s), recovery_s_max=max(recoveries_s),
    )
    assert figures.performed == len(jids)
    assert figures.dead == 0
    assert max(recoveries_s) < HEARTBEAT_TTL_S + 3
    assert worker.poll() is None


def test_the_other_worker_pushes_back_a_killed_workers_jobs_within_the_heartbeat_ttl_without_a_restart(fault_case):
    # Given: worker A serves queue alpha, worker B queue beta, both busy
    case = fault_case("case 2: kill -9 one of two workers on different queues")
    jids = enqueue_ledger_jobs(3_000, "alpha") + enqueue_ledger_jobs(3_000, "beta")
    alpha = case.worker("-c", "5", "-q", "alpha")
    beta = case.worker("-c", "5", "-q", "beta")
    alpha_identity, beta_identity = case.identity_of(alpha.pid), case.identity_of(beta.pid)
    wait_for(lambda: case.runs_count() >= 1_000, 30, "1,000 jobs performed")

    # When
    case.kill9(alpha.pid)
    alpha.wait()
    killed_at = time.monotonic()
    in_flight = case.in_flight(alpha_identity)
    wait_for(lambda: not case.client.keys(f"inflight:{alpha_identity}:*"), 15, "alpha's jobs pushed back")
    recovery_s = time.monotonic() - killed_at

    # Then: B, never restarted, pushed A's jobs back to alpha within the TTL and a beat
    assert in_flight
    assert f"worker {alpha_identity} is gone; pushed" in case.log(beta)
    assert set(in_flight) <= set(case.queued("alpha"))
    assert beta.poll() is None and case.identity_of(beta.pid) == beta_identity
    assert recovery_s < HEARTBEAT_TTL_S + HEARTBEAT_INTERVAL_S + 1.5

    # And once alpha has a worker again, nothing is missing
    case.worker("-c", "5", "-q", "alpha")
    case.wait_accounted(jids, timeout=60)
    figures = case.check(jids, in_flight, recovery_s=recovery_s, heartbeat_ttl_s=HEARTBEAT_TTL_S)
    assert figures.performed == len(jids)
