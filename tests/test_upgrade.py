"""Upgrade safety: a Redis filled by release 0.1.0 is read, run and cleaned by this code.

``tests/fixtures/redis_0_1_0.json`` holds every key 0.1.0's own client and ``runjobs``
processes wrote in real use (its maker, ``tests/fixtures/make_redis_0_1_0.py``, says how):
payloads with float seconds, plain-list ``error_backtrace``, ``at`` inside scheduled
payloads and ``crashes`` twice; a killed worker's process hash, ``:work`` hash and in-flight
list; the ``crashes`` hash; stats and metrics keys; a unique lock; two batches; cron state;
a ``django.tasks`` result.  Each test loads it as 0.1.0 left it, TTLs included.
"""

import json
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings
from django.urls import reverse

from django_bgjobs import keys
from django_bgjobs.api import (
    BatchSet, CronSet, DeadSet, JobMetrics, ProcessSet, Queue, RetrySet, ScheduledSet, Stats, UniqueLocks, WorkSet,
)
from tests.admin_support import ADMIN, PAGES, operator, operator_client  # noqa: F401 - fixtures
from tests.helpers import read_log, start_worker, stop_worker, wait_until
from tests.testapp.jobs import performed

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "redis_0_1_0.json").read_text())
IDS = FIXTURE["ids"]
DEAD_WORKER = next(key for key, spec in FIXTURE["keys"].items() if key.endswith(":work"))[: -len(":work")]


def load_0_1_0(redis):
    """Write the fixture's keys as 0.1.0 left them, each with its remaining TTL."""
    pipe = redis.pipeline(transaction=False)
    for key, spec in FIXTURE["keys"].items():
        kind, value = spec["type"], spec["value"]
        if kind == "string":
            pipe.set(key, value)
        elif kind == "list":
            pipe.rpush(key, *value)
        elif kind == "set":
            pipe.sadd(key, *value)
        elif kind == "zset":
            pipe.zadd(key, {member: score for member, score in value})
        elif kind == "hash":
            pipe.hset(key, mapping=value)
        if spec["pttl"] > 0:
            pipe.pexpire(key, spec["pttl"])
    pipe.execute()


def expire_dead_worker(redis):
    """The killed worker's heartbeat runs out, as it would HEARTBEAT_TTL_S after its death."""
    redis.delete(keys.process(DEAD_WORKER), keys.work(DEAD_WORKER))


def args_of(entries):
    return sorted(str(entry.args[0]) for entry in entries)


def test_the_fixture_holds_every_kind_of_key_0_1_0_writes():
    names = set(FIXTURE["keys"])
    for expected in ("queues", "queue:default", "queue:low", "schedule", "retry", "dead", "processes",
                     "inflight-owners", "crashes", "batches", "stat:processed", "stat:failed", "cron:schedules",
                     "paused", f"{DEAD_WORKER}-signals", f"b-{IDS['failed_bid']}-failinfo",
                     f"b-{IDS['failed_bid']}-died"):
        assert expected in names
    for prefix in ("j|", "unique:", "b-", "cron:state:", "task:result:", "inflight:", "stat:processed:"):
        assert any(name.startswith(prefix) for name in names), prefix
    assert {keys.process(DEAD_WORKER), keys.work(DEAD_WORKER)} <= names
    (slow,) = FIXTURE["keys"][keys.inflight(DEAD_WORKER, "default")]["value"]
    assert slow.count('"crashes"') == 2
    for member, _ in FIXTURE["keys"]["dead"]["value"]:
        assert isinstance(json.loads(member)["error_backtrace"], list)


def test_the_api_reads_what_0_1_0_wrote(redis):
    # Given
    load_0_1_0(redis)

    # Then: queues, sets and jobs, with 0.1.0's float seconds and list backtraces
    assert {"queued in 0.1.0", "tagged arguments"} <= set(args_of(Queue("default")))
    assert args_of(Queue("low")) == ["low queue in 0.1.0"]
    scheduled = sorted(ScheduledSet(), key=lambda entry: entry.score)
    assert [entry.args[0] for entry in scheduled] == ["scheduled in 0.1.0, due at once", "scheduled in 0.1.0 for 2036"]
    assert scheduled[1].score > scheduled[0].score + 3000 * 86400
    (retrying,) = RetrySet()
    assert retrying.error_class == "tests.testapp.jobs.JobFailure"
    assert retrying.retry_count == 0 and retrying.failed_at > 1.7e9
    assert any("JobFailure" in line for line in retrying.error_backtrace)
    assert sorted(entry.error_message for entry in DeadSet()) == ["batch member dies in 0.1.0", "dies at once in 0.1.0"]
    assert Queue("critical").paused

    # Then: the killed worker, its job and counters
    assert ProcessSet().get(DEAD_WORKER).concurrency == 2
    identity, _, work = WorkSet().find_work_by_jid(IDS["slow_jid"])
    assert identity == DEAD_WORKER and work["job"].klass == "tests.testapp.jobs.SlowJob"
    written = {name: int(FIXTURE["keys"][f"stat:{name}"]["value"]) for name in ("processed", "failed")}
    assert written["processed"] >= 8 and written["failed"] == 3
    assert (Stats().processed, Stats().failed) == (written["processed"], written["failed"])
    minute = next(name for name in FIXTURE["keys"] if name.startswith("j|"))
    metrics = JobMetrics(minutes=60, now=FIXTURE["generated_at"]).classes()
    assert any(row.name == "tests.testapp.jobs.NoopJob" for row in metrics), minute

    # Then: features' keys
    (lock,) = UniqueLocks()
    assert lock.klass == "tests.testapp.unique_batch_jobs.UntilExecutedJob"
    pending, done = BatchSet().get(IDS["pending_bid"]), BatchSet().get(IDS["done_bid"])
    assert (pending.total, pending.pending, pending.done) == (2, 2, False)
    assert done.success_at is not None and done.done
    failed = BatchSet().get(IDS["failed_bid"])
    assert (failed.total, failed.dead, failed.failures) == (1, 1, 1) and failed.complete_at is not None
    (cron,) = CronSet()
    assert cron.name == "every-two-seconds" and cron.last_jid


