"""django_bgjobs.testing: capture_jobs, CapturedJobs assertions, perform_all, perform_enqueued_jobs."""

import datetime
import decimal
import re
import threading
import uuid

import pytest
from django.db import transaction
from django.test import TestCase

from django_bgjobs import client, keys
from django_bgjobs.connection import get_redis
from django_bgjobs.errors import SerializationError
from django_bgjobs.pytest_plugin import bgjobs_capture  # noqa: F401  (the fixture, as the plugin provides it)
from django_bgjobs.testing import (
    CapturedJobs,
    EnqueueLoopError,
    capture_jobs,
    perform_enqueued_jobs,
)
from tests.testapp.jobs import (
    AuthorJob,
    ChainJob,
    FailingJob,
    JobFailure,
    LoopJob,
    LowQueueJob,
    NoopJob,
    RecordJob,
    RecordKwargsJob,
    ReturnJob,
    performed,
)
from tests.testapp.models import Author

JID_RE = re.compile(r"^[0-9a-f]{24}$")


def job_keys(redis):
    """Every key but the test ledger: what a job push would have written."""
    return sorted(key for key in redis.keys("*") if key != "test:performed")


# -- capture_jobs -----------------------------------------------------------------------------


def test_capture_records_job_instead_of_writing_redis_when_inside_block(redis):
    # When
    with capture_jobs() as jobs:
        handle = RecordJob.perform_later(1, "two")

    # Then
    assert redis.dbsize() == 0
    assert len(jobs) == 1
    job = jobs[0]
    assert job.job_class is RecordJob
    assert job.args == [1, "two"]
    assert job.kwargs == {}
    assert job.raw_args == [1, "two"]
    assert job.queue == "default"
    assert job.jid == handle.jid and JID_RE.match(job.jid)
    assert job.scheduled_at is None
    assert job.payload["class"] == "tests.testapp.jobs.RecordJob"
    assert job.payload["retry"] is True
    assert isinstance(job.payload["enqueued_at"], float)


def test_capture_stops_when_block_exits(redis):
    # Given
    with capture_jobs():
        pass

    # When
    RecordJob.perform_later(1)

    # Then
    assert redis.llen("queue:default") == 1
    assert client._captures == []


def test_capture_stops_when_block_raises(redis):
    # When
    with pytest.raises(RuntimeError), capture_jobs():
        raise RuntimeError("boom")
    RecordJob.perform_later(1)

    # Then
    assert redis.llen("queue:default") == 1


def test_importing_test_helpers_captures_nothing_when_no_block_is_open(redis):
    # Given: this module imported django_bgjobs.testing and the pytest plugin at the top
    import django_bgjobs.pytest_plugin  # noqa: F401
    import django_bgjobs.testing  # noqa: F401

    # When
    RecordJob.perform_later(1)

    # Then
    assert client._captures == []
    assert redis.llen("queue:default") == 1


def test_captured_args_are_python_values_when_enqueued_with_rich_types():
    # Given
    when = datetime.datetime(2024, 5, 17, 9, 30, tzinfo=datetime.UTC)
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")

    # When
    with capture_jobs() as jobs:
        RecordKwargsJob.perform_later(when, decimal.Decimal("1.10"), (1, 2), ident=ident, day=when.date())

    # Then
    job = jobs[0]
    assert job.args == [when, decimal.Decimal("1.10"), [1, 2]]
    assert job.kwargs == {"ident": ident, "day": datetime.date(2024, 5, 17)}
    assert job.raw_args[0] == {"__bgjobs__": "datetime", "value": "2024-05-17T09:30:00+00:00"}


@pytest.mark.django_db
def test_captured_model_argument_is_fetched_fresh_when_args_are_read():
    # Given
    author = Author.objects.create(name="Ada")
    with capture_jobs() as jobs:
        AuthorJob.perform_later(author)

    # When
    Author.objects.filter(pk=author.pk).update(name="Ada Lovelace")

    # Then
    assert jobs[0].raw_args == [{"__bgjobs__": "model", "value": ["testapp", "author", author.pk]}]
    assert jobs[0].args[0].name == "Ada Lovelace"


def test_capture_raises_and_captures_nothing_when_argument_is_not_json():
    with capture_jobs() as jobs:
        with pytest.raises(SerializationError, match="argument 1 is of type builtins.object"):
            RecordJob.perform_later(1, object())

    assert len(jobs) == 0


def test_captured_job_has_schedule_when_enqueued_with_wait():
    # When
    before = client.now_s()
    with capture_jobs() as jobs:
        RecordJob.set(wait=60, queue="low").perform_later()

    # Then
    job = jobs[0]
    assert before + 60 <= job.scheduled_at <= client.now_s() + 60
    assert job.queue == "low"
    assert "enqueued_at" not in job.payload


