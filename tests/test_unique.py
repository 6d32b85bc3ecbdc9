"""Unique jobs: lock options checked at class creation, the enqueue side (``unique/client.py``: a guard on ``lua/push.lua``)
and the worker side (``unique/server.py``'s server middleware, driven through :meth:`Processor.process_one`).

End-to-end races with real ``runjobs`` processes are in ``test_unique_e2e.py``.
"""

import json
import threading
import time
from datetime import timedelta

import pytest
import redis as redis_lib
from django.db import transaction

from django_bgjobs import Job, UniqueJobError, keys, serialization, unique
from django_bgjobs.unique import server as unique_server
from django_bgjobs.api import UniqueLocks
from django_bgjobs.connection import get_redis
from django_bgjobs.errors import ConfigurationError, Discard, EnqueueError
from django_bgjobs.testing import capture_jobs
from django_bgjobs.worker.attempt import Attempt
from django_bgjobs.worker.fetcher import Fetcher
from django_bgjobs.worker.launcher import Launcher
from django_bgjobs.worker.poller import Poller
from django_bgjobs.worker.processor import Processor
from django_bgjobs.worker.queues import QueueOrder
from tests.testapp.jobs import JobFailure, RecordJob, performed, record
from tests.testapp.unique_batch_jobs import (
    FlakyUniqueJob,
    RaiseOnConflictJob,
    RejectOnConflictJob,
    ReplaceOnConflictJob,
    ReportJob,
    UntilAndWhileExecutingJob,
    UntilExecutedJob,
    UntilExecutingJob,
    UntilExpiredJob,
    WhileExecutingJob,
    WhileExecutingLogJob,
    WhileExecutingRaiseJob,
    WhileExecutingRejectJob,
)

DAY_S = 24 * 60 * 60


def lock_of(redis, handle_or_payload):
    digest = handle_or_payload["lock_digest"]
    return redis.hgetall(keys.unique_lock(digest))


def queued(redis, queue="default"):
    return [json.loads(raw) for raw in redis.lrange(f"queue:{queue}", 0, -1)]


def scheduled(redis):
    return [json.loads(raw) for raw in redis.zrange("schedule", 0, -1)]


# -- options, checked when the class is made ----------------------------------------------------


@pytest.mark.parametrize(("attrs", "message"), [
    ({"lock": "until_done"}, "lock is 'until_done'"),
    ({"lock": "until_expired"}, "needs a lock_ttl"),
    ({"lock": "until_executed", "lock_ttl": 0}, "more than 0 seconds"),
    ({"lock": "until_executed", "lock_ttl": 10**400}, "lock_ttl must be .* at most 100 years"),
    ({"lock": "until_executed", "lock_ttl": 1e308}, "at most 100 years, got 1e\\+308"),
    ({"lock": "until_executed", "lock_ttl": "1h"}, "seconds or a timedelta"),
    ({"lock": "until_executed", "on_conflict": "reschedule"}, "does not apply to a until_executed lock"),
    ({"lock": "while_executing", "on_conflict": "replace"}, "does not apply to a while_executing lock"),
    ({"lock": "until_executed", "on_conflict": "ignore"}, "'ignore'"),
    ({"on_conflict": "log"}, "sets on_conflict but no lock"),
    ({"lock_ttl": 10}, "sets lock_ttl but no lock"),
    ({"lock": "until_executed", "on_conflict": {"server": "reschedule"}}, "takes no run lock"),
    ({"lock": "while_executing", "on_conflict": {"client": "log"}}, "not checked at enqueue"),
    ({"lock": "until_and_while_executing", "on_conflict": {"client": "reschedule"}}, "is 'reschedule'; use one of log"),
    ({"lock": "until_executed", "lock_args": "user_id"}, "lock_args must be a method"),
    ({"unique": "until_executed"}, "did you mean lock"),
])
def test_job_class_is_refused_when_its_lock_options_are_wrong(attrs, message):
    with pytest.raises(ConfigurationError, match=message):
        type("BadLockJob", (Job,), {"perform": lambda self: None, "__module__": __name__, **attrs})


