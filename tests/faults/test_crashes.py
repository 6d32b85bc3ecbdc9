"""Fault case 6, and job timeouts: jobs that kill their worker, exhaust memory or run too long.

* A job that ends its process (``os._exit``, SIGKILL as the OOM killer sends) under
  ``--processes``: the supervisor replaces the process, another worker pushes the job back,
  and after ``MAX_CRASHES`` such deaths the job goes to the dead set as a poison job.
* A job that raises ``MemoryError`` fails and retries like any other; its process lives on.
* A job past its ``timeout``: ``JobTimeout`` is raised in its thread (a failure that retries);
  one blocked in C code past the grace, under ``--processes``, has its process replaced.

Jobs in flight at a crash are the ones the worker itself counted (the ``crashes`` hash), so
only those may have run twice.
"""

import json

import pytest

from tests.faults.harness import wait_for
from tests.faults.jobs import BlockedPastTimeoutJob, CrashJob, LedgerJob, LoopPastTimeoutJob, MemoryHogJob

pytestmark = pytest.mark.slow


def ledger_jobs(count, first=0):
    return [handle.jid for handle in LedgerJob.perform_bulk([(n,) for n in range(first, first + count)])]


def crashed_jids(case):
    """jids a worker counted as in flight at a crash (the buried ones are no longer there)."""
    return {field for field in case.client.hkeys("crashes") if ":" not in field}


def test_poison_jobs_go_to_the_dead_set_after_max_crashes_and_every_other_job_runs(fault_case):
    # Given: two jobs that end their process, one that runs out of memory, 900 ordinary jobs,
    # and two worker processes of two threads
    case = fault_case("case 6: os._exit / SIGKILL / MemoryError inside perform (--processes 2)")
    ordinary = ledger_jobs(300)
    exits = CrashJob.perform_later("exit").jid
    ordinary += ledger_jobs(300, 300)
    killed = CrashJob.perform_later("sigkill").jid
    hog = MemoryHogJob.perform_later().jid
    ordinary += ledger_jobs(300, 600)
    supervisor = case.worker("--processes", "2", "-c", "2", settings={"MAX_CRASHES": 3})

    # When: they run
    case.wait_accounted(ordinary + [exits, killed, hog], timeout=90)

    # Then: each crashing job is dead as a poison job after three crashes, the hog after its retry
    dead = case.dead()
    for jid in (exits, killed):
        assert dead[jid]["dead_reason"] == "its worker process died 3 times while running it (BGJOBS['MAX_CRASHES'])"
        assert dead[jid]["error_class"] == "django_bgjobs.errors.PoisonJobError"
    assert dead[hog]["error_class"] == "MemoryError"
    assert dead[hog]["dead_reason"] == "retries exhausted (1 of 1)"
    # The supervisor lived through it all and still runs two processes
    log = case.log(supervisor)
    replaced = log.count("died (exit code 13)") + log.count("died (killed by SIGKILL)")
    assert replaced == 6
    assert supervisor.poll() is None
    wait_for(lambda: len(case.live_identities()) == 2, 10, "two live worker processes")
    figures = case.check(ordinary + [exits, killed, hog], crashed_jids(case), processes_replaced=replaced)
    assert figures.dead == 3 and figures.performed == len(ordinary)


def test_job_past_its_timeout_fails_and_retries_and_the_worker_goes_on_when_run_in_threads(fault_case):
    # Given: jobs that loop in Python for 5 s (0.5 s timeout), one blocked in C for 1.5 s, and
    # 100 ordinary jobs, in one worker process of 3 threads
    case = fault_case("job timeouts, one process (threads)")
    looping = [LoopPastTimeoutJob.perform_later(5).jid for _ in range(2)]
    blocked = BlockedPastTimeoutJob.perform_later(1.5).jid
    ordinary = ledger_jobs(100)
    worker = case.worker("-c", "3", settings={"JOB_TIMEOUT_GRACE_S": 0.3})

    # When
    case.wait_accounted(looping + [blocked] + ordinary, timeout=30)

    # Then: each timed out twice (the first attempt and its one retry) and is dead; the
    # blocked one was only reached when its C call returned, and the grace passing was logged
    dead = case.dead()
    for jid in looping + [blocked]:
        assert dead[jid]["error_class"] == "django_bgjobs.errors.JobTimeout"
        assert dead[jid]["error_message"].endswith("ran past its timeout of 0.5s")
        assert dead[jid]["dead_reason"] == "retries exhausted (1 of 1)"
    assert "BlockedPastTimeoutJob jid=%s is still running 0.8s after its timeout" % blocked in case.log(worker)
    assert worker.poll() is None
    figures = case.check(looping + [blocked] + ordinary)
    assert figures.dead == 3 and figures.performed == len(ordinary) and figures.duplicates == 0


def test_process_is_replaced_and_the_job_retried_when_a_job_blocked_in_c_runs_past_timeout_and_grace(fault_case):
    # Given: a job that sleeps 30 s in one C call (0.5 s timeout, 0.5 s grace), ordinary jobs,
    # two worker processes of one thread, a 1 s shutdown timeout
    case = fault_case("job timeouts, --processes 2: blocked job, process replaced")
    blocked = BlockedPastTimeoutJob.perform_later(30).jid
    ordinary = ledger_jobs(200)
    supervisor = case.worker("--processes", "2", "-c", "1", "-t", "1", settings={"JOB_TIMEOUT_GRACE_S": 0.5})

    # When
    case.wait_accounted([blocked] + ordinary, timeout=60)

    # Then: failed twice, each time its process was replaced; the supervisor carried on
    [entry] = [json.loads(raw) for raw in case.client.zrange("dead", 0, -1)]
    assert entry["jid"] == blocked
    assert entry["error_class"] == "django_bgjobs.errors.JobTimeout"
    assert entry["error_message"].endswith("its worker process was replaced")
    assert entry["dead_reason"] == "retries exhausted (1 of 1)"
    wait_for(lambda: case.log(supervisor).count("died (exit code 3)") == 2, 10, "the second replacement")
    assert supervisor.poll() is None
    figures = case.check([blocked] + ordinary, processes_replaced=2)
    assert figures.dead == 1 and figures.duplicates == 0
