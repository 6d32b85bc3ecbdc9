"""django_bgjobs.failures: a FailedJob row for each job that reaches the dead set, and its pruning.

Deaths happen the way the worker makes them: a payload pushed by ``perform_later``,
taken from its queue into an in-flight list, run, and failed through its unit of work (``retry.fail``)
(one test drives a real :class:`Processor` step).  Kills go through ``django_bgjobs.api``.
"""

import datetime
import hashlib
import io
import json
import logging

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import OperationalError
from django.test import override_settings
from django.utils import timezone

from django_bgjobs import Job, execution, failures, keys
from django_bgjobs.api import DeadSet, RetrySet
from django_bgjobs.errors import InvalidPayloadError
from django_bgjobs.job_end import Outcome
from django_bgjobs.models import FailedJob
from django_bgjobs.payload import dumps, loads
from django_bgjobs.worker.fetcher import Fetcher
from django_bgjobs.worker.processor import Processor
from django_bgjobs.worker.queues import QueueOrder
from tests.helpers import unit_in_flight
from tests.testapp.jobs import FailingJob, JobFailure

pytestmark = pytest.mark.django_db(transaction=True)

IDENTITY = "test-host:1:failures"
ACK = keys.inflight(IDENTITY, "default")


class HookRaisesJob(Job):
    """Dies at once; its ``retries_exhausted`` hook is broken."""

    retry = 0

    def perform(self, n):
        raise JobFailure(f"hook job {n} failed")

    def retries_exhausted(self, job, exception):
        raise RuntimeError("the hook itself failed")


@pytest.fixture(autouse=True)
def _no_prune_yet(monkeypatch):
    monkeypatch.setattr(failures, "_last_prune", None)


def bgjobs_settings(**changes):
    return override_settings(BGJOBS={**settings.BGJOBS, **changes})


def die(redis, job_class, *args):
    """Enqueue, fetch and run ``job_class(*args)`` once with ``retry=0``: it goes to the dead set."""
    job_class.set(retry=0).perform_later(*args)
    raw = redis.lmove("queue:default", ACK, "RIGHT", "LEFT")
    unit = unit_in_flight(raw, IDENTITY)
    payload = unit.payload
    job, job_args, kwargs = execution.instantiate(payload)
    try:
        execution.run(job, job_args, kwargs)
    except Exception as exc:  # noqa: BLE001 - the job is meant to fail
        assert unit.fail(exc, job) == Outcome.DEAD
    else:
        raise AssertionError("the job was expected to fail")
    return payload


# -- recording deaths -----------------------------------------------------------------------


def test_row_holds_the_payload_and_its_last_error_when_a_job_runs_out_of_retries(redis):
    # When
    payload = die(redis, FailingJob, "disk full")

    # Then
    row = FailedJob.objects.get()
    assert row.jid == payload["jid"]
    assert row.job_class == "tests.testapp.jobs.FailingJob"
    assert row.queue == "default"
    assert row.args == ["disk full"]
    assert row.error_class == "tests.testapp.jobs.JobFailure"
    assert row.error_message == "disk full"
    assert "JobFailure: disk full" in row.backtrace
    assert row.retry_count == 0
    assert row.reason == "retries exhausted (0 of 0)"
    assert row.first_enqueued_at == datetime.datetime.fromtimestamp(payload["created_at"], tz=datetime.UTC)
    assert row.payload["jid"] == payload["jid"] and row.payload["dead_reason"] == row.reason
    assert row.status == "open"
    assert (timezone.now() - row.failed_at).total_seconds() < 5


def test_row_is_written_when_the_jobs_retries_exhausted_hook_raises(redis):
    # When
    payload = die(redis, HookRaisesJob, 7)

    # Then
    assert FailedJob.objects.get().jid == payload["jid"]
    assert redis.zcard("dead") == 1


def test_row_is_written_when_a_worker_processor_buries_a_job(redis):
    # Given
    processor = Processor(Fetcher("test-host:2:failures", QueueOrder(["default"])))
    handle = FailingJob.set(retry=0).perform_later("through the processor")

    # When
    assert processor.process_one(block=False) is True

    # Then
    assert list(FailedJob.objects.values_list("jid", "error_message")) == [(handle.jid, "through the processor")]