@pytest.mark.parametrize(("lock", "on_conflict", "expected"), [
    ("until_executed", None, ("log", None)),
    ("while_executing", None, (None, "reschedule")),
    ("until_and_while_executing", None, ("log", "reschedule")),
    ("until_and_while_executing", "reject", ("reject", "reject")),
    ("until_and_while_executing", "replace", ("replace", "reschedule")),
    ("until_and_while_executing", {"client": "raise", "server": "log"}, ("raise", "log")),
    ("while_executing", "raise", (None, "raise")),
])
def test_on_conflict_goes_to_the_side_it_fits_when_the_class_is_made(lock, on_conflict, expected):
    job_class = type("FineLockJob", (Job,), {
        "perform": lambda self: None, "__module__": __name__, "lock": lock, "on_conflict": on_conflict,
    })

    options = job_class._lock_options
    assert (options.client_conflict, options.server_conflict) == expected


def test_lock_ttl_counts_from_when_the_job_is_due_when_given_as_a_timedelta():
    options = ReportJob._lock_options

    assert options.ttl_s == 3600
    assert options.ttl_ms(60) == 3_660_000


# -- the lock's digest ----------------------------------------------------------------------


def test_equal_jobs_share_a_lock_and_other_arguments_or_queues_do_not(redis):
    # Given
    payloads = {
        "a": UntilExecutedJob.perform_later("a").jid,
        "a-again": UntilExecutedJob.perform_later("a"),
        "b": UntilExecutedJob.perform_later("b").jid,
        "a-low": UntilExecutedJob.set(queue="low").perform_later("a").jid,
    }

    # Then
    assert payloads["a-again"] is None
    digests = {p["jid"]: p["lock_digest"] for p in queued(redis) + queued(redis, "low")}
    assert len(set(digests.values())) == 3
    assert set(digests) == {payloads["a"], payloads["b"], payloads["a-low"]}


def test_lock_covers_only_lock_args_when_the_class_defines_them(redis):
    # When
    first = ReportJob.perform_later(7, "sales", note="monthly")
    second = ReportJob.perform_later(7, "sales", note="weekly")
    other = ReportJob.perform_later(7, "costs")

    # Then
    assert first is not None and other is not None
    assert second is None
    assert [p["jid"] for p in reversed(queued(redis))] == [first.jid, other.jid]


def test_digest_is_the_same_when_keyword_arguments_come_in_another_order():
    def digest(**kwargs):
        encoded = serialization.encode_args((), kwargs)
        return unique.lock_digest(UntilExecutedJob, "default", (), kwargs, encoded)

    assert digest(a=1, b=2) == digest(b=2, a=1)
    assert digest(a=1, b=2) != digest(a=2, b=1)


# -- the enqueue side -----------------------------------------------------------------------


def test_duplicate_is_dropped_and_perform_later_returns_none_when_on_conflict_is_log(redis, caplog):
    # Given
    first = UntilExecutedJob.perform_later("report")

    # When
    with caplog.at_level("INFO", logger="django_bgjobs.unique"):
        second = UntilExecutedJob.perform_later("report")

    # Then
    assert second is None
    [payload] = queued(redis)
    assert payload["jid"] == first.jid
    assert payload["lock"] == "until_executed"
    lock = lock_of(redis, payload)
    assert lock["jid"] == first.jid
    assert lock["class"] == UntilExecutedJob.name
    assert "not enqueued" in caplog.text and first.jid in caplog.text
    assert DAY_S - 5 <= redis.ttl(keys.unique_lock(payload["lock_digest"])) <= DAY_S


def test_duplicate_raises_unique_job_error_naming_the_holder_when_on_conflict_is_raise(redis):
    # Given
    first = RaiseOnConflictJob.perform_later("report")

    # When
    with pytest.raises(UniqueJobError) as caught:
        RaiseOnConflictJob.perform_later("report")

    # Then
    assert caught.value.holder_jid == first.jid
    assert [p["jid"] for p in queued(redis)] == [first.jid]


def test_duplicate_goes_to_the_dead_set_with_a_reason_when_on_conflict_is_reject(redis):
    # Given
    first = RejectOnConflictJob.perform_later("report")

    # When
    second = RejectOnConflictJob.perform_later("report")

    # Then
    assert second is None
    [dead] = [json.loads(raw) for raw in redis.zrange("dead", 0, -1)]
    assert dead["jid"] != first.jid
    assert "same until_executed lock" in dead["dead_reason"]
    assert dead["error_class"] == "django_bgjobs.errors.UniqueJobError"
    assert [p["jid"] for p in queued(redis)] == [first.jid]


