"""Fault cases 1 and 2: worker processes killed with SIGKILL mid-run lose no job.

The workers run ``tests.faults.settings`` (the test settings: heartbeat every 0.2 s, expiring
after 2 s), so a dead worker's jobs come back about 2 s after the kill; with the defaults
(5 s / 30 s) that is about 30 to 35 s.
"""

import random
import time

import pytest

from tests.faults.harness import gone, wait_for
from tests.faults.jobs import FailOnceLedgerJob, LedgerJob, SlowLedgerJob

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
    kill_after = sorted(rng.sample(range(1_000, 19_000), 5))
    worker = case.worker("-c", "5")
    in_flight_at_kills, recoveries_s, unrecovered, counts = set(), [], {}, []

    def recovered():
        for identity, killed_at in list(unrecovered.items()):
            if not case.client.keys(f"inflight:{identity}:*"):
                recoveries_s.append(time.monotonic() - killed_at)
                del unrecovered[identity]
        return not unrecovered

    def kill_moment(threshold, identity):
        recovered()  # time the recoveries still going on while we wait
        return case.runs_count() >= threshold and case.in_flight(identity)

    # When: each time the ledger passes a kill moment, the worker (once it holds jobs) is killed
    # -9 and another started at once
    for threshold in kill_after:
        identity = case.identity_of(worker.pid)
        wait_for(lambda: kill_moment(threshold, identity), 60, f"{threshold} jobs performed, the worker holding jobs")
        time.sleep(rng.uniform(0, 0.01))
        counts.append(case.kill9_and_count(worker.pid, identity, f"kill {len(counts) + 1}"))
        worker.wait()
        unrecovered[identity] = time.monotonic()
        in_flight_at_kills |= counts[-1].finished | counts[-1].running
        worker = case.worker("-c", "5")
    wait_for(recovered, 20, "the killed workers' jobs pushed back")

    # Then: every job ran; only jobs in flight at a kill ran twice; each recovery took about the TTL
    case.wait_accounted(jids, timeout=120)
    figures = case.check(
        jids, in_flight_at_kills, kills=len(kill_after), seed=seed,
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
    wait_for(lambda: case.runs_count() >= 1_000 and case.in_flight(alpha_identity), 30,
             "1,000 jobs performed, A holding jobs")

    # When
    counts = case.kill9_and_count(alpha.pid, alpha_identity, "kill of A")
    alpha.wait()
    killed_at = time.monotonic()
    in_flight = counts.finished | counts.running
    wait_for(lambda: not case.client.keys(f"inflight:{alpha_identity}:*"), 15, "alpha's jobs pushed back")
    recovery_s = time.monotonic() - killed_at

    # Then: B, never restarted, pushed A's jobs back to alpha within the TTL and a beat
    assert in_flight
    wait_for(lambda: f"worker {alpha_identity} is gone; pushed" in case.log(beta), 5, "B's log line")
    assert set(in_flight) <= set(case.queued("alpha"))
    assert beta.poll() is None and case.identity_of(beta.pid) == beta_identity
    assert recovery_s < HEARTBEAT_TTL_S + HEARTBEAT_INTERVAL_S + 1.5

    # And once alpha has a worker again, nothing is missing
    case.worker("-c", "5", "-q", "alpha")
    case.wait_accounted(jids, timeout=60)
    figures = case.check(jids, in_flight, recovery_s=recovery_s, heartbeat_ttl_s=HEARTBEAT_TTL_S)
    assert figures.performed == len(jids)


@pytest.mark.parametrize("job_class, worker_args", [
    (SlowLedgerJob, ("-c", "10")),
    (SlowLedgerJob, ("-c", "5", "--processes", "2")),
    (FailOnceLedgerJob, ("-c", "10")),
], ids=["threads", "processes-2", "failures"])
def test_kill_9_runs_again_the_jobs_running_and_the_finished_ones_only_within_the_window(
        fault_case, job_class, worker_args):
    # Given: 50 ms jobs on 10 threads (or 2 processes of 5); FailOnceLedgerJob fails once and
    # waits in the retry set, so a second ledger line would be a second attempt for one failure
    case = fault_case(f"kill -9 x5 during 50 ms {job_class.__name__}s, runjobs {' '.join(worker_args)}")
    jids = [h.jid for h in job_class.perform_bulk([(0.05,)] * 3_000)]
    worker = case.worker(*worker_args)
    counts = []

    # When: five times, a worker process holding jobs is killed -9 (a child, with --processes:
    # the supervisor forks another); with one process, another is started at once
    for kill in range(1, 6):
        wait_for(lambda: case.runs_count() >= 400 * kill, 60, f"{400 * kill} jobs performed")
        victim = wait_for(lambda: next(
            (i for i in case.live_identities() if not gone(int(i.rsplit(":", 2)[1])) and case.in_flight(i)), None,
        ), 30, "a worker holding jobs")
        pid = int(victim.rsplit(":", 2)[1])
        counts.append(case.kill9_and_count(pid, victim, f"kill {kill}"))
        if pid == worker.pid:
            worker.wait()
            worker = case.worker(*worker_args)

    # Then: every job ran (or failed once); what ran twice was in flight at a kill.  A job
    # that had finished runs again only if the kill fell between its end and its ack (a
    # failure's window is longer by its traceback, docs/guarantees.rst); how many that is per
    # kill is printed, not asserted: on the shared 2-core CI machine a --processes 2 kill
    # once sent back 2 (issue 21 is open on this)
    case.wait_accounted(jids, timeout=120)
    in_flight = set().union(*(c.finished | c.running for c in counts))
    case.check(jids, in_flight, kills=len(counts))
    if job_class is FailOnceLedgerJob:
        wait_for(lambda: case.client.zcard("retry") == len(jids), 30, "every job in the retry set")