def test_oversized_unreadable_payload_is_kept_truncated_with_its_size_hash_and_jid(redis, caplog):
    # Given: 20 MB that another writer pushed (over MAX_PAYLOAD_BYTES, so never decoded), naming its jid
    secret = "personal-data-" * 10
    raw = ('{"class":"tests.testapp.jobs.RecordJob","args":["' + secret + "x" * 20_000_000
           + '"],"jid":"0123456789abcdef01234567"}').encode()

    # When
    with caplog.at_level(logging.ERROR, logger="django_bgjobs"):
        outcome = unit_in_flight(raw, IDENTITY).fail(InvalidPayloadError("payload is too big; not decoded"))

    # Then: the dead entry holds the start of it, marked, with the original's size and hash
    assert outcome == Outcome.DEAD
    [entry] = DeadSet()
    dead_raw = entry.raw
    assert len(dead_raw) < 20_000
    assert entry.jid == "0123456789abcdef01234567"
    assert entry.item["original_truncated"] is True
    assert entry.item["original_size_bytes"] == len(raw)
    assert entry.item["original_sha256"] == hashlib.sha256(raw).hexdigest()
    assert entry.item["original_payload"] == raw[:16 * 1024].decode()
    assert entry.dead_reason == "payload is too big; not decoded"
    # the failure row is as small, and the entry can be found and deleted by its jid
    row = FailedJob.objects.get()
    assert row.jid == "0123456789abcdef01234567" and len(json.dumps(row.payload)) < 20_000
    assert DeadSet().delete_by_jid("0123456789abcdef01234567") is True and redis.zcard("dead") == 0
    # the log names its size and a hash, never its content
    assert f"{len(raw):,} bytes, sha256 {hashlib.sha256(raw).hexdigest()[:12]}" in caplog.text
    assert secret not in caplog.text


def test_row_names_the_unreadable_payload_when_a_queue_held_garbage(redis):
    # When: a payload that is not JSON is failed through its unit of work, as the worker does
    unit_in_flight(b"{not json", IDENTITY, "low").fail(ValueError("payload is not valid JSON"))

    # Then
    row = FailedJob.objects.get()
    assert row.job_class == "django_bgjobs.UnreadablePayload"
    assert row.queue == "low"
    assert row.payload["original_payload"] == "{not json"
    assert row.error_message == "payload is not valid JSON"


def test_worker_carries_on_and_logs_when_the_database_refuses_the_row(redis, monkeypatch, caplog):
    # Given: every insert fails, as with a missing table or a database that went away
    def refuse(self, *args, **kwargs):
        raise OperationalError("no such table: django_bgjobs_failedjob")

    monkeypatch.setattr(FailedJob, "save", refuse)

    # When
    with caplog.at_level(logging.ERROR, logger="django_bgjobs.failures"):
        payload = die(redis, FailingJob, "db down")

    # Then: the job is in the dead set, the error is logged, nothing raised
    assert [loads(raw)["jid"] for raw in redis.zrange("dead", 0, -1)] == [payload["jid"]]
    assert "could not record the failed job tests.testapp.jobs.FailingJob" in caplog.text
    assert "no such table" in caplog.text


def test_no_row_is_written_when_record_failed_jobs_is_off(redis):
    # When
    with bgjobs_settings(RECORD_FAILED_JOBS=False):
        die(redis, FailingJob, "quiet")

    # Then
    assert FailedJob.objects.count() == 0
    assert redis.zcard("dead") == 1


def test_row_converts_sidekiq_millisecond_timestamps_when_the_payload_came_from_ruby():
    # When
    fields = failures.row_fields({"class": "HardWorker", "jid": "abc", "created_at": 1_700_000_000_123}, None, "x")

    # Then
    assert fields["first_enqueued_at"] == datetime.datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=datetime.UTC)
    assert fields["queue"] == "default"
    assert fields["retry_count"] is None


# -- kills through the monitoring API -------------------------------------------------------


def test_row_is_written_with_the_kill_reason_when_a_retry_is_killed_through_the_api(redis):
    # Given: a job waiting in the retry set
    FailingJob.perform_later("later")
    raw = redis.lmove("queue:default", ACK, "RIGHT", "LEFT")
    assert unit_in_flight(raw, IDENTITY).fail(JobFailure("first try")) == Outcome.RETRIED
    entry = RetrySet().page()[0]

    # When
    assert entry.kill() is True

    # Then
    row = FailedJob.objects.get()
    assert (row.jid, row.reason, row.error_message) == (entry.jid, "killed from the monitoring API", "first try")