def test_waiting_holder_is_removed_and_the_new_job_takes_the_lock_when_on_conflict_is_replace(redis):
    # Given
    first = ReplaceOnConflictJob.perform_later("report", 1)

    # When
    second = ReplaceOnConflictJob.perform_later("report", 2)

    # Then
    [payload] = queued(redis)
    assert payload["jid"] == second.jid
    assert lock_of(redis, payload)["jid"] == second.jid
    assert first.jid != second.jid


def test_scheduled_holder_is_removed_when_on_conflict_is_replace(redis):
    # Given
    ReplaceOnConflictJob.set(wait=timedelta(hours=1)).perform_later("report", 1)

    # When
    second = ReplaceOnConflictJob.perform_later("report", 2)

    # Then
    assert scheduled(redis) == []
    assert [p["jid"] for p in queued(redis)] == [second.jid]


def test_holder_moved_to_its_queue_by_the_poller_is_found_by_jid_when_on_conflict_is_replace(redis):
    # Given: scheduled, then moved by the poller (which rewrites its enqueued_at)
    from django_bgjobs.worker.poller import Poller

    first = ReplaceOnConflictJob.set(wait=10).perform_later("report", 1)
    RaiseOnConflictJob.perform_bulk([(n,) for n in range(1_200)])  # others in the same queue
    assert Poller().enqueue_due(now=time.time() + 60) == 1
    assert first.jid in {p["jid"] for p in queued(redis)}

    # When
    second = ReplaceOnConflictJob.perform_later("report", 2)

    # Then
    jids = {p["jid"] for p in queued(redis)}
    assert first.jid not in jids and second.jid in jids
    assert len(jids) == 1_201


def test_scheduled_job_takes_its_lock_at_enqueue_for_its_wait_plus_the_default_ttl(redis):
    # When
    first = UntilExecutedJob.set(wait=timedelta(hours=2)).perform_later("later")
    second = UntilExecutedJob.perform_later("later")

    # Then
    assert second is None
    [payload] = scheduled(redis)
    assert payload["jid"] == first.jid
    ttl = redis.ttl(keys.unique_lock(payload["lock_digest"]))
    assert 2 * 3600 + DAY_S - 5 <= ttl <= 2 * 3600 + DAY_S


def test_until_expired_lock_lives_for_its_lock_ttl(redis):
    # When
    UntilExpiredJob.perform_later("x")

    # Then
    [payload] = queued(redis)
    assert 25 <= redis.ttl(keys.unique_lock(payload["lock_digest"])) <= 30


def test_bulk_enqueue_drops_duplicates_within_the_bulk_and_returns_none_for_them(redis):
    # When
    handles = UntilExecutedJob.perform_bulk([("a",), ("b",), ("a",), ("c",), ("b",)])

    # Then
    assert [h is None for h in handles] == [False, False, True, False, True]
    assert sorted(p["args"][0] for p in queued(redis)) == ["a", "b", "c"]


def test_while_executing_jobs_are_all_enqueued_because_their_lock_is_taken_at_start(redis):
    # When
    handles = WhileExecutingJob.perform_bulk([("same",)] * 3)

    # Then
    assert all(handles)
    assert len(queued(redis)) == 3
    assert redis.keys("unique:*") == []


@pytest.mark.django_db(transaction=True)
def test_lock_is_taken_at_commit_and_raise_is_logged_when_the_push_waits_for_a_transaction(redis, caplog):
    # Given
    RaiseOnConflictJob.perform_later("report")

    # When
    with transaction.atomic():
        handle = RaiseOnConflictJob.perform_later("report")
        assert len(queued(redis)) == 1

    # Then: too late to raise after the commit: logged instead
    assert handle is not None
    assert len(queued(redis)) == 1
    assert "not enqueued" in caplog.text


def test_nothing_is_locked_when_jobs_are_captured(redis):
    with capture_jobs() as jobs:
        UntilExecutedJob.perform_later("a")
        UntilExecutedJob.perform_later("a")

    assert len(jobs) == 2
    assert redis.keys("unique:*") == []