def test_capture_includes_jobs_enqueued_by_other_threads_when_inside_block(redis):
    # When
    with capture_jobs() as jobs:
        threads = [threading.Thread(target=RecordJob.perform_later, args=(n,)) for n in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # Then
    assert sorted(job.args[0] for job in jobs) == [0, 1, 2, 3, 4]
    assert redis.dbsize() == 0


@pytest.mark.django_db(transaction=True)
def test_capture_sees_job_at_once_when_enqueued_inside_a_transaction(redis):
    # When: a block that rolls back
    with capture_jobs() as jobs:
        with pytest.raises(RuntimeError), transaction.atomic():
            RecordJob.perform_later(1)
            captured_inside = len(jobs)
            raise RuntimeError("roll back")

    # Then: captured at once (no wait for a commit), and not un-captured by the rollback
    assert captured_inside == 1
    assert len(jobs) == 1
    assert redis.dbsize() == 0


def test_innermost_capture_sees_jobs_when_captures_nest():
    with capture_jobs() as outer:
        with capture_jobs() as inner:
            RecordJob.perform_later("inner")
        RecordJob.perform_later("outer")

    assert [job.args for job in inner] == [["inner"]]
    assert [job.args for job in outer] == [["outer"]]


def test_fixture_captures_jobs_when_test_asks_for_it(bgjobs_capture, redis):  # noqa: F811
    # When
    NoopJob.perform_later("x")

    # Then
    bgjobs_capture.assert_enqueued(NoopJob, args=["x"])
    assert redis.dbsize() == 0


# -- assertions --------------------------------------------------------------------------------


def test_assert_enqueued_returns_matches_when_class_args_and_queue_match():
    with capture_jobs() as jobs:
        handle = RecordJob.perform_later(1, 2)
        RecordJob.perform_later(3)

    found = jobs.assert_enqueued(RecordJob, args=[1, 2], queue="default")

    assert isinstance(found, CapturedJobs)
    assert [job.jid for job in found] == [handle.jid]


def test_assert_enqueued_raises_with_what_was_enqueued_when_args_differ():
    with capture_jobs() as jobs:
        RecordJob.perform_later(1, 3)
        NoopJob.perform_later()

    with pytest.raises(AssertionError) as failure:
        jobs.assert_enqueued(RecordJob, args=[1, 2])

    message = str(failure.value)
    assert "expected at least 1 job matching tests.testapp.jobs.RecordJob(args=[1, 2]), found 0" in message
    assert "Enqueued (2):" in message
    assert "1. tests.testapp.jobs.RecordJob args=[1, 3] queue='default'" in message
    assert "args differ: expected [1, 2]" in message
    assert "2. tests.testapp.jobs.NoopJob args=[]" in message


def test_assert_enqueued_raises_when_queue_differs():
    with capture_jobs() as jobs:
        LowQueueJob.perform_later()

    with pytest.raises(AssertionError, match=r"queue differs: expected 'default'"):
        jobs.assert_enqueued(LowQueueJob, queue="default")
    jobs.assert_enqueued(LowQueueJob, queue="low")


def test_assert_enqueued_raises_saying_nothing_was_enqueued_when_capture_is_empty():
    with capture_jobs() as jobs:
        pass

    with pytest.raises(AssertionError, match="Nothing was enqueued"):
        jobs.assert_enqueued(RecordJob)


def test_assert_enqueued_checks_exact_number_when_count_given():
    with capture_jobs() as jobs:
        RecordJob.perform_bulk([(1,), (2,), (1,)])

    jobs.assert_enqueued(RecordJob, count=3)
    jobs.assert_enqueued(RecordJob, args=[1], count=2)
    with pytest.raises(AssertionError, match="expected 1 job matching .*found 2"):
        jobs.assert_enqueued(RecordJob, args=[1], count=1)
    jobs.assert_enqueued(NoopJob, count=0)


def test_assert_enqueued_compares_stored_form_when_args_hold_tuples_and_kwargs():
    with capture_jobs() as jobs:
        RecordKwargsJob.perform_later((1, 2), when=datetime.date(2024, 1, 2))

    jobs.assert_enqueued(RecordKwargsJob, args=[[1, 2]], kwargs={"when": datetime.date(2024, 1, 2)})
    jobs.assert_enqueued(RecordKwargsJob, args=((1, 2),))
    with pytest.raises(AssertionError, match=r"kwargs differ: expected \{'when': date\('2024-01-03'\)\}"):
        jobs.assert_enqueued(RecordKwargsJob, kwargs={"when": datetime.date(2024, 1, 3)})
    with pytest.raises(AssertionError):
        jobs.assert_enqueued(RecordKwargsJob, kwargs={})


@pytest.mark.django_db
def test_assert_enqueued_matches_model_argument_without_a_query_when_given_the_instance(
    django_assert_num_queries,
):
    # Given
    author = Author.objects.create(name="Ada")
    other = Author.objects.create(name="Grace")
    with capture_jobs() as jobs:
        AuthorJob.perform_later(author)

    # Then
    with django_assert_num_queries(0):
        jobs.assert_enqueued(AuthorJob, args=[author])
        with pytest.raises(AssertionError, match=r"args=\[<testapp.author pk=\d+>\]"):
            jobs.assert_enqueued(AuthorJob, args=[other])


def test_assert_enqueued_accepts_registered_name_when_given_a_string():
    with capture_jobs() as jobs:
        RecordJob.perform_later()

    jobs.assert_enqueued("tests.testapp.jobs.RecordJob", args=[])
    with pytest.raises(TypeError, match="Job subclass or its registered name"):
        jobs.assert_enqueued(object)


def test_assert_not_enqueued_raises_with_listing_when_a_job_matches():
    with capture_jobs() as jobs:
        RecordJob.perform_later(7)

    jobs.assert_not_enqueued(RecordJob, args=[8])
    jobs.assert_not_enqueued(NoopJob)
    with pytest.raises(AssertionError, match=r"expected no job matching .*RecordJob\(args=\[7\]\), found 1"):
        jobs.assert_not_enqueued(RecordJob, args=[7])


def test_assert_not_enqueued_checks_that_nothing_was_enqueued_when_given_no_criteria():
    with capture_jobs() as jobs:
        pass
    jobs.assert_not_enqueued()

    with capture_jobs() as jobs:
        NoopJob.perform_later()
    with pytest.raises(AssertionError, match="expected no job matching any job"):
        jobs.assert_not_enqueued()


def test_filter_returns_matching_jobs_in_order_when_criteria_given():
    with capture_jobs() as jobs:
        RecordJob.perform_later(1)
        LowQueueJob.perform_later(2)
        RecordJob.set(queue="low").perform_later(3)

    assert [job.args for job in jobs.filter(queue="low")] == [[2], [3]]
    assert [job.args for job in jobs.filter(RecordJob)] == [[1], [3]]
    assert [job.args for job in jobs.filter(RecordJob, args=[3])] == [[3]]
    assert len(jobs.filter()) == 3


def test_clear_forgets_captured_jobs_when_called():
    with capture_jobs() as jobs:
        RecordJob.perform_later(1)
        jobs.clear()
        RecordJob.perform_later(2)

    assert [job.args for job in jobs] == [[2]]


# -- perform_all -------------------------------------------------------------------------------


def test_perform_all_runs_jobs_and_their_children_in_order_when_called(redis):
    # Given
    with capture_jobs() as jobs:
        ChainJob.perform_later(2)
        RecordJob.perform_later("after chain start")

    # When
    ran = jobs.perform_all()

    # Then: first-in first-out, children after the jobs already waiting (like Sidekiq's drain)
    assert [entry["args"] for entry in performed(redis)] == [[2], ["after chain start"], [1], [0]]
    assert [job.args for job in ran] == [[2], ["after chain start"], [1], [0]]
    assert [job.depth for job in jobs] == [0, 0, 1, 2]
    assert all(job.performed for job in jobs)
    assert [entry["jid"] for entry in performed(redis)] == [job.jid for job in ran]
    assert job_keys(redis) == []


def test_perform_all_runs_each_job_once_when_called_twice(redis):
    with capture_jobs() as jobs:
        RecordJob.perform_later(1)
        jobs.perform_all()
        RecordJob.perform_later(2)

    assert [job.args for job in jobs.perform_all()] == [[2]]
    assert [entry["args"] for entry in performed(redis)] == [[1], [2]]


def test_perform_all_returns_results_when_jobs_return_values():
    with capture_jobs() as jobs:
        ReturnJob.perform_later({"answer": 42})

    [job] = jobs.perform_all()

    assert job.result == {"answer": 42}


def test_perform_all_raises_when_jobs_enqueue_jobs_beyond_max_depth():
    with capture_jobs() as jobs:
        LoopJob.perform_later()

    with pytest.raises(EnqueueLoopError, match=r"4 levels deep \(max_depth=3\).*LoopJob enqueue itself"):
        jobs.perform_all(max_depth=3)
    assert len(jobs) == 5


def test_perform_all_propagates_error_and_marks_job_performed_when_perform_raises(redis):
    with capture_jobs() as jobs:
        FailingJob.perform_later("nope")
        RecordJob.perform_later("later")

    with pytest.raises(JobFailure, match="nope"):
        jobs.perform_all()

    assert [job.performed for job in jobs] == [True, False]
    jobs.perform_all()
    assert [entry["args"] for entry in performed(redis)] == [["nope"], ["later"]]


def test_perform_all_captures_children_instead_of_redis_when_called_after_block(redis):
    with capture_jobs() as jobs:
        ChainJob.perform_later(1)

    jobs.perform_all()

    assert [job.args for job in jobs] == [[1], [0]]
    assert job_keys(redis) == []
    ChainJob.perform_later(5)  # and the capture is off again afterwards
    assert redis.llen("queue:default") == 1


def test_perform_all_runs_scheduled_jobs_at_once_when_called(redis):
    with capture_jobs() as jobs:
        RecordJob.set(wait=datetime.timedelta(hours=1)).perform_later("later")

    jobs.perform_all()

    assert [entry["args"] for entry in performed(redis)] == [["later"]]


# -- perform_enqueued_jobs ---------------------------------------------------------------------


def test_perform_enqueued_jobs_runs_job_inside_perform_later_when_block_is_open(redis):
    with perform_enqueued_jobs() as jobs:
        handle = RecordJob.perform_later("now")
        # Then: already done when perform_later returns
        assert performed(redis) == [{"jid": handle.jid, "args": ["now"]}]

    assert [job.performed for job in jobs] == [True]
    assert job_keys(redis) == []


def test_perform_enqueued_jobs_runs_children_at_once_when_jobs_enqueue_jobs(redis):
    with perform_enqueued_jobs() as jobs:
        ChainJob.perform_later(2)
        RecordJob.perform_later("after")

    # Depth first, as the inline backend does
    assert [entry["args"] for entry in performed(redis)] == [[2], [1], [0], ["after"]]
    assert len(jobs) == 4


def test_perform_enqueued_jobs_raises_when_jobs_loop():
    with pytest.raises(EnqueueLoopError):
        with perform_enqueued_jobs(max_depth=5):
            LoopJob.perform_later()


def test_perform_enqueued_jobs_propagates_error_when_perform_raises():
    with perform_enqueued_jobs():
        with pytest.raises(JobFailure, match="boom"):
            FailingJob.perform_later("boom")


def test_perform_enqueued_jobs_still_checks_arguments_when_not_json():
    with perform_enqueued_jobs() as jobs:
        with pytest.raises(SerializationError):
            RecordJob.perform_later({1: "int key"})

    assert len(jobs) == 0


def test_perform_enqueued_jobs_runs_only_given_class_when_only_is_set(redis):
    with perform_enqueued_jobs(only=RecordJob) as jobs:
        RecordJob.perform_later("run")
        FailingJob.perform_later("not run")

    assert [entry["args"] for entry in performed(redis)] == [["run"]]
    assert [(job.name.rsplit(".", 1)[1], job.performed) for job in jobs] == [
        ("RecordJob", True), ("FailingJob", False),
    ]


def test_perform_enqueued_jobs_works_as_decorator_when_used_with_or_without_parentheses(redis):
    @perform_enqueued_jobs
    def bare(value):
        RecordJob.perform_later(value)
        return "bare done"

    @perform_enqueued_jobs()
    def called(value):
        RecordJob.perform_later(value)

    assert bare(1) == "bare done"
    called(2)
    called(3)

    assert [entry["args"] for entry in performed(redis)] == [[1], [2], [3]]
    assert client._captures == []
    RecordJob.perform_later(4)
    assert redis.llen("queue:default") == 1


class PerformLaterInATestCase(TestCase):
    """What the README says ``perform_later`` does inside Django's ``TestCase`` (a transaction
    rolled back at the end of each test) without the inline backend or the helpers."""

    def test_the_push_waits_for_a_commit_that_never_comes(self):
        # When
        handle = RecordJob.perform_later(1)

        # Then: a handle, and nothing in Redis, then or ever in this test
        assert len(handle.jid) == 24
        assert get_redis().llen(keys.queue("default")) == 0

    def test_capture_on_commit_callbacks_pushes_at_the_end_of_its_block(self):
        with self.captureOnCommitCallbacks(execute=True):
            RecordJob.perform_later(1)

        assert get_redis().llen(keys.queue("default")) == 1

    def test_the_helpers_take_the_job_at_once(self):
        with capture_jobs() as jobs:
            RecordJob.perform_later(1)

        jobs.assert_enqueued(RecordJob, args=[1])
