"""Jobs ended by hand through django_bgjobs.api (so the admin too): their unique locks are freed
and their batches told (django_bgjobs.job_end), as when a worker ends them.
"""

import json

import pytest

from django_bgjobs import Batch, BgJobsError
from django_bgjobs.api import DeadSet, Queue, RetrySet, ScheduledSet
from django_bgjobs.batches.client import CALLBACK_JOB_NAME
from django_bgjobs.worker.fetcher import Fetcher
from django_bgjobs.worker.processor import Processor
from django_bgjobs.worker.queues import QueueOrder
from tests.testapp.jobs import FailingJob, RecordJob
from tests.testapp.unique_batch_jobs import (
    RecordingCallback,
    UntilExecutedJob,
    UntilExecutingJob,
    UntilExpiredJob,
)

pytestmark = pytest.mark.django_db(transaction=True)


def lock_keys(redis):
    return sorted(redis.keys("unique:*"))


def callback_events(redis):
    return [json.loads(raw)["args"][1] for raw in redis.lrange("queue:default", 0, -1)
            if json.loads(raw)["class"] == CALLBACK_JOB_NAME]


@pytest.mark.parametrize("job_class", [UntilExecutedJob, UntilExecutingJob])
def test_deleting_a_waiting_unique_job_frees_its_lock_so_an_equal_one_can_be_enqueued(redis, job_class):
    handle = job_class.perform_later("k")
    assert job_class.perform_later("k") is None  # held

    assert Queue("default").find_job(handle.jid).delete() is True

    assert lock_keys(redis) == []
    assert job_class.perform_later("k") is not None


def test_deleting_an_until_expired_job_keeps_its_lock_for_its_whole_ttl(redis):
    handle = UntilExpiredJob.perform_later("k")
    Queue("default").find_job(handle.jid).delete()
    assert len(lock_keys(redis)) == 1 and UntilExpiredJob.perform_later("k") is None


def test_deleting_or_killing_a_scheduled_unique_job_frees_its_lock(redis):
    first = UntilExecutingJob.set(wait=3600).perform_later("a")
    second = UntilExecutingJob.set(wait=3600).perform_later("b")

    assert ScheduledSet().find_job(first.jid).delete() is True
    assert ScheduledSet().find_job(second.jid).kill() is True

    assert lock_keys(redis) == []
    assert [entry.jid for entry in DeadSet()] == [second.jid]


def test_clearing_a_queue_frees_the_locks_of_its_jobs_and_leaves_other_queues_alone(redis):
    for n in range(5):
        UntilExecutedJob.perform_later(n)
    RecordJob.perform_later("plain")
    other = UntilExecutedJob.set(queue="low").perform_later("elsewhere")

    assert Queue("default").clear() == 6

    assert redis.llen("queue:default") == 0 and "default" not in redis.smembers("queues")
    assert [redis.hget(key, "jid") for key in lock_keys(redis)] == [other.jid]
    assert redis.keys("clearing:*") == []
    assert Queue("default").clear() == 0  # an empty queue clears to nothing, without an error


def test_clearing_the_schedule_frees_the_locks_of_its_jobs(redis):
    UntilExecutingJob.set(wait=60).perform_later("later")
    held = UntilExecutedJob.perform_later("waiting")

    assert ScheduledSet().clear() == 1

    assert [redis.hget(key, "jid") for key in lock_keys(redis)] == [held.jid]


def test_clearing_more_jobs_than_one_page_frees_every_lock(redis):
    UntilExecutedJob.perform_bulk([(n,) for n in range(2500)])  # pages of 1,000
    assert len(lock_keys(redis)) == 2500

    assert Queue("default").clear() == 2500

    assert lock_keys(redis) == []


def test_deleting_or_clearing_dead_jobs_leaves_locks_alone(redis):
    # Given: a dead entry whose jid still holds a lock (as a job killed by hand with DeadSet.kill)
    handle = UntilExecutedJob.perform_later("k")
    [raw] = redis.lrange("queue:default", 0, -1)
    DeadSet().kill(json.loads(raw), reason="given up")

    # Then: DeadSet.kill removed it from nowhere, so it left the lock alone
    assert [redis.hget(key, "jid") for key in lock_keys(redis)] == [handle.jid]
    assert DeadSet().clear() == 1
    assert [redis.hget(key, "jid") for key in lock_keys(redis)] == [handle.jid]


def test_kill_all_frees_the_locks_of_every_job_it_moves(redis):
    for n in range(3):
        UntilExecutingJob.set(wait=3600).perform_later(n)

    assert ScheduledSet().kill_all() == 3

    assert lock_keys(redis) == [] and DeadSet().size() == 3


def test_deleting_a_job_never_frees_a_lock_another_job_holds_now(redis):
    # Given: the lock of this digest now belongs to another jid (as after on_conflict="replace")
    handle = UntilExecutedJob.perform_later("k")
    [key] = lock_keys(redis)
    redis.hset(key, "jid", "f" * 24)

    Queue("default").find_job(handle.jid).delete()

    assert redis.hget(key, "jid") == "f" * 24


def test_clearing_a_queue_key_of_the_wrong_type_says_so_and_changes_nothing(redis):
    redis.set("queue:broken", "not a list")
    with pytest.raises(BgJobsError, match="it holds a string, not a list; nothing was changed"):
        Queue("broken").clear()
    assert redis.get("queue:broken") == "not a list" and redis.keys("clearing:*") == []


@pytest.fixture
def processor():
    return Processor(Fetcher("test-host:1:job-end", QueueOrder(["default"])))


def test_killing_a_batch_job_waiting_for_its_retry_records_its_death_and_fires_death_and_complete(
        redis, processor):
    # Given: a batch of two, one done, one failed and waiting in the retry set
    batch = Batch().on("death", RecordingCallback).on("complete", RecordingCallback).on("success", RecordingCallback)
    with batch.jobs():
        RecordJob.perform_later("ok")
        failing = FailingJob.perform_later("boom")
    processor.process_one(block=False)
    processor.process_one(block=False)
    assert callback_events(redis) == ["complete"]  # every job has run once

    # When: an operator kills it
    assert RetrySet().find_job(failing.jid).kill() is True

    # Then: the death is recorded, its callbacks queued once; the batch can never succeed
    status = batch.status()
    assert status.dead == 1 and status.pending == 1 and not status.success
    assert sorted(callback_events(redis)) == ["complete", "death"]  # death once, complete not again
    assert redis.zcard("retry") == 0 and redis.zcard("dead") == 1


def test_deleting_a_batch_job_before_it_ran_lets_the_batch_complete_without_succeeding(redis, processor):
    # Given: a batch of two; the first ran, the second still waits in its queue
    batch = Batch().on("complete", RecordingCallback).on("success", RecordingCallback)
    with batch.jobs():
        RecordJob.perform_later("ok")
        waiting = RecordJob.perform_later("never runs")
    processor.process_one(block=False)
    assert callback_events(redis) == []

    # When
    assert Queue("default").find_job(waiting.jid).delete() is True

    # Then: counted as failed, so the batch is complete; it did not succeed
    status = batch.status()
    assert (status.pending, status.failures, status.dead) == (1, 1, 0) and not status.success
    assert callback_events(redis) == ["complete"]