def test_exactly_one_of_many_threads_enqueues_when_they_race_for_one_lock(redis):
    # Given: 8 threads, each enqueueing the same job 50 times
    results = []
    start = threading.Barrier(8)

    def enqueue():
        start.wait()
        for _ in range(50):
            results.append(UntilExecutedJob.perform_later("race"))

    threads = [threading.Thread(target=enqueue) for _ in range(8)]

    # When
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then
    accepted = [r for r in results if r is not None]
    print(f"\nclient race: {len(results)} enqueues from 8 threads -> {len(accepted)} accepted, "
          f"{len(queued(redis))} queued")
    assert len(accepted) == 1
    assert len(queued(redis)) == 1


def test_no_lock_is_left_without_its_job_when_redis_refuses_the_push(redis):
    # Given: the queue's key holds a string, so the push of the job fails in its atomic step
    redis.set("queue:default", "not a list")

    # When
    with pytest.raises(EnqueueError, match="WRONGTYPE"):
        UntilExecutedJob.perform_later("report")

    # Then: no lock, so the same job can be enqueued once the queue is usable again
    assert redis.keys("unique:*") == []
    redis.delete("queue:default")
    assert UntilExecutedJob.perform_later("report") is not None
    assert len(queued(redis)) == 1 and len(redis.keys("unique:*")) == 1


def test_a_lost_reply_tried_again_counts_the_job_once_as_enqueued(redis):
    # Given: a job whose push went through, its reply lost: the client tries the same push again
    from django_bgjobs import client

    payload = UntilExecutedJob.set().build_payloads([(("report",), {})])[0]
    first = client.push(UntilExecutedJob, [dict(payload)], defer=False)

    # When
    again = client.push(UntilExecutedJob, [dict(payload)], defer=False)

    # Then: its own lock does not refuse it, and it is not written twice
    assert first[0]["jid"] == again[0]["jid"] == payload["jid"]
    assert [p["jid"] for p in queued(redis)] == [payload["jid"]]


def test_lock_keys_live_in_keys_py_and_take_the_prefix(settings, redis):
    settings.BGJOBS = {**settings.BGJOBS, "KEY_PREFIX": "app"}

    UntilExecutingJob.perform_later("x")
    UntilAndWhileExecutingJob.perform_later("x")

    locks = redis.keys("app:unique:*")
    assert len(locks) == 2


# -- the worker side ------------------------------------------------------------------------

IDENTITY = "test-host:4242:unique"
OTHER = "test-host:5353:other"
FAR_FUTURE_S = 4_000_000_000


def lock_state(payload):
    """``(enqueue lock holder, run lock holder)`` for a payload's digest, read now."""
    redis = get_redis()
    digest = payload["lock_digest"]
    holders = redis.hget(keys.unique_lock(digest), "jid"), redis.hget(keys.unique_run_lock(digest), "jid")
    return tuple(h.decode() if h else None for h in holders)


class _ProbeMixin:
    """Records the lock holders seen from inside ``perform``; fails when ``fail`` says so."""

    def perform(self, fail=None):
        record(self.jid, [fail], locks=lock_state(self.payload))
        if fail == "raise":
            raise JobFailure("probe fails")
        if fail == "discard":
            raise Discard("probe discards")


class ProbeUntilExecuting(_ProbeMixin, Job):
    lock = "until_executing"


class ProbeUntilExecuted(_ProbeMixin, Job):
    lock = "until_executed"
    lock_ttl = 60


class ProbeUntilExecutedNoRetry(_ProbeMixin, Job):
    lock = "until_executed"
    retry = False


class ProbeUntilExecutedDies(_ProbeMixin, Job):
    lock = "until_executed"
    retry = 0


class ProbeWhileExecuting(_ProbeMixin, Job):
    lock = "while_executing"


class ProbeUntilAndWhile(_ProbeMixin, Job):
    lock = "until_and_while_executing"


class ProbeUntilExpired(_ProbeMixin, Job):
    lock = "until_expired"
    lock_ttl = 120


@pytest.fixture
def processor(redis):
    # The worker's heartbeat exists, as a running worker's does.
    redis.hset(keys.process(IDENTITY), "beat", 1)
    return Processor(Fetcher(IDENTITY, QueueOrder(["critical", "default", "low"])))


