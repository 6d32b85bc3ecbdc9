"""django_bgjobs.tasks: Django's ``@task`` functions run by this library's worker.

Tasks are enqueued through Django's own API (``task.enqueue``, ``get_result``) against the
``RedisTaskBackend`` of ``tests/settings.py`` and the throwaway test Redis, then run by a
real :class:`Processor` driven one step at a time in the test's thread; one end-to-end test
runs them on a ``runjobs`` subprocess.  The tasks are in ``tests/testapp/tasks.py``.
"""

import datetime
import json
import logging
import os
import sys

import pytest
import redis as redis_lib
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from django_bgjobs import _tasks_compat as _compat
from django_bgjobs import keys
from django_bgjobs import tasks as django_bgjobs_tasks
from django_bgjobs._tasks_compat import (
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_backends,
    task_enqueued,
    task_finished,
    task_started,
)
from django_bgjobs.tasks import AsyncTaskJob, RedisTaskBackend, TaskJob
from django_bgjobs.testing import capture_jobs
from django_bgjobs.worker.fetcher import Fetcher
from django_bgjobs.worker.poller import Poller
from django_bgjobs.worker.processor import Processor
from django_bgjobs.worker.queues import QueueOrder
from tests.helpers import dead_entries, drain, run_queued, start_worker, stop_worker, wait_until, worker_manager
from tests.testapp import tasks
from tests.testapp.jobs import JobFailure, performed

# The processor recycles Django's database connections around every job, as in production;
# transaction=True because an enqueue inside an open transaction waits for its commit.
pytestmark = pytest.mark.django_db(transaction=True)

IDENTITY = "test-host:4242:tasks"
FAR_FUTURE_S = 4_000_000_000  # a "now" at which every scheduled task and retry is due


def tasks_setting(**options):
    """override_settings for the test TASKS with these ``OPTIONS``."""
    return override_settings(TASKS={"default": {**settings.TASKS["default"], "OPTIONS": options}})


@pytest.fixture
def processor():
    return Processor(Fetcher(IDENTITY, QueueOrder(["critical", "default", "low"])))


def stored(redis, result_id):
    raw = redis.get(keys.task_result(result_id))
    return json.loads(raw) if raw is not None else None


# -- enqueue and run --------------------------------------------------------------------------


def test_enqueue_returns_a_ready_result_whose_id_is_the_jid_and_pushes_one_task_job(redis):
    # When
    result = tasks.send_welcome.enqueue(42)

    # Then
    assert result.status == TaskResultStatus.READY
    assert (result.args, result.kwargs, result.backend, result.attempts) == ([42], {}, "default", 0)
    assert result.enqueued_at is not None and result.started_at is None
    [raw] = redis.lrange("queue:default", 0, -1)
    payload = json.loads(raw)
    assert payload["class"] == TaskJob.name == "django_bgjobs.tasks.TaskJob"
    assert payload["jid"] == result.id
    assert payload["args"] == ["tests.testapp.tasks.send_welcome", "default", [42], {}]
    assert payload["retry"] == 0
    assert stored(redis, result.id)["status"] == "READY"


def test_send_welcome_runs_on_the_worker_and_get_result_shows_it_successful(redis, processor):
    # Given
    result = tasks.send_welcome.enqueue(42)

    # When
    assert processor.process_one(block=False) is True

    # Then
    assert performed() == [{"jid": None, "args": [42], "task": "send_welcome"}]
    done = tasks.send_welcome.get_result(result.id)
    assert done.status == TaskResultStatus.SUCCESSFUL
    assert done.return_value == "welcome sent to user 42"
    assert done.is_finished and done.errors == [] and done.attempts == 1
    assert done.enqueued_at <= done.started_at <= done.finished_at
    assert done.last_attempted_at == done.started_at
    assert done.task == tasks.send_welcome
    assert done.worker_ids[0].endswith(f":{os.getpid()}")
    assert redis.keys("inflight:*") == [] and redis.zcard("dead") == 0


def test_refresh_updates_the_result_returned_by_enqueue(redis, processor):
    # Given
    result = tasks.add.enqueue(2, b=3)
    processor.process_one(block=False)

    # When
    result.refresh()

    # Then
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert result.kwargs == {"b": 3}


