"""django_bgjobs.job: options checked at class creation, names, set(), perform_now."""

import dataclasses
import datetime

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_bgjobs import ConfiguredJob, Job, client, registry
from django_bgjobs.errors import BgJobsError, ConfigurationError, InvalidOptionError
from django_bgjobs.testing import capture_jobs
from tests.testapp.jobs import FailingJob, JobFailure, LowQueueJob, RecordJob, ReturnJob


# -- options checked when the class is created -------------------------------------------------


@pytest.mark.parametrize("queue", ["has space", "x" * 129, "", "queue:colon", None, 5, "default\n", ".", ".."])
def test_class_creation_fails_when_queue_name_is_invalid(queue):
    with pytest.raises(ConfigurationError, match=r"BadQueueJob: queue name .* is invalid"):
        type("BadQueueJob", (Job,), {"queue": queue, "perform": lambda self: None})


def test_class_creation_fails_when_schedulable_is_not_a_bool():
    with pytest.raises(ConfigurationError, match="BadSchedulableJob: schedulable must be True or False, not 'yes'"):
        type("BadSchedulableJob", (Job,), {"schedulable": "yes", "perform": lambda self: None})


@pytest.mark.parametrize("retry", [-1, 2.5, "3"])
def test_class_creation_fails_when_retry_is_not_a_whole_number_or_bool(retry):
    with pytest.raises(ConfigurationError, match="retry must be True, False or a whole number >= 0"):
        type("BadRetryJob", (Job,), {"retry": retry, "perform": lambda self: None})


@pytest.mark.parametrize("timeout", [0, -1, float("inf"), float("nan"), "30", True, pytest.param(10**400, id="10**400"), 1e308])
def test_class_creation_fails_when_timeout_is_not_a_positive_number_of_seconds(timeout):
    with pytest.raises(ConfigurationError, match=r"BadTimeoutJob: timeout must be None or a number of seconds > 0"):
        type("BadTimeoutJob", (Job,), {"timeout": timeout, "perform": lambda self: None})


@pytest.mark.parametrize("timeout", [None, 30, 0.5])
def test_timeout_is_kept_when_none_or_a_positive_number(timeout):
    job_class = type("GoodTimeoutJob", (Job,), {"timeout": timeout, "perform": lambda self: None})

    assert job_class.timeout == timeout


@pytest.mark.parametrize(
    ("option", "suggestion"),
    [("queue_as", "queue"), ("queue_name", "queue"), ("max_retries", "retry"), ("sidekiq_options", "queue / retry"),
     ("time_limit", "timeout"), ("timeout_s", "timeout")],
)
def test_class_creation_fails_naming_the_right_option_when_option_is_misspelled(option, suggestion):
    with pytest.raises(ConfigurationError, match=f"sets unknown option '{option}'; did you mean {suggestion}"):
        type("MisspelledJob", (Job,), {option: "low", "perform": lambda self: None})


def test_class_creation_fails_when_perform_is_missing():
    with pytest.raises(ConfigurationError, match="must define a perform"):
        class NoPerformJob(Job):
            queue = "default"


def test_configuration_error_is_improperly_configured_and_library_error():
    assert issubclass(ConfigurationError, ImproperlyConfigured)
    assert issubclass(ConfigurationError, BgJobsError)


def test_abstract_base_is_not_registered_when_abstract_is_set_but_its_subclass_is():
    # When
    class BaseMailJob(Job):
        abstract = True
        queue = "low"

    class WelcomeMailJob(BaseMailJob):
        def perform(self):
            pass

    # Then
    assert BaseMailJob.name not in registry.all_jobs() and BaseMailJob.name is None
    assert registry.get(WelcomeMailJob.name) is WelcomeMailJob
    assert WelcomeMailJob.queue == "low"


# -- names -----------------------------------------------------------------------------------


def test_name_defaults_to_module_and_qualified_name_when_not_set():
    assert RecordJob.name == "tests.testapp.jobs.RecordJob"
    assert registry.get("tests.testapp.jobs.RecordJob") is RecordJob


def test_name_is_stored_in_payload_when_overridden(redis):
    # Given
    class HardWorker(Job):
        name = "HardWorker"

        def perform(self, *args):
            pass

    # When
    with_name = HardWorker.perform_later(1)

    # Then
    assert registry.get("HardWorker") is HardWorker
    assert with_name.job_class is HardWorker
    assert '"class":"HardWorker"' in redis.lindex("queue:default", 0)


def test_class_creation_fails_naming_both_classes_when_two_jobs_share_a_name():
    # Given
    class FirstJob(Job):
        name = "tests.shared-name"

        def perform(self):
            pass

    # When / Then
    with pytest.raises(ConfigurationError, match=r"'tests.shared-name' is used by both .*FirstJob and .*SecondJob"):
        class SecondJob(Job):
            name = "tests.shared-name"

            def perform(self):
                pass

    assert registry.get("tests.shared-name") is FirstJob