def test_one_row_per_job_when_every_retry_is_killed_at_once(redis):
    # Given
    redis.zadd("retry", {dumps({"class": "X", "args": [n], "jid": f"j{n}", "queue": "low"}): n for n in range(5)})

    # When
    assert RetrySet().kill_all(reason="bulk kill") == 5

    # Then
    assert sorted(FailedJob.objects.values_list("jid", "reason", "queue")) == [
        (f"j{n}", "bulk kill", "low") for n in range(5)
    ]


def test_row_is_written_when_a_payload_is_killed_straight_into_the_dead_set(redis):
    # When
    DeadSet().kill({"class": "shop.jobs.SyncCart", "args": [42], "jid": "cart42"}, reason="bad data")

    # Then
    assert list(FailedJob.objects.values_list("jid", "job_class", "reason", "args")) == [
        ("cart42", "shop.jobs.SyncCart", "bad data", [42])
    ]


# -- pruning --------------------------------------------------------------------------------


def make_row(days_ago, jid):
    return FailedJob.objects.create(
        jid=jid, job_class="X", queue="default", failed_at=timezone.now() - datetime.timedelta(days=days_ago)
    )


def test_prune_deletes_rows_older_than_the_retention_only():
    # Given
    make_row(10, "old")
    make_row(1, "new")

    # When
    with bgjobs_settings(FAILED_JOBS_RETENTION_S=5 * 86400):
        deleted = failures.prune()

    # Then
    assert deleted == 1
    assert list(FailedJob.objects.values_list("jid", flat=True)) == ["new"]


def test_prune_keeps_everything_when_the_retention_is_none():
    make_row(10_000, "ancient")

    with bgjobs_settings(FAILED_JOBS_RETENTION_S=None):
        assert failures.prune() == 0

    assert FailedJob.objects.count() == 1


def test_a_death_prunes_old_rows_once_an_hour_when_rows_are_written(redis, monkeypatch):
    # Given
    make_row(365, "old-1")
    clock = [1000.0]
    monkeypatch.setattr(failures.time, "monotonic", lambda: clock[0])

    # When: the first death in this process prunes
    with bgjobs_settings(FAILED_JOBS_RETENTION_S=30 * 86400):
        die(redis, FailingJob, "a")
        assert not FailedJob.objects.filter(jid="old-1").exists()

        # ...the next one within the hour does not, the one after the hour does
        make_row(365, "old-2")
        clock[0] += failures.PRUNE_INTERVAL_S - 1
        die(redis, FailingJob, "b")
        assert FailedJob.objects.filter(jid="old-2").exists()
        clock[0] += 2
        die(redis, FailingJob, "c")

    # Then
    assert not FailedJob.objects.filter(jid="old-2").exists()
    assert FailedJob.objects.count() == 3


def test_prunefailedjobs_command_deletes_old_rows_and_says_how_many():
    # Given
    make_row(3, "three-days")
    make_row(0, "today")
    out = io.StringIO()

    # When
    call_command("prunefailedjobs", "--days", "2", stdout=out)

    # Then
    assert out.getvalue().strip() == "Deleted 1 failed-job record(s) older than 2 day(s)."
    assert list(FailedJob.objects.values_list("jid", flat=True)) == ["today"]


def test_prunefailedjobs_command_uses_the_setting_when_no_days_are_given():
    make_row(200, "old")
    out = io.StringIO()

    call_command("prunefailedjobs", stdout=out)

    assert "Deleted 1 failed-job record(s) older than 180 day(s)." in out.getvalue()
    assert json.dumps(list(FailedJob.objects.values_list("jid", flat=True))) == "[]"


def test_prune_job_deletes_old_rows_when_run_on_a_schedule():
    # Given
    make_row(40, "old")
    make_row(1, "new")

    # When: as a worker runs it (a recurring job names it by its registered name)
    from django_bgjobs import registry

    deleted = registry.get("django_bgjobs.PruneFailedJobs")().perform(days=30)

    # Then
    assert deleted == 1
    assert list(FailedJob.objects.values_list("jid", flat=True)) == ["new"]