def test_get_result_before_the_worker_runs_equals_what_enqueue_returned(redis):
    result = tasks.add.using(priority=5, queue_name="low").enqueue(1, b=2)

    assert tasks.add.get_result(result.id) == result


def test_return_value_is_normalised_as_django_does_and_through_json(redis, processor):
    result = tasks.return_tuple_and_keys.enqueue()
    processor.process_one(block=False)

    assert tasks.return_tuple_and_keys.get_result(result.id).return_value == {"pair": [1, 2], "3": "three"}


def test_async_task_runs_even_without_an_event_loop_through_async_to_sync(redis, processor):
    result = tasks.async_double.enqueue(21)
    processor.process_one(block=False)  # a bare Processor: no event loop to hand it to

    assert tasks.async_double.get_result(result.id).return_value == 42


@pytest.fixture
def manager():
    with worker_manager(IDENTITY) as manager:
        yield manager


def test_async_tasks_are_awaited_on_the_event_loop_many_at_once(redis, manager):
    # Given: 20 tasks of 0.2 s, one processor thread
    results = [tasks.async_nap.enqueue(0.2) for _ in range(20)]
    assert json.loads(redis.lindex("queue:default", 0))["class"] == AsyncTaskJob.name

    # When
    run_queued(manager)

    # Then: all SUCCESSFUL, and they overlapped (one thread alone would run them one by one)
    spans = [tasks.async_nap.get_result(r.id).return_value for r in results]
    assert all(tasks.async_nap.get_result(r.id).status == TaskResultStatus.SUCCESSFUL for r in results)
    overlapping = max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans)
    assert overlapping >= 10
    assert manager.counts() == (20, 0)


def test_failed_async_task_is_failed_with_its_traceback_and_logged_as_an_exception(redis, manager, caplog):
    result = tasks.async_fail.enqueue("no luck")
    with caplog.at_level(logging.INFO, logger="django_tasks"), caplog.at_level(logging.INFO, logger="django.tasks"):
        run_queued(manager)

    fetched = tasks.async_fail.get_result(result.id)
    assert fetched.status == TaskResultStatus.FAILED
    [error] = fetched.errors
    assert error.exception_class_path == "tests.testapp.jobs.JobFailure" and "no luck" in error.traceback
    [logged] = [r for r in caplog.records if "state=" in r.getMessage() and result.id in r.getMessage()
                and "FAILED" in r.getMessage()]
    assert logged.exc_info is not None and logged.exc_info[1].args == ("no luck",)
    assert "asgiref" not in error.traceback.splitlines()[1]  # starts where the task was awaited


def test_aenqueue_and_aget_result_work_from_async_code(redis, processor):
    # Given
    result = async_to_sync(tasks.add.aenqueue)(20, 22)
    assert len(result.id) == 24

    # When
    processor.process_one(block=False)

    # Then
    fetched = async_to_sync(tasks.add.aget_result)(result.id)
    assert fetched.return_value == 42
    async_to_sync(result.arefresh)()
    assert result.status == TaskResultStatus.SUCCESSFUL


def test_takes_context_gets_the_running_result_and_attempt_number(redis, processor):
    result = tasks.show_context.enqueue("ctx")
    processor.process_one(block=False)

    assert tasks.show_context.get_result(result.id).return_value == {
        "id": result.id, "attempt": 1, "label": "ctx", "status": "RUNNING",
    }


# -- failures ---------------------------------------------------------------------------------


def test_failing_task_is_failed_with_its_error_and_goes_to_the_dead_set(redis, processor):
    # Given
    result = tasks.fail.enqueue("boom")

    # When
    processor.process_one(block=False)

    # Then
    failed = tasks.fail.get_result(result.id)
    assert failed.status == TaskResultStatus.FAILED
    assert failed.finished_at is not None
    with pytest.raises(ValueError, match="Task failed"):
        failed.return_value
    [error] = failed.errors
    assert error.exception_class_path == "tests.testapp.jobs.JobFailure"
    assert error.traceback.endswith("JobFailure: boom\n")
    [dead] = dead_entries(redis)
    assert dead["jid"] == result.id and "retries exhausted" in dead["dead_reason"]