def test_class_creation_fails_when_name_is_empty():
    with pytest.raises(ConfigurationError, match="name must be a non-empty string"):
        type("EmptyNameJob", (Job,), {"name": "", "perform": lambda self: None})


def test_redefining_the_same_class_replaces_it_when_module_is_reloaded():
    # Given: the same module path and qualified name twice, as a module reload produces
    def define():
        return type("ReloadedJob", (Job,), {"__module__": "tests.reloaded", "perform": lambda self: None})

    first = define()

    # When
    second = define()

    # Then
    assert registry.get("tests.reloaded.ReloadedJob") is second is not first


# -- set() -------------------------------------------------------------------------------------


def test_set_returns_an_immutable_configured_job_when_options_are_valid():
    # When
    configured = RecordJob.set(queue="low", retry=3)

    # Then
    assert isinstance(configured, ConfiguredJob)
    assert (configured.job_class, configured.queue, configured.retry) == (RecordJob, "low", 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        configured.queue = "critical"


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"queue": "with space"}, ValueError, "queue name 'with space' is invalid"),
        ({"queue": "q" * 300}, ValueError, "is invalid"),
        ({"queue": "default\n"}, ValueError, "queue name 'default\\\\n' is invalid"),
        ({"queue": "."}, ValueError, "queue name '.' is invalid"),
        ({"queue": ".."}, ValueError, "not '.' or '..'"),
        ({"retry": -2}, ValueError, "retry must be"),
        ({"wait": -1}, ValueError, "wait must be a finite number of seconds >= 0"),
        ({"wait": float("inf")}, ValueError, "finite"),
        ({"wait": float("nan")}, ValueError, "finite"),
        ({"wait": 10**400}, ValueError, "wait must be .* at most 100 years, got an integer of 1329 bits"),
        ({"wait": 10**5000}, ValueError, "at most 100 years"),
        ({"wait": 1e308}, ValueError, "at most 100 years, got 1e\\+308"),
        ({"wait": datetime.timedelta.max}, ValueError, "at most 100 years"),
        ({"expires_in": 10**400}, ValueError, "expires_in must be more than 0 seconds, and finite, at most 100"),
        ({"expires_in": float("inf")}, ValueError, "expires_in must be"),
        ({"wait": "10"}, TypeError, "wait must be a number of seconds or a timedelta, not str"),
        ({"wait": True}, TypeError, "not bool"),
        ({"wait": 1, "wait_until": datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)}, ValueError, "not both"),
        ({"wait_until": "2030-01-01"}, TypeError, "wait_until must be a datetime"),
        ({"wait_until": datetime.datetime(2030, 1, 1)}, ValueError, "naive datetime while USE_TZ=True"),
    ],
)
def test_set_raises_when_option_is_invalid(options, error, message):
    with pytest.raises(error, match=message) as raised:
        RecordJob.set(**options)
    # one root for the library's errors, and the built-in class the mistake would raise elsewhere
    assert isinstance(raised.value, InvalidOptionError) and isinstance(raised.value, BgJobsError)


def test_perform_bulk_refuses_an_item_that_is_not_a_tuple_of_args(redis):
    with pytest.raises(InvalidOptionError, match="perform_bulk item 1 is a int; give a tuple of args"):
        RecordJob.perform_bulk([(1,), 2])
    assert redis.keys("*") == []


def test_set_wait_counts_from_each_perform_later_when_configured_job_is_kept(monkeypatch):
    # Given: a configured job made once, as a module-level constant would be
    clock = [1_000_000.0]
    monkeypatch.setattr(client, "now_s", lambda: clock[0])
    in_an_hour = RecordJob.set(wait=3600)

    # When: it is used two hours later
    clock[0] += 7200
    with capture_jobs() as jobs:
        in_an_hour.perform_later()

    # Then: an hour after *that* call, not in the past
    assert jobs[0].scheduled_at == 1_000_000.0 + 7200 + 3600


# -- perform_now and the instance ----------------------------------------------------------------


def test_perform_now_runs_in_process_without_redis_when_called(redis):
    assert ReturnJob.perform_now({"x": 1}) == {"x": 1}
    assert RecordJob.set(queue="low").perform_now() is None
    assert redis.keys("queue:*") == []


def test_perform_now_propagates_exception_when_perform_raises():
    with pytest.raises(JobFailure, match="now"):
        FailingJob.perform_now("now")