def hold_run_lock(redis, payload, holder_jid="0" * 24, identity=OTHER, alive=True):
    """Make another job hold the run lock of ``payload``'s digest (its worker alive or not)."""
    redis.hset(keys.unique_run_lock(payload["lock_digest"]), mapping={
        "jid": holder_jid, "class": payload["class"], "heartbeat": keys.process(identity),
    })
    redis.expire(keys.unique_run_lock(payload["lock_digest"]), 600)
    if alive:
        redis.hset(keys.process(identity), "beat", 1)


def drain(processor, limit=200):
    count = 0
    while processor.process_one(block=False):
        count += 1
        assert count < limit
    return count


# The processor recycles Django database connections around each job, as in production.
worker_db = pytest.mark.django_db(transaction=True)


@worker_db
def test_until_executing_lock_is_freed_as_the_job_starts(redis, processor):
    # Given
    handle = ProbeUntilExecuting.perform_later()
    assert ProbeUntilExecuting.perform_later() is None

    # When
    processor.process_one(block=False)

    # Then: perform already saw the lock gone, and an equal job may be enqueued again
    [run] = performed()
    assert run["locks"] == [None, None]
    assert run["jid"] == handle.jid
    assert ProbeUntilExecuting.perform_later() is not None


@worker_db
def test_until_executed_lock_is_held_while_running_and_freed_on_success(redis, processor):
    handle = ProbeUntilExecuted.perform_later()

    processor.process_one(block=False)

    assert performed()[0]["locks"] == [handle.jid, None]
    assert redis.keys("unique:*") == []
    assert ProbeUntilExecuted.perform_later() is not None


@worker_db
def test_until_executed_lock_is_kept_through_retries_with_its_ttl_covering_the_wait(redis, processor):
    # Given
    ProbeUntilExecuted.perform_later("raise")

    # When
    processor.process_one(block=False)

    # Then: waiting in the retry set, still locked, the lock outliving the retry time by lock_ttl
    [payload] = [json.loads(raw) for raw in redis.zrange("retry", 0, -1)]
    retry_at = redis.zscore("retry", redis.zrange("retry", 0, -1)[0])
    lock_key = keys.unique_lock(payload["lock_digest"])
    assert redis.hget(lock_key, "jid") == payload["jid"]
    assert abs(redis.pttl(lock_key) / 1000 - (retry_at - time.time() + 60)) < 2
    assert ProbeUntilExecuted.perform_later("raise") is None


@worker_db
@pytest.mark.parametrize(("job_class", "fail"), [
    (ProbeUntilExecutedDies, "raise"), (ProbeUntilExecutedNoRetry, "raise"), (ProbeUntilExecuted, "discard"),
])
def test_until_executed_lock_is_freed_when_the_job_dies_or_is_dropped(redis, processor, job_class, fail):
    job_class.perform_later(fail)

    processor.process_one(block=False)

    assert redis.keys("unique:*") == []
    assert job_class.perform_later(fail) is not None


@worker_db
def test_until_expired_lock_stays_after_the_job_succeeds(redis, processor):
    handle = ProbeUntilExpired.perform_later()

    processor.process_one(block=False)

    [key] = redis.keys("unique:*")
    assert redis.hget(key, "jid") == handle.jid
    assert 100 < redis.ttl(key) <= 120
    assert ProbeUntilExpired.perform_later() is None


@worker_db
def test_while_executing_run_lock_is_held_while_running_and_freed_after_success_and_failure(redis, processor):
    # Given
    first = ProbeWhileExecuting.perform_later().jid
    second = ProbeWhileExecuting.perform_later().jid

    # When
    drain(processor)

    # Then
    assert [(r["jid"], r["locks"]) for r in performed()] == [(first, [None, first]), (second, [None, second])]
    assert redis.keys("unique:*") == []

    # And after a failure too
    ProbeWhileExecuting.perform_later("raise")
    processor.process_one(block=False)
    assert redis.keys("unique:*") == []