def test_every_admin_page_shows_what_0_1_0_wrote(operator_client, redis):  # noqa: F811
    # Given
    load_0_1_0(redis)
    jid_of = {entry.args[0]: entry.jid for entry in [*Queue("default"), *ScheduledSet(), *RetrySet(), *DeadSet()]}

    # When / Then: every page, and one job of each place, is shown
    for name, args in PAGES:
        assert operator_client.get(reverse(name, args=args)).status_code == 200, name
    details = [
        ("admin:django_bgjobs_queue_job", ["default", jid_of["queued in 0.1.0"]], "queued in 0.1.0"),
        ("admin:django_bgjobs_scheduled_job", [jid_of["scheduled in 0.1.0 for 2036"]], "for 2036"),
        ("admin:django_bgjobs_retries_job", [jid_of["fails in 0.1.0, retried later"]], "JobFailure"),
        ("admin:django_bgjobs_dead_job", [jid_of["dies at once in 0.1.0"]], "dies at once in 0.1.0"),
        ("admin:django_bgjobs_batch", [IDS["pending_bid"]], "pending in 0.1.0"),
    ]
    for name, args, text in details:
        response = operator_client.get(reverse(name, args=args))
        assert response.status_code == 200 and text in response.content.decode(), name
    assert IDS["slow_jid"][:8] in operator_client.get(reverse("admin:django_bgjobs_processes")).content.decode()


def test_the_api_cleans_what_0_1_0_left(redis):
    # Given
    load_0_1_0(redis)
    expire_dead_worker(redis)

    # When / Then: the dead worker leaves the process list
    assert ProcessSet().stale() == [DEAD_WORKER]
    assert ProcessSet().cleanup() == 1
    assert DEAD_WORKER not in redis.smembers(keys.processes())

    # When / Then: the unique lock is released by hand
    (lock,) = UniqueLocks()
    assert UniqueLocks().release(lock.key)
    assert not list(UniqueLocks())

    # When / Then: a kill trims the dead set to its cap, dropping 0.1.0's older death
    (retrying,) = RetrySet()
    with override_settings(BGJOBS={**settings.BGJOBS, "DEAD_MAX_JOBS": 1}):
        assert retrying.kill()
    assert [entry.jid for entry in DeadSet()] == [retrying.jid]


@pytest.mark.slow
def test_a_worker_runs_and_cleans_what_0_1_0_left(redis):
    # Given: 0.1.0's Redis, and the killed worker's heartbeat ran out
    load_0_1_0(redis)
    expire_dead_worker(redis)
    due_retry_jid = next(iter(RetrySet())).jid

    # When
    worker = start_worker("-c", "2")
    try:
        ran = lambda: {str(entry["args"][0]) for entry in performed(redis) if entry.get("args")}  # noqa: E731
        expected = {"queued in 0.1.0", "low queue in 0.1.0", "scheduled in 0.1.0, due at once",
                    "batch member 1 of 2", "batch member 2 of 2", "unique in 0.1.0", "7",
                    "fails in 0.1.0, retried later"}
        try:
            wait_until(lambda: expected <= ran(), timeout=60)
        except AssertionError:
            raise AssertionError(f"not run: {expected - ran()}; worker log:\n{read_log(worker)[-3000:]}") from None
        # The job 0.1.0's workers died with twice dies a third time with the killed worker: a poison job
        wait_until(lambda: any(entry.jid == IDS["slow_jid"] for entry in DeadSet()), timeout=30)
    finally:
        assert stop_worker(worker) == 0

    # Then: the queues drained, the due entries moved and ran, the 2036 one waits
    assert Queue("default").size() == 0 and Queue("low").size() == 0
    assert [entry.args[0] for entry in ScheduledSet()] == ["scheduled in 0.1.0 for 2036"]
    (retried,) = RetrySet()  # FailingJob failed again, counted on 0.1.0's retry_count; nothing else failed
    assert retried.jid == due_retry_jid and retried.retry_count == 1
    # Then: the dead worker's in-flight job was taken back, and what it held cleaned
    poison = DeadSet().find_job(IDS["slow_jid"])
    assert "died 3 times" in poison.dead_reason
    assert not redis.exists(keys.inflight(DEAD_WORKER, "default"))
    assert not redis.hexists(keys.inflight_owners(), DEAD_WORKER)
    assert not redis.hexists(keys.crashes(), IDS["slow_jid"])
    # Then: the unique lock was freed by its run, the pending batch succeeded, the task finished
    assert not list(UniqueLocks())
    pending = BatchSet().get(IDS["pending_bid"])
    assert pending.done and pending.success_at is not None
    (result_key,) = [name for name in FIXTURE["keys"] if name.startswith("task:result:")]
    assert json.loads(redis.get(result_key))["status"] == "SUCCESSFUL"