def test_job_instance_knows_jid_queue_and_retry_count_when_performed_now():
    # Given
    seen = {}

    class InspectJob(Job):
        queue = "low"

        def perform(self):
            seen.update(jid=self.jid, queue=self.queue_name, retry_count=self.retry_count)

    # When
    InspectJob.perform_now()

    # Then
    assert len(seen["jid"]) == 24
    assert seen["queue"] == "low"
    assert seen["retry_count"] is None


def test_class_queue_option_routes_perform_later_when_set(redis):
    LowQueueJob.perform_later()

    assert redis.llen("queue:low") == 1
    assert redis.smembers("queues") == {"low"}


def test_perform_later_with_a_huge_wait_writes_nothing_and_raises_invalid_option_error(redis):
    with pytest.raises(InvalidOptionError, match="wait must be"):
        RecordJob.set(wait=10**400).perform_later(1)
    with pytest.raises(InvalidOptionError, match="expires_in must be"):
        RecordJob.set(expires_in=float("nan")).perform_later(1)
    assert redis.keys("*") == []

# -- arguments bound to perform at enqueue ------------------------------------------------------


class TwoArgsJob(Job):
    name = "tests.test_job.TwoArgsJob"

    def perform(self, user_id, email_type="welcome"):
        return None


class UncheckedJob(Job):
    """Opts out: its perform's signature does not say what it takes."""

    name = "tests.test_job.UncheckedJob"
    bind_arguments = False

    def perform(self, user_id):
        return None


def _enqueue_sync(how, *args, **kwargs):
    if how == "perform_later":
        return TwoArgsJob.perform_later(*args, **kwargs)
    if how == "set().perform_later":
        return TwoArgsJob.set(queue="low", wait=60).perform_later(*args, **kwargs)
    if how == "aperform_later":
        return async_to_sync(TwoArgsJob.aperform_later)(*args, **kwargs)
    if how == "perform_bulk":
        return TwoArgsJob.perform_bulk([(1,), args])
    return async_to_sync(TwoArgsJob.aperform_bulk)([(1,), args])


ENQUEUE_CALLS = ["perform_later", "set().perform_later", "aperform_later", "perform_bulk", "aperform_bulk"]


@pytest.mark.parametrize("how", ENQUEUE_CALLS)
def test_enqueue_raises_type_error_naming_job_and_parameter_and_writes_nothing_when_an_argument_is_missing(redis, how):
    with pytest.raises(TypeError, match=r"tests.test_job.TwoArgsJob.perform\(self, user_id, email_type='welcome'\)"
                                        r": missing a required argument: 'user_id'"):
        _enqueue_sync(how)
    assert redis.keys("*") == []


@pytest.mark.parametrize("how", ENQUEUE_CALLS)
def test_enqueue_raises_type_error_and_writes_nothing_when_there_are_too_many_arguments(redis, how):
    with pytest.raises(TypeError, match=r"TwoArgsJob.perform\(.*\): too many positional arguments"):
        _enqueue_sync(how, 1, "welcome", "extra")
    assert redis.keys("*") == []


@pytest.mark.parametrize("how", ["perform_later", "set().perform_later", "aperform_later"])
def test_enqueue_raises_type_error_naming_the_keyword_when_perform_has_no_such_parameter(redis, how):
    with pytest.raises(TypeError, match=r"TwoArgsJob.perform\(.*\): got an unexpected keyword argument 'kind'"):
        _enqueue_sync(how, 1, kind="digest")
    assert redis.keys("*") == []


def test_enqueue_raises_type_error_when_capturing_jobs_or_inline(redis):
    with capture_jobs() as jobs, pytest.raises(TypeError, match="missing a required argument: 'user_id'"):
        TwoArgsJob.perform_later()
    assert len(jobs) == 0
    with override_settings(BGJOBS={**settings.BGJOBS, "BACKEND": "inline"}), \
            pytest.raises(TypeError, match="missing a required argument: 'user_id'"):
        TwoArgsJob.perform_later(email_type="digest")


def test_enqueue_accepts_arguments_that_fit_by_position_or_keyword(redis):
    TwoArgsJob.perform_later(1)
    TwoArgsJob.perform_later(1, "digest")
    TwoArgsJob.perform_later(user_id=1, email_type="digest")
    TwoArgsJob.perform_bulk([(1,), (2, "digest")])

    assert redis.llen("queue:default") == 5


def test_arguments_reach_the_queue_unbound_when_the_job_sets_bind_arguments_false(redis):
    # When
    UncheckedJob.perform_later(1, 2, 3, extra=True)

    # Then: written as given; the worker does not bury it either (a mistake fails the attempt)
    assert redis.llen("queue:default") == 1
    from django_bgjobs import execution
    from django_bgjobs.payload import loads

    job, args, kwargs = execution.instantiate(loads(redis.lindex("queue:default", 0)))
    assert (args, kwargs) == ([1, 2, 3], {"extra": True})
