"""ActiveJob payloads (Sidekiq's ActiveJob adapter) run here, and ours in that form read as Rails'."""

import datetime
import decimal
import json
import uuid

import pytest
from django.conf import settings
from django.test import override_settings

from django_bgjobs.activejob import from_arguments, to_arguments
from django_bgjobs.errors import SerializationError
from django_bgjobs.payload import dumps, loads
from django_bgjobs.serialization import encode_args
from tests.helpers import dead_entries, drain, worker_manager
from tests.testapp.interop_jobs import ToRailsJob
from tests.testapp.jobs import performed

pytestmark = pytest.mark.django_db(transaction=True)  # a dead job gets its FailedJob row

# What Rails 7.1's ActiveJob::Arguments.serialize writes for
#   ReportJob.perform_later(7, "csv", {"a" => 1}, {b: [2]}, :sym, Date.new(2026, 12, 7), user, mode: "full")
RAILS_ARGUMENTS = [
    7, "csv", {"a": 1, "_aj_symbol_keys": []}, {"b": [2], "_aj_symbol_keys": ["b"]},
    {"_aj_serialized": "ActiveJob::Serializers::SymbolSerializer", "value": "sym"},
    {"_aj_serialized": "ActiveJob::Serializers::DateSerializer", "value": "2026-12-07"},
    {"_aj_globalid": "gid://shop/User/42"},
    {"_aj_serialized": "ActiveJob::Serializers::TimeWithZoneSerializer", "value": "2026-12-07T10:00:00.123456789Z",
     "time_zone": "UTC"},
    {"_aj_serialized": "ActiveJob::Serializers::BigDecimalSerializer", "value": "12.50"},
    {"_aj_serialized": "ActiveJob::Serializers::DurationSerializer", "value": 90, "parts": [["minutes", 1.5]]},
    {"mode": "full", "_aj_ruby2_keywords": ["mode"]},
]


def rails_payload(job_class="ReportJob", arguments=RAILS_ARGUMENTS, wrapper="ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper"):
    """A payload as Sidekiq's ActiveJob adapter (Sidekiq 6.4 / Rails 7.1) pushes it."""
    return {
        "class": wrapper, "wrapped": job_class, "queue": "default",
        "args": [{"job_class": job_class, "job_id": str(uuid.uuid4()), "provider_job_id": None,
                  "queue_name": "default", "priority": None, "arguments": arguments, "executions": 0,
                  "exception_executions": {}, "locale": "en", "timezone": "UTC",
                  "enqueued_at": "2026-12-07T10:00:00.000000000Z"}],
        "retry": True, "jid": uuid.uuid4().hex[:24], "created_at": 1_796_688_000.5, "enqueued_at": 1_796_688_000.6,
    }


def test_rails_arguments_become_python_values_and_keyword_arguments():
    args, kwargs = from_arguments(RAILS_ARGUMENTS)

    assert args == [7, "csv", {"a": 1}, {"b": [2]}, "sym", datetime.date(2026, 12, 7), "gid://shop/User/42",
                    datetime.datetime(2026, 12, 7, 10, 0, 0, 123456, tzinfo=datetime.timezone.utc),
                    decimal.Decimal("12.50"), datetime.timedelta(seconds=90)]
    assert kwargs == {"mode": "full"}


def test_a_hash_holding_a_globalid_key_among_others_is_a_plain_hash_as_rails_reads_it():
    args, _ = from_arguments([{"_aj_globalid": "gid://shop/User/1", "note": "x", "_aj_symbol_keys": []}])

    assert args == [{"_aj_globalid": "gid://shop/User/1", "note": "x"}]


@pytest.mark.parametrize("wrapper", ["ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper",
                                     "Sidekiq::ActiveJob::Wrapper"])