@worker_db
def test_job_moves_to_the_schedule_set_without_running_when_its_run_lock_is_held(redis, processor, settings):
    # Given: another live worker's job holds the run lock
    settings.BGJOBS = {**settings.BGJOBS, "UNIQUE_RESCHEDULE_S": 5}
    handle = ProbeWhileExecuting.perform_later()
    [payload] = queued(redis)
    hold_run_lock(redis, payload)

    # When
    before = time.time()
    ran = processor.process_one(block=False)

    # Then: not run, not in flight, scheduled 5 to 7.5 s later with the same jid
    assert ran is True and performed() == []
    assert redis.keys("inflight:*") == []
    [(raw, at)] = redis.zrange("schedule", 0, -1, withscores=True)
    assert json.loads(raw)["jid"] == handle.jid
    assert before + 5 <= at <= time.time() + 7.5
    assert processor.processed == 0  # a job put off is not a job processed

    # When: the holder finishes, and the job comes due
    redis.delete(keys.unique_run_lock(payload["lock_digest"]))
    Poller().enqueue_due(now=FAR_FUTURE_S)
    processor.process_one(block=False)

    # Then
    assert [r["jid"] for r in performed()] == [handle.jid]
    assert redis.keys("unique:*") == []
    assert processor.processed == 1


@worker_db
def test_run_lock_of_a_dead_worker_is_taken_over(redis, processor):
    # Given: the holder's worker has no heartbeat any more
    handle = ProbeWhileExecuting.perform_later()
    hold_run_lock(redis, queued(redis)[0], alive=False)

    # When
    processor.process_one(block=False)

    # Then
    assert performed()[0]["locks"] == [None, handle.jid]
    assert redis.keys("unique:*") == []


@worker_db
def test_recovered_job_takes_its_own_run_lock_back_after_its_worker_was_killed(redis, processor):
    # Given: a worker took the job and its run lock, then died (kill -9: nothing cleaned up)
    handle = ProbeWhileExecuting.perform_later()
    dead = Processor(Fetcher(OTHER, QueueOrder(["default"])))
    unit = dead.fetcher.fetch(block=False)
    redis.hset(keys.process(OTHER), "beat", 1)
    assert unique_server.JobLock.of(unit.payload).start(OTHER, time.time()) == "run"
    redis.hset(keys.inflight_owners(), OTHER, json.dumps(["default"]))
    redis.delete(keys.process(OTHER))  # its heartbeat expires

    # When: another worker pushes its jobs back and runs them
    assert Launcher(queues=["default"], concurrency=1, schedule=False).recover_orphans() == 1
    processor.process_one(block=False)

    # Then
    assert performed()[0]["locks"] == [None, handle.jid]
    assert redis.keys("unique:*") == []


@worker_db
def test_until_and_while_hands_the_enqueue_lock_over_for_the_run_lock_at_start(redis, processor):
    # Given
    handle = ProbeUntilAndWhile.perform_later()
    assert ProbeUntilAndWhile.perform_later() is None

    # When
    processor.process_one(block=False)

    # Then
    assert performed()[0]["locks"] == [None, handle.jid]
    assert redis.keys("unique:*") == []


@worker_db
def test_until_and_while_keeps_its_enqueue_lock_while_rescheduled(redis, processor):
    # Given
    handle = ProbeUntilAndWhile.perform_later()
    hold_run_lock(redis, queued(redis)[0])

    # When
    processor.process_one(block=False)

    # Then: waiting in the schedule set, still the holder of its enqueue lock
    assert performed() == []
    assert redis.zcard("schedule") == 1
    waiting = json.loads(redis.zrange("schedule", 0, -1)[0])
    assert lock_state(waiting) == (handle.jid, "0" * 24)
    assert "at" not in waiting and "enqueued_at" not in waiting  # as Sidekiq stores it: the score says when
    assert ProbeUntilAndWhile.perform_later() is None


@worker_db
@pytest.mark.parametrize(("job_class", "where"), [
    (WhileExecutingLogJob, "nowhere"), (WhileExecutingRejectJob, "dead"), (WhileExecutingRaiseJob, "retry"),
])
def test_job_whose_run_lock_is_held_goes_where_on_conflict_says(redis, processor, job_class, where):
    # Given
    handle = job_class.perform_later("k")
    [payload] = queued(redis)
    hold_run_lock(redis, payload)

    # When
    processor.process_one(block=False)

    # Then
    assert performed() == []
    places = {"dead": redis.zrange("dead", 0, -1), "retry": redis.zrange("retry", 0, -1),
              "schedule": redis.zrange("schedule", 0, -1), "inflight": redis.keys("inflight:*")}
    found = {name for name, members in places.items() if members}
    assert found == (set() if where == "nowhere" else {where})
    if where == "dead":
        assert "run lock" in json.loads(places["dead"][0])["dead_reason"]
        assert json.loads(places["dead"][0])["jid"] == handle.jid
    # The holder's lock is untouched
    assert redis.hget(keys.unique_run_lock(payload["lock_digest"]), "jid") == "0" * 24