def test_failed_attempt_is_ready_again_with_its_error_and_retried_when_retry_option_is_set(redis, processor):
    with tasks_setting(RETRY=2):
        # Given
        result = tasks.fail_twice.enqueue()

        # When: the first attempt fails
        processor.process_one(block=False)

        # Then
        waiting = tasks.fail_twice.get_result(result.id)
        assert waiting.status == TaskResultStatus.READY
        assert [e.traceback.splitlines()[-1] for e in waiting.errors] == [
            "tests.testapp.jobs.JobFailure: attempt 1 fails",
        ]
        assert redis.zcard("retry") == 1
        assert redis.pttl(keys.task_result(result.id)) > 86_400_000  # kept until the retry has run

        # When: the retries come due and run
        for _ in range(2):
            Poller().enqueue_due(now=FAR_FUTURE_S)
            processor.process_one(block=False)

        # Then
        done = tasks.fail_twice.get_result(result.id)
        assert done.status == TaskResultStatus.SUCCESSFUL
        assert done.return_value == 3 == done.attempts
        assert len(done.errors) == 2
        assert redis.zcard("retry") == 0 and redis.zcard("dead") == 0


def test_task_is_failed_once_its_retries_are_exhausted(redis, processor):
    with tasks_setting(RETRY=1):
        result = tasks.fail.enqueue()
        processor.process_one(block=False)
        Poller().enqueue_due(now=FAR_FUTURE_S)
        processor.process_one(block=False)

        failed = tasks.fail.get_result(result.id)
        assert failed.status == TaskResultStatus.FAILED
        assert len(failed.errors) == 2 == failed.attempts
        assert [entry["jid"] for entry in dead_entries(redis)] == [result.id]


def test_system_exit_in_a_task_fails_it_and_the_worker_thread_carries_on(redis, processor):
    # Given
    result = tasks.exit_task.enqueue()
    after = tasks.add.enqueue(1, 1)

    # When
    assert drain(processor) == 2

    # Then
    failed = tasks.exit_task.get_result(result.id)
    assert failed.status == TaskResultStatus.FAILED
    assert failed.errors[0].exception_class is SystemExit
    assert tasks.add.get_result(after.id).return_value == 2


def test_return_value_json_cannot_hold_fails_the_task_without_retrying_it(redis, processor):
    with tasks_setting(RETRY=3):
        result = tasks.return_object.enqueue()
        processor.process_one(block=False)

        failed = tasks.return_object.get_result(result.id)
        assert failed.status == TaskResultStatus.FAILED
        assert failed.errors[0].exception_class is TypeError
        assert "Unsupported type" in failed.errors[0].traceback
        assert redis.zcard("retry") == 0
        [dead] = dead_entries(redis)
        assert dead["error_class"] == "django_bgjobs.tasks.ReturnValueNotJSON"


def test_payload_naming_an_unregistered_task_goes_to_the_dead_set_and_nothing_is_imported(redis, processor):
    # Given: a payload someone wrote by hand, naming a function that is not a task
    jid = TaskJob.perform_later("os.system", "default", ["touch /tmp/bgjobs-pwned"], {}).jid

    # When
    processor.process_one(block=False)

    # Then
    [dead] = dead_entries(redis)
    assert dead["jid"] == jid
    assert "task 'os.system' is not registered in this worker" in dead["dead_reason"]
    assert stored(redis, jid)["status"] == "FAILED"
    assert "not registered" in stored(redis, jid)["errors"][0]["traceback"]


def test_payload_naming_a_backend_alias_that_is_not_a_redis_task_backend_goes_to_the_dead_set(redis, processor):
    TaskJob.perform_later("tests.testapp.tasks.add", "nowhere", [1, 2], {})

    processor.process_one(block=False)

    [dead] = dead_entries(redis)
    assert "task backend 'nowhere' is not a RedisTaskBackend" in dead["dead_reason"]


# -- scheduling and priority ------------------------------------------------------------------