def test_worker_runs_an_activejob_payload_with_the_python_job_of_that_name(redis, wrapper):
    # Given: a Rails enqueue (Sidekiq <= 7's wrapper, or Sidekiq 8's)
    payload = rails_payload(wrapper=wrapper)
    redis.lpush("queue:default", dumps(payload))

    # When
    with worker_manager("me:1:aj") as manager:
        drain(manager.processors[0])

    # Then: ReportJob.perform ran with the arguments Rails passed
    [run] = performed()
    assert run["jid"] == payload["jid"] and run["kwargs"] == {"mode": "full"}
    assert run["args"] == [7, "csv", {"a": 1}, {"b": [2]}, "sym", "datetime.date(2026, 12, 7)", "gid://shop/User/42",
                           "datetime.datetime(2026, 12, 7, 10, 0, 0, 123456, tzinfo=datetime.timezone.utc)",
                           "Decimal('12.50')", "datetime.timedelta(seconds=90)"]


@pytest.mark.parametrize("payload, reason", [
    (rails_payload(job_class="NoSuchJob"), "NoSuchJob"),
    (rails_payload(arguments=[{"_aj_serialized": "ActiveJob::Serializers::RangeSerializer", "begin": 1}]),
     "RangeSerializer"),
    ({**rails_payload(), "args": ["not an object"]}, "job_class"),
])
def test_an_activejob_payload_that_cannot_run_goes_to_the_dead_set_with_the_reason(redis, payload, reason):
    redis.lpush("queue:default", dumps(payload))

    with worker_manager("me:1:aj") as manager:
        drain(manager.processors[0])

    [dead] = dead_entries(redis)
    assert dead["jid"] == payload["jid"] and reason in dead["error_message"] and performed() == []


def test_a_job_with_activejob_true_is_pushed_in_the_form_rails_reads(redis):
    # When
    handle = ToRailsJob.perform_later(1, {"k": "v"}, datetime.date(2026, 1, 2), decimal.Decimal("1.5"),
                                      uuid.UUID(int=5), when=datetime.datetime(2026, 1, 2, 3, 4, tzinfo=datetime.UTC))

    # Then: Sidekiq's ActiveJob wrapper, the Rails class in "wrapped" and "job_class", and
    # arguments as ActiveJob::Arguments.deserialize reads them
    payload = json.loads(redis.lrange("queue:default", 0, -1)[0])
    assert payload["class"] == "ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper"
    assert payload["wrapped"] == "DigestMailerJob" and payload["jid"] == handle.jid
    [data] = payload["args"]
    assert data["job_class"] == "DigestMailerJob" and data["queue_name"] == "default" and data["executions"] == 0
    uuid.UUID(data["job_id"])
    assert data["arguments"] == [
        1, {"k": "v", "_aj_symbol_keys": []},
        {"_aj_serialized": "ActiveJob::Serializers::DateSerializer", "value": "2026-01-02"},
        {"_aj_serialized": "ActiveJob::Serializers::BigDecimalSerializer", "value": "1.5"},
        str(uuid.UUID(int=5)),
        {"when": {"_aj_serialized": "ActiveJob::Serializers::TimeSerializer", "value": "2026-01-02T03:04:00.000000+00:00"},
         "_aj_ruby2_keywords": ["when"]},
    ]

    # And a Python worker runs it too, with the same arguments
    with worker_manager("me:1:aj") as manager:
        drain(manager.processors[0])
    [run] = performed()
    assert run["args"] == [1, {"k": "v"}, "datetime.date(2026, 1, 2)", "Decimal('1.5')", str(uuid.UUID(int=5))]
    assert run["kwargs"] == {"when": "datetime.datetime(2026, 1, 2, 3, 4, tzinfo=datetime.timezone.utc)"}


def test_the_wrapper_class_follows_sidekiq_8(redis):
    with override_settings(BGJOBS={**settings.BGJOBS, "SIDEKIQ_VERSION": 8}):
        ToRailsJob.perform_later(1)

    assert loads(redis.lrange("queue:default", 0, -1)[0])["class"] == "Sidekiq::ActiveJob::Wrapper"


def test_a_value_rails_cannot_read_is_refused_at_enqueue_with_nothing_written(redis):
    with pytest.raises(SerializationError, match="naive datetime"):
        ToRailsJob.perform_later(datetime.datetime(2026, 1, 2))
    assert redis.dbsize() == 0
    assert to_arguments(encode_args([[1, {"x": None}]])) == [[1, {"x": None, "_aj_symbol_keys": []}]]
