"""Fault case 4: Redis at its ``maxmemory``.

With ``noeviction`` (the policy to use) a full Redis refuses writes: ``perform_later`` raises
``EnqueueError`` saying so, and every job it did take runs once memory is free again.  With
an evicting policy Redis would drop keys instead, jobs among them, so ``runjobs`` and
``manage.py check --deploy`` warn at start.
"""

import time

import pytest
import redis as redis_lib
from django.core.checks import run_checks

from django_bgjobs import EnqueueError
from tests.faults.harness import wait_for
from tests.faults.jobs import LedgerJob

pytestmark = pytest.mark.slow

FILLER = "x" * 64 * 1024


def fill(client):
    """Write filler until Redis refuses a write, then lower its maxmemory 1 MB below what it
    uses, so it stays full whatever small buffers it frees; return how many keys it took."""
    for n in range(10_000):
        try:
            client.set(f"filler:{n}", FILLER)
        except redis_lib.exceptions.OutOfMemoryError:
            client.config_set("maxmemory", client.info("memory")["used_memory"] - 1024 * 1024)
            return n
    raise AssertionError("Redis never reached its maxmemory")


def test_enqueue_fails_clearly_and_accepted_jobs_all_run_when_redis_is_full_with_noeviction(fault_case):
    # Given: a 4 MB Redis with noeviction, 300 jobs waiting, then filled up, and a worker
    case = fault_case("case 4: Redis full (maxmemory, noeviction)",
                      redis_args=("--maxmemory", "4mb", "--maxmemory-policy", "noeviction"))
    accepted = [handle.jid for handle in LedgerJob.perform_bulk([(n,) for n in range(300)])]
    fillers = fill(case.client)
    worker = case.worker("-c", "3")

    # When: the web side enqueues into the full Redis
    refused, took_s = 0, []
    for n in range(20):
        started = time.monotonic()
        try:
            accepted.append(LedgerJob.perform_later(n).jid)
        except EnqueueError as exc:
            refused += 1
            took_s.append(time.monotonic() - started)
            message = str(exc)

    # Then: each enqueue failed at once, saying why, and wrote nothing
    assert refused == 20
    assert "is full (it reached its maxmemory and its maxmemory-policy is noeviction" in message
    assert max(took_s) < 1
    assert case.client.llen("queue:default") == 300
    # A full Redis refuses the worker's writes too (its heartbeat, moving a job in flight):
    # it waits, alive, and runs nothing
    wait_for(lambda: "command not allowed when used memory" in case.log(worker), 10, "the worker refused")
    assert case.runs_count() == 0 and worker.poll() is None

    # And once memory is free again, the worker starts on its own and every accepted job runs
    freed_at = time.monotonic()
    case.client.delete(*[f"filler:{n}" for n in range(fillers)])
    case.client.config_set("maxmemory", "4mb")
    case.identity_of(worker.pid)
    accepted += [handle.jid for handle in LedgerJob.perform_bulk([(n,) for n in range(300, 400)])]
    case.wait_accounted(accepted, timeout=30)
    figures = case.check(accepted, refused_at_enqueue=refused, enqueue_error_s_max=max(took_s),
                         drained_s_after_freeing=time.monotonic() - freed_at)
    assert figures.performed == len(accepted) and figures.duplicates == 0


def test_worker_and_check_deploy_warn_that_jobs_may_be_lost_when_redis_may_evict_keys(fault_case):
    # Given: Redis with an evicting policy
    case = fault_case("case 4b: Redis with maxmemory-policy allkeys-lru",
                      redis_args=("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"))

    # When
    worker = case.worker("-c", "1")
    case.identity_of(worker.pid)
    messages = run_checks(include_deployment_checks=True, tags=["redis"])

    # Then: both say jobs can be lost, and how to fix it
    wait_for(lambda: "maxmemory-policy is 'allkeys-lru'" in case.log(worker), 10, "the worker's warning")
    [line] = [line for line in case.log(worker).splitlines() if "maxmemory-policy is" in line]
    assert " WARNING " in line and "noeviction" in line
    assert [m.id for m in messages] == ["django_bgjobs.W050"]


def test_worker_says_nothing_of_eviction_when_redis_policy_is_noeviction(fault_case):
    case = fault_case("case 4c: Redis with noeviction")

    worker = case.worker("-c", "1")
    case.identity_of(worker.pid)

    assert "maxmemory-policy" not in case.log(worker)
    assert run_checks(include_deployment_checks=True, tags=["redis"]) == []