def test_run_after_schedules_the_task_and_keeps_its_result_until_it_has_run(redis, processor):
    # Given
    run_after = timezone.now() + datetime.timedelta(hours=2)
    result = tasks.add.using(run_after=run_after).enqueue(1, 2)

    # Then: waiting in the schedule set, not a queue
    assert result.task.run_after == run_after
    assert redis.zcard("schedule") == 1 and redis.llen("queue:default") == 0
    assert processor.process_one(block=False) is False
    assert redis.pttl(keys.task_result(result.id)) > (86_400 + 2 * 3600 - 60) * 1000

    # When: it comes due
    Poller().enqueue_due(now=FAR_FUTURE_S)
    processor.process_one(block=False)

    # Then
    done = tasks.add.get_result(result.id)
    assert done.return_value == 3
    assert done.task.run_after == run_after


def test_positive_priority_runs_before_waiting_tasks_newest_first_and_the_rest_in_fifo_order(redis, processor):
    # Given
    tasks.routine.enqueue("first")
    tasks.routine.using(priority=-50).enqueue("negative")  # not distinguished from 0
    tasks.routine.enqueue("third")
    tasks.urgent.enqueue("urgent 1")  # priority=10 from the decorator
    tasks.urgent.using(priority=100).enqueue("urgent 2")

    # When
    drain(processor)

    # Then
    assert [entry["args"][0] for entry in performed()] == ["urgent 2", "urgent 1", "first", "negative", "third"]


def test_queue_name_maps_to_the_queue_of_the_same_name(redis, processor):
    result = tasks.low_queue_task.enqueue("x")

    assert redis.llen("queue:low") == 1
    processor.process_one(block=False)
    assert tasks.low_queue_task.get_result(result.id).status == TaskResultStatus.SUCCESSFUL


# -- transactions -----------------------------------------------------------------------------


def test_enqueue_inside_a_transaction_writes_task_and_result_at_commit_and_nothing_on_rollback(redis):
    # When
    with transaction.atomic():
        kept = tasks.add.enqueue(1, 1)
        assert redis.get(keys.task_result(kept.id)) is None
    try:
        with transaction.atomic():
            dropped = tasks.add.enqueue(2, 2)
            raise RuntimeError("roll back")
    except RuntimeError:
        pass

    # Then
    assert tasks.add.get_result(kept.id).status == TaskResultStatus.READY
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result(dropped.id)
    assert redis.llen("queue:default") == 1



# -- this library's test modes ----------------------------------------------------------------


def test_capture_jobs_captures_the_task_payload_and_writes_no_result(redis):
    with capture_jobs() as jobs:
        result = tasks.add.enqueue(1, 2)

    [job] = jobs
    assert job.payload["class"] == TaskJob.name and job.payload["jid"] == result.id
    assert redis.keys("*") == []
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result(result.id)


def test_inline_backend_runs_the_task_at_once_and_keeps_its_result_in_redis(redis):
    with override_settings(BGJOBS={**settings.BGJOBS, "BACKEND": "inline"}):
        result = tasks.add.enqueue(1, 2)
        assert tasks.add.get_result(result.id).return_value == 3

        with pytest.raises(JobFailure, match="inline failure"):
            tasks.fail.enqueue("inline failure")

# -- signals ----------------------------------------------------------------------------------


def test_task_signals_are_sent_with_the_result_at_each_step(redis, processor):
    # Given
    seen = []

    def receiver(signal, sender, task_result, **kwargs):
        seen.append((signal, sender, task_result.id, task_result.status))

    for signal in (task_enqueued, task_started, task_finished):
        signal.connect(receiver)
    try:
        # When
        ok = tasks.add.enqueue(1, 2)
        processor.process_one(block=False)
        bad = tasks.fail.enqueue()
        processor.process_one(block=False)
    finally:
        for signal in (task_enqueued, task_started, task_finished):
            signal.disconnect(receiver)

    # Then
    assert seen == [
        (task_enqueued, RedisTaskBackend, ok.id, TaskResultStatus.READY),
        (task_started, RedisTaskBackend, ok.id, TaskResultStatus.RUNNING),
        (task_finished, RedisTaskBackend, ok.id, TaskResultStatus.SUCCESSFUL),
        (task_enqueued, RedisTaskBackend, bad.id, TaskResultStatus.READY),
        (task_started, RedisTaskBackend, bad.id, TaskResultStatus.RUNNING),
        (task_finished, RedisTaskBackend, bad.id, TaskResultStatus.FAILED),
    ]