@worker_db
def test_flaky_until_executed_job_keeps_its_lock_until_it_succeeds(redis, processor):
    # Given
    handle = FlakyUniqueJob.perform_later("k", 2)

    # When: two failures, each retried at once
    for _ in range(2):
        processor.process_one(block=False)
        assert FlakyUniqueJob.perform_later("k", 2) is None
        Poller().enqueue_due(now=FAR_FUTURE_S)
    processor.process_one(block=False)

    # Then
    assert [(r["jid"], r["attempt"]) for r in performed()] == [(handle.jid, 3)]
    assert redis.keys("unique:*") == []


@worker_db
def test_jobs_without_locks_or_batches_take_the_plain_acknowledgement(redis, processor, redis_url):
    # Given
    RecordJob.perform_later(1)
    UntilExecutedJob.perform_later("x")
    watcher = redis_lib.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)

    # When: every command the server runs is watched
    with watcher.monitor() as monitor:
        drain(processor)
        redis.get("end-of-drain")
        commands = []
        while not commands or commands[-1] != "GET end-of-drain":
            commands.append(monitor.next_command()["command"])
    watcher.close()

    # Then: one MULTI, the locked job's (its lock freed with its ack); the plain job left
    # with the next fetch call
    assert [c for c in commands if c == "MULTI"] == ["MULTI"]
    assert len(performed()) == 2


# -- the monitoring API ---------------------------------------------------------------------


def test_unique_locks_lists_the_held_locks_and_releases_one(redis):
    # Given
    first = UntilExecutedJob.perform_later("a")
    UntilExecutedJob.set(wait=60).perform_later("b")
    payload = [p for p in queued(redis) if p["jid"] == first.jid][0]
    hold_run_lock(redis, payload)

    # When
    locks = sorted(UniqueLocks(), key=lambda lock: (lock.kind, lock.jid))

    # Then
    assert [(lock.kind, lock.klass) for lock in locks] == [
        ("enqueue", UntilExecutedJob.name), ("enqueue", UntilExecutedJob.name), ("run", UntilExecutedJob.name),
    ]
    enqueue_lock = next(lock for lock in locks if lock.jid == first.jid)
    assert enqueue_lock.lock == "until_executed" and enqueue_lock.queue == "default"
    assert enqueue_lock.digest == payload["lock_digest"]
    assert DAY_S - 5 < enqueue_lock.ttl_s <= DAY_S
    assert [lock.key for lock in UniqueLocks().find(first.jid)] == [enqueue_lock.key]

    # When
    assert UniqueLocks().release(enqueue_lock.key) is True

    # Then
    assert UniqueLocks().get(enqueue_lock.key) is None
    assert UntilExecutedJob.perform_later("a") is not None
    with pytest.raises(ValueError):
        UniqueLocks().release("queue:default")


class StuckUniqueJob(_ProbeMixin, Job):
    lock = "until_executed"
    retry = 0
    timeout = 1


@worker_db
def test_lock_is_freed_when_the_watchdog_fails_a_stuck_job_of_a_replaced_process(redis):
    # Given: a job the watchdog gave up on, in its launcher's in-flight list
    handle = StuckUniqueJob.perform_later()
    launcher = Launcher(queues=["default"], concurrency=1, schedule=False)
    attempt = Attempt(launcher.fetcher.fetch(block=False), launcher.identity)
    attempt.prepare()
    launcher._stuck.append((launcher.manager.processors[0], attempt))

    # When
    launcher._fail_stuck()

    # Then: dead (retry = 0), out of flight, and its lock freed
    assert [json.loads(entry)["jid"] for entry in redis.zrange("dead", 0, -1)] == [handle.jid]
    assert redis.keys("inflight:*") == []
    assert redis.keys("unique:*") == []
