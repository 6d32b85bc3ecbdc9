"""django_bgjobs.execution: payload -> job instance -> perform, the one path the worker, inline and tests share."""

import sys

import pytest

from django_bgjobs import Job, execution, signals
from django_bgjobs.errors import InvalidPayloadError, UnknownJobError
from django_bgjobs.payload import dumps, loads, new_jid
from django_bgjobs.serialization import TAG
from tests.testapp.jobs import FailingJob, JobFailure, RecordKwargsJob, ReturnJob
from tests.testapp.models import Author


def payload_for(class_name, args=(), **fields):
    """A payload as read back from Redis (after the JSON round trip)."""
    return loads(dumps({"class": class_name, "args": list(args), "jid": new_jid(), "queue": "default", **fields}))


@pytest.fixture
def received():
    """(signal name, sender, kwargs) for every job signal sent during the test, in order."""
    seen = []
    receivers = {}
    for name in ("job_started", "job_succeeded", "job_failed"):
        def receiver(sender, _name=name, **kwargs):
            seen.append((_name, sender, kwargs))

        receivers[name] = receiver
        getattr(signals, name).connect(receiver)
    yield seen
    for name, receiver in receivers.items():
        getattr(signals, name).disconnect(receiver)


# -- instantiate -------------------------------------------------------------------------------


def test_instantiate_returns_job_with_jid_payload_and_decoded_args_when_payload_is_valid():
    # Given
    encoded = [1, {TAG: "decimal", "value": "2.50"}, {TAG: "kwargs", "value": {"k": "v"}}]
    payload = payload_for(RecordKwargsJob.name, encoded)

    # When
    job, args, kwargs = execution.instantiate(payload)

    # Then
    assert type(job) is RecordKwargsJob
    assert job.jid == payload["jid"]
    assert job.payload is payload
    assert [type(a).__name__ for a in args] == ["int", "Decimal"] and str(args[1]) == "2.50"
    assert kwargs == {"k": "v"}


@pytest.mark.parametrize("name", ["NoSuchJob", "tests.testapp.jobs.Nope", "tests.testapp.models.Author", "Job"])
def test_instantiate_raises_unknown_job_error_when_class_is_not_registered(name):
    with pytest.raises(UnknownJobError, match=f"no registered Job is named '{name}'"):
        execution.instantiate(payload_for(name))


@pytest.mark.parametrize("name", ["os.system", "antigravity.Fly", "this.Job", "subprocess.Popen", "builtins.eval"])
def test_instantiate_imports_nothing_when_payload_names_a_module(name):
    # Given
    before = set(sys.modules)

    # When
    with pytest.raises(UnknownJobError):
        execution.instantiate(payload_for(name, ["rm -rf /"]))

    # Then
    assert set(sys.modules) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "missing a required argument: 'value'"),
        ([1, 2], "too many positional arguments"),
        ([1, {TAG: "kwargs", "value": {"other": 2}}], "unexpected keyword argument 'other'"),
    ],
)
def test_instantiate_raises_invalid_payload_error_when_args_do_not_fit_perform(args, message):
    expected = rf"do not fit tests.testapp.jobs.ReturnJob.perform\(self, value\).*{message}"
    with pytest.raises(InvalidPayloadError, match=expected):
        execution.instantiate(payload_for(ReturnJob.name, args))


@pytest.mark.parametrize(
    "arg",
    [
        {TAG: "pickle", "value": "x"},
        {TAG: "date", "value": "not a date"},
        {TAG: "decimal", "value": "abc"},
        {TAG: "model", "value": ["noapp", "nomodel", 1]},
        {TAG: "model", "value": ["testapp"]},
        {TAG: "kwargs", "value": ["not", "a", "dict"]},
        {TAG: "uuid", "value": "not-a-uuid"},
    ],
    ids=["unknown-tag", "bad-date", "bad-decimal", "unknown-model", "short-model-ref", "kwargs-list", "bad-uuid"],
)
def test_instantiate_raises_invalid_payload_error_when_args_cannot_be_decoded(arg):
    with pytest.raises(InvalidPayloadError, match="arguments cannot be decoded"):
        execution.instantiate(payload_for(ReturnJob.name, [arg]))


@pytest.mark.django_db
def test_instantiate_raises_does_not_exist_when_model_row_is_gone():
    # A missing row may come back (replica lag, a later commit): an ordinary, retryable failure
    payload = payload_for("tests.testapp.jobs.AuthorJob", [{TAG: "model", "value": ["testapp", "author", 999_999]}])

    with pytest.raises(Author.DoesNotExist):
        execution.instantiate(payload)


def test_instantiate_accepts_sidekiq_payload_when_fields_are_extra():
    payload = payload_for(ReturnJob.name, [7], retry=3, created_at=1.0, enqueued_at=2.0, tags=["x"], bid="batch")

    job, args, kwargs = execution.instantiate(payload)

    assert (args, kwargs) == ([7], {})


# -- run and signals ---------------------------------------------------------------------------


def test_run_sends_started_then_succeeded_with_result_when_perform_returns(received):
    # Given
    job, args, kwargs = execution.instantiate(payload_for(ReturnJob.name, ["result"]))

    # When
    result = execution.run(job, args, kwargs)

    # Then
    assert result == "result"
    assert [(name, sender) for name, sender, _ in received] == [
        ("job_started", ReturnJob), ("job_succeeded", ReturnJob),
    ]
    started, succeeded = received[0][2], received[1][2]
    assert started["job"] is job and started["payload"] is job.payload
    assert succeeded["result"] == "result"
    assert succeeded["duration_s"] >= 0


def test_run_sends_started_then_failed_and_reraises_when_perform_raises(received):
    # Given
    job, args, kwargs = execution.instantiate(payload_for(FailingJob.name, ["bad"]))

    # When
    with pytest.raises(JobFailure, match="bad") as failure:
        execution.run(job, args, kwargs)

    # Then
    assert [(name, sender) for name, sender, _ in received] == [("job_started", FailingJob), ("job_failed", FailingJob)]
    assert received[1][2]["exception"] is failure.value
    assert received[1][2]["duration_s"] >= 0


def test_perform_starts_after_started_signal_when_run(received):
    # Given
    order = []

    class OrderJob(Job):
        def perform(self):
            order.append(("perform", [name for name, _, _ in received]))

    job, args, kwargs = execution.instantiate(payload_for(OrderJob.name))

    # When
    execution.run(job, args, kwargs)

    # Then
    assert order == [("perform", ["job_started"])]


def test_perform_inline_returns_result_when_payload_is_valid():
    assert execution.perform_inline(payload_for(ReturnJob.name, [{"a": [1]}])) == {"a": [1]}


def test_perform_now_passes_python_objects_as_they_are_when_nothing_is_stored():
    # perform_now stores nothing, so it needs no JSON: the very object arrives
    marker = object()

    assert ReturnJob.perform_now(marker) is marker