def test_a_raising_task_finished_receiver_does_not_make_a_successful_task_run_again(redis, processor):
    def broken(**kwargs):
        raise RuntimeError("receiver bug")

    task_finished.connect(broken)
    try:
        result = tasks.add.enqueue(1, 2)
        processor.process_one(block=False)
    finally:
        task_finished.disconnect(broken)

    assert tasks.add.get_result(result.id).status == TaskResultStatus.SUCCESSFUL
    assert redis.zcard("retry") == 0 and redis.zcard("dead") == 0


# -- validation -------------------------------------------------------------------------------


def test_unknown_queue_name_is_invalid_when_the_task_is_configured(redis):
    with pytest.raises(InvalidTask, match="Queue 'emails' is not valid for backend"):
        tasks.add.using(queue_name="emails")


def test_queue_name_this_library_cannot_use_is_invalid_even_when_any_queue_is_allowed(redis):
    with override_settings(TASKS={"default": {"BACKEND": "django_bgjobs.tasks.RedisTaskBackend", "QUEUES": []}}):
        assert tasks.add.using(queue_name="emails").queue_name == "emails"
        for name in ("no spaces", "emails\n", ".", ".."):
            with pytest.raises(InvalidTask, match="not a valid queue name for django-bgjobs"):
                tasks.add.using(queue_name=name)


def test_get_result_refuses_an_id_with_a_trailing_newline(redis):
    # Given a result record also stored under the id plus a newline (a key another writer made)
    result = tasks.add.enqueue(1, b=2)
    redis.set(keys.task_result(result.id) + "\n", redis.get(keys.task_result(result.id)))

    # Then only the exact id is a result id
    with pytest.raises(TaskResultDoesNotExist):
        tasks.add.get_result(result.id + "\n")


@pytest.mark.parametrize("priority", [-101, 101, 3.5])
def test_priority_out_of_range_is_invalid(redis, priority):
    with pytest.raises(InvalidTask, match="priority must be a whole number between -100 and 100"):
        tasks.add.using(priority=priority)


def test_naive_run_after_is_invalid_when_use_tz_is_on(redis):
    with pytest.raises(InvalidTask, match="run_after must be an aware datetime"):
        tasks.add.using(run_after=datetime.datetime.now())


def test_queue_removed_from_settings_after_definition_is_invalid_at_enqueue(redis):
    low = tasks.add.using(queue_name="low")

    with override_settings(TASKS={"default": {**settings.TASKS["default"], "QUEUES": ["default"]}}):
        with pytest.raises(InvalidTask, match="Queue 'low' is not valid"):
            low.enqueue(1, 2)

    assert redis.keys("*") == []


@pytest.mark.parametrize(("args", "error"), [
    ((datetime.datetime.now(),), TypeError),
    ((object(),), TypeError),
    ((b"\xff",), ValueError),
    ((float("nan"),), ValueError),
])
def test_arguments_json_cannot_hold_raise_at_enqueue_and_nothing_is_written(redis, args, error):
    with pytest.raises(error):
        tasks.add.enqueue(*args)

    assert redis.keys("*") == []


def test_get_result_of_an_unknown_or_malformed_id_raises_does_not_exist(redis):
    for result_id in ["0" * 24, "123", "../queue:default", 7]:
        with pytest.raises(TaskResultDoesNotExist):
            task_backends["default"].get_result(result_id)



def test_get_result_of_a_task_this_process_never_defined_raises_does_not_exist(redis):
    # Given: a result written by a process that knew a task this one does not
    result = tasks.add.enqueue(1, 2)
    record = stored(redis, result.id)
    redis.set(keys.task_result(result.id), json.dumps({**record, "task": "elsewhere.tasks.unknown"}))

    # Then: the path is not imported to find out
    with pytest.raises(TaskResultDoesNotExist, match="elsewhere.tasks.unknown is not registered in this process"):
        task_backends["default"].get_result(result.id)
    assert "elsewhere" not in sys.modules

