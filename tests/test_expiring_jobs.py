"""Expiring jobs (Sidekiq Pro's ``expires_in``): a job not started within ``expires_in`` of
being due is dropped unrun by the worker."""

import datetime
import json
import time

import pytest

from django_bgjobs import Batch, ConfigurationError, InvalidOptionError, Job
from django_bgjobs.worker.fetcher import Fetcher
from django_bgjobs.worker.poller import Poller
from django_bgjobs.worker.processor import Processor
from django_bgjobs.worker.queues import QueueOrder
from tests.helpers import dead_entries, run_queued, worker_manager
from tests.testapp.jobs import AsyncSleepJob, FailingJob, RecordJob, performed
from tests.testapp.unique_batch_jobs import RecordingCallback, UntilExecutingJob, UntilExpiredJob

pytestmark = pytest.mark.django_db(transaction=True)

FAR_FUTURE_S = 4_000_000_000


class DigestJob(Job):
    expires_in = datetime.timedelta(minutes=5)

    def perform(self):
        pass


@pytest.fixture
def processor():
    return Processor(Fetcher("test-host:1:expiry", QueueOrder(["default"])))


def queued(redis):
    return [json.loads(raw) for raw in reversed(redis.lrange("queue:default", 0, -1))]


def test_expires_in_counts_from_the_enqueue_or_from_when_a_scheduled_job_is_due(redis):
    DigestJob.perform_later()
    RecordJob.set(wait=3600, expires_in=60).perform_later()

    [now_job] = queued(redis)
    assert now_job["expiry"] == pytest.approx(now_job["created_at"] + 300)
    [(raw, at)] = redis.zrange("schedule", 0, -1, withscores=True)
    assert json.loads(raw)["expiry"] == pytest.approx(at + 60)


@pytest.mark.parametrize("value", [0, -5, "10", True, float("inf")])
def test_a_bad_expires_in_is_refused_where_it_is_given(value):
    with pytest.raises(InvalidOptionError, match="expires_in must be"):
        RecordJob.set(expires_in=value)
    with pytest.raises(ConfigurationError, match="expires_in must be"):
        type("BadExpiryJob", (Job,), {"expires_in": value, "perform": lambda self: None, "__module__": __name__})


def test_a_job_past_its_expiry_is_dropped_unrun_and_one_within_it_runs(redis, processor):
    RecordJob.set(expires_in=0.05).perform_later("too late")
    fresh = RecordJob.set(expires_in=60).perform_later("in time").jid
    time.sleep(0.1)

    processor.process_one(block=False)
    processor.process_one(block=False)

    assert [e["jid"] for e in performed()] == [fresh]
    assert redis.keys("inflight:*") == [] and redis.zcard("retry") == 0 and redis.zcard("dead") == 0
    assert processor.processed == 1  # the dropped one is neither processed nor failed


def test_an_until_expired_lock_outlives_its_expired_job(redis, processor):
    UntilExpiredJob.set(expires_in=0.05).perform_later("k")
    time.sleep(0.1)

    processor.process_one(block=False)

    assert performed() == [] and len(redis.keys("unique:*")) == 1  # its lock always runs its time


def test_an_async_job_past_its_expiry_is_dropped_and_one_within_it_runs(redis):
    AsyncSleepJob.set(expires_in=0.05).perform_later(0)
    fresh = AsyncSleepJob.set(expires_in=60).perform_later(0).jid
    time.sleep(0.1)

    with worker_manager("test-host:1:expiry-async") as manager:
        run_queued(manager)
        counts = manager.counts()

    assert [e["jid"] for e in performed()] == [fresh] and counts == (1, 0)
    assert redis.keys("inflight:*") == []


def test_a_retry_due_after_the_expiry_is_dropped(redis, processor):
    FailingJob.set(expires_in=0.3).perform_later("fails once")
    processor.process_one(block=False)
    assert redis.zcard("retry") == 1
    time.sleep(0.35)

    Poller().enqueue_due(now=FAR_FUTURE_S)
    processor.process_one(block=False)

    assert len(performed()) == 1  # the first attempt only
    assert redis.zcard("retry") == 0 and redis.zcard("dead") == 0 and redis.keys("inflight:*") == []


def test_an_expired_job_frees_its_unique_lock_and_counts_as_a_success_in_its_batch(redis, processor):
    batch = Batch().on("success", RecordingCallback)
    with batch.jobs():
        UntilExecutingJob.set(expires_in=0.05).perform_later("k")
    time.sleep(0.1)

    processor.process_one(block=False)

    assert redis.keys("unique:*") == []
    assert batch.status().success
    assert queued(redis)[0]["args"][1] == "success"  # its success callback, queued


def test_a_payload_whose_expiry_is_not_a_number_goes_to_the_dead_set(redis, processor):
    payload = {"class": RecordJob.name, "args": [], "queue": "default", "jid": "e" * 24,
               "created_at": time.time(), "expiry": "tomorrow", "enqueued_at": time.time()}
    redis.lpush("queue:default", json.dumps(payload))

    processor.process_one(block=False)

    [dead] = dead_entries(redis)
    assert "expiry must be epoch seconds" in dead["error_message"] and performed() == []