# -- result expiry ----------------------------------------------------------------------------


def test_result_expires_result_ttl_s_after_its_last_change(redis, processor):
    with tasks_setting(RESULT_TTL_S=0.5):
        # Given
        result = tasks.add.enqueue(1, 2)
        processor.process_one(block=False)
        assert 0 < redis.pttl(keys.task_result(result.id)) <= 500

        # When / Then
        def expired():
            try:
                tasks.add.get_result(result.id)
            except TaskResultDoesNotExist:
                return True
            return False

        wait_until(expired, timeout=5, message="the result to expire")


def test_default_result_ttl_is_one_day(redis):
    result = tasks.add.enqueue(1, 2)

    assert 86_390_000 < redis.pttl(keys.task_result(result.id)) <= 86_400_000



# -- Redis errors -----------------------------------------------------------------------------


def test_worker_result_writes_are_tried_again_while_redis_fails_then_the_error_is_raised(monkeypatch):
    # Given: a call that fails twice, then works
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) <= 2:
            raise redis_lib.ConnectionError("connection refused")
        return "written"

    # Then
    assert django_bgjobs_tasks._patiently(flaky) == "written"
    assert len(calls) == 3

    # And: past REDIS_PATIENCE_S the last error is raised
    monkeypatch.setattr(django_bgjobs_tasks, "REDIS_PATIENCE_S", 0.2)

    def down():
        raise redis_lib.ConnectionError("still down")

    with pytest.raises(redis_lib.ConnectionError, match="still down"):
        django_bgjobs_tasks._patiently(down)


# -- autodiscovery ----------------------------------------------------------------------------


def test_apps_tasks_modules_are_imported_only_when_a_redis_task_backend_is_configured(monkeypatch):
    imported = []
    monkeypatch.setattr("django.utils.module_loading.autodiscover_modules", imported.append)

    with override_settings(TASKS={"default": {"BACKEND": f"{_compat.SOURCE}.backends.immediate.ImmediateBackend"},
                                  "broken": {"BACKEND": "no.such.Backend"}}):
        django_bgjobs_tasks.autodiscover()
    assert imported == []

    django_bgjobs_tasks.autodiscover()
    assert imported == ["tasks"]

# -- system checks ----------------------------------------------------------------------------


def test_backend_check_is_clean_with_the_test_settings():
    assert list(task_backends["default"].check()) == []


@pytest.mark.parametrize(("params", "expected"), [
    ({"OPTIONS": {"RESULT_TTL": 5}}, ["django_bgjobs.E020"]),
    ({"OPTIONS": {"RETRY": -1}}, ["django_bgjobs.E020"]),
    ({"OPTIONS": {"RESULT_TTL_S": 0}}, ["django_bgjobs.E020"]),
    ({"QUEUES": ["default", "bad queue"]}, ["django_bgjobs.E021"]),
    ({"QUEUES": ["default", "emails"]}, ["django_bgjobs.W020"]),
])
def test_backend_check_reports_each_mistake_with_a_hint(params, expected):
    with override_settings(TASKS={"default": {"BACKEND": "django_bgjobs.tasks.RedisTaskBackend", **params}}):
        messages = list(task_backends["default"].check())

    assert [message.id for message in messages] == expected
    assert all(message.hint for message in messages)


# -- end to end -------------------------------------------------------------------------------


@pytest.mark.slow
def test_send_welcome_runs_on_runjobs_and_its_result_is_readable(redis):
    # Given
    worker = start_worker("-c", "2")
    try:
        # When
        result = tasks.send_welcome.enqueue(7)
        failing = tasks.fail.enqueue("e2e")

        # Then
        def finished():
            result.refresh()
            failing.refresh()
            return result.is_finished and failing.is_finished

        wait_until(finished, timeout=20, message="both tasks to finish on runjobs")
        assert result.status == TaskResultStatus.SUCCESSFUL
        assert result.return_value == "welcome sent to user 7"
        assert failing.status == TaskResultStatus.FAILED
        assert result.worker_ids[0].endswith(f":{worker.pid}")
    finally:
        assert stop_worker(worker) == 0

