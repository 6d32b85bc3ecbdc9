"""django_bgjobs.serialization: arguments to JSON and back, through a real Redis."""

import datetime
import decimal
import json
import math
import uuid

import pytest

from django_bgjobs import execution
from django_bgjobs.errors import SerializationError
from django_bgjobs.payload import MAX_NESTING_DEPTH, loads
from django_bgjobs.serialization import TAG, decode_args, encode_args
from tests.testapp.jobs import AuthorJob, RecordJob, RecordKwargsJob, performed
from tests.testapp.models import Author


def through_redis(redis, job_class, *args, **kwargs):
    """Enqueue for real, read the payload back from Redis and decode it as the worker does."""
    job_class.perform_later(*args, **kwargs)
    raw = redis.rpop("queue:default")
    return loads(raw)


def test_plain_json_values_are_stored_as_they_are_when_enqueued(redis):
    # Given: what a Sidekiq (Ruby) client would store, readable by it too
    args = ["text", 42, 2.5, True, None, [1, [2]], {"nested": {"k": [None]}}]

    # When
    payload = through_redis(redis, RecordJob, *args)

    # Then
    assert payload["args"] == args
    assert decode_args(payload["args"]) == (args, {})


@pytest.mark.parametrize(
    "value",
    [
        datetime.datetime(2024, 5, 17, 9, 30, 15, 123456, tzinfo=datetime.UTC),
        datetime.datetime(2024, 5, 17, 9, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))),
        datetime.datetime(2024, 5, 17, 9, 30),
        datetime.date(2024, 2, 29),
        datetime.time(23, 59, 58, 1),
        decimal.Decimal("12345678901234567890.000000001"),
        decimal.Decimal("-0.10"),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
    ],
    ids=["aware-utc", "aware-offset", "naive", "date", "time", "decimal-big", "decimal-trailing-zero", "uuid"],
)
def test_python_value_comes_back_equal_and_same_type_when_round_tripped(redis, value):
    # When
    payload = through_redis(redis, RecordJob, value, [value], {"in": value})

    # Then
    args, kwargs = decode_args(payload["args"])
    assert args == [value, [value], {"in": value}]
    assert type(args[0]) is type(value)
    assert str(args[0]) == str(value)  # same precision, offset and exponent
    assert kwargs == {}


def test_tagged_values_are_readable_json_when_stored(redis):
    payload = through_redis(redis, RecordJob, decimal.Decimal("1.10"), datetime.date(2024, 1, 2))

    assert payload["args"] == [
        {TAG: "decimal", "value": "1.10"},
        {TAG: "date", "value": "2024-01-02"},
    ]


def test_tuple_is_stored_as_a_list_when_enqueued(redis):
    payload = through_redis(redis, RecordJob, (1, (2, 3)))

    assert decode_args(payload["args"]) == ([[1, [2, 3]]], {})


def test_keyword_arguments_come_back_as_kwargs_when_given(redis):
    # When
    when = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    payload = through_redis(redis, RecordKwargsJob, 1, when=when, note="x")

    # Then
    assert payload["args"][-1] == {
        TAG: "kwargs", "value": {"when": {TAG: "datetime", "value": when.isoformat()}, "note": "x"},
    }
    assert decode_args(payload["args"]) == ([1], {"when": when, "note": "x"})


@pytest.mark.django_db(transaction=True)  # committed, so perform_later pushes at once
def test_model_instance_is_stored_as_reference_and_fetched_fresh_when_job_runs(redis):
    # Given
    author = Author.objects.create(name="Ada")
    payload = through_redis(redis, AuthorJob, author)

    # When: the row changes after the enqueue
    Author.objects.filter(pk=author.pk).update(name="Ada Lovelace")
    execution.perform_inline(payload)

    # Then
    assert payload["args"] == [{TAG: "model", "value": ["testapp", "author", author.pk]}]
    assert performed(redis)[0]["args"] == [author.pk, "Ada Lovelace"]


@pytest.mark.django_db(transaction=True)
def test_model_reference_raises_does_not_exist_when_row_was_deleted(redis):
    # Given
    author = Author.objects.create(name="Ada")
    payload = through_redis(redis, AuthorJob, author)

    # When
    author.delete()

    # Then: an ordinary (retryable) failure, not a broken payload
    with pytest.raises(Author.DoesNotExist):
        decode_args(payload["args"])


def test_unsaved_model_instance_is_refused_when_enqueued(redis):
    with pytest.raises(SerializationError, match="argument 0 is an unsaved testapp.Author instance"):
        AuthorJob.perform_later(Author(name="not saved"))

    assert redis.dbsize() == 0


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((object(),), {}, r"argument 0 is of type builtins.object"),
        ((1, {1, 2}), {}, r"argument 1 is of type builtins.set"),
        ((1, 2, frozenset()), {}, r"argument 2 is of type builtins.frozenset"),
        ((b"bytes",), {}, r"argument 0 is of type builtins.bytes"),
        ((math.nan,), {}, r"argument 0 is nan"),
        ((-math.inf,), {}, r"argument 0 is -inf"),
        (({1: "a"},), {}, r"argument 0 is a dict with a int key 1; JSON object keys must be str"),
        (([1, {"deep": [object()]}],), {}, r"argument 0 is of type builtins.object"),
        (({TAG: "model"},), {}, r"argument 0 is a dict using the reserved key '__bgjobs__'"),
        ((), {"when": object()}, r"keyword argument 'when' is of type builtins.object"),
    ],
    ids=["object", "set", "frozenset", "bytes", "nan", "minus-inf", "int-key", "nested", "reserved-key", "kwarg"],
)
def test_encode_raises_type_error_naming_position_and_type_when_value_is_not_json(args, kwargs, message):
    with pytest.raises(SerializationError, match=message) as failure:
        encode_args(args, kwargs)

    assert isinstance(failure.value, TypeError)


def _nested(levels):
    value = "bottom"
    for _ in range(levels):
        value = [value]
    return value


def test_arguments_nested_up_to_the_payload_limit_round_trip(redis):
    # Given: the deepest argument a payload holds: 98 lists inside its object and args list
    deep = _nested(MAX_NESTING_DEPTH - 2)

    # When
    payload = through_redis(redis, RecordJob, deep)

    # Then
    assert payload["args"] == [deep]


@pytest.mark.parametrize("enqueue", [
    lambda deep: RecordJob.perform_later(deep),
    lambda deep: RecordJob.set(queue="low").perform_later("fine", deep),
    lambda deep: RecordJob.perform_bulk([("fine",), (deep,)]),
    lambda deep: RecordKwargsJob.perform_later(1, extra=_nested(MAX_NESTING_DEPTH - 3)),
    lambda deep: RecordJob.perform_later({"a": deep}),
], ids=["perform_later", "set", "perform_bulk", "kwarg", "in-a-dict"])
def test_arguments_nested_deeper_than_the_payload_limit_are_refused_and_nothing_is_written(redis, enqueue):
    # Given: one level more than a payload may hold (a keyword argument sits two levels deeper)
    deep = _nested(MAX_NESTING_DEPTH - 1)

    # When
    with pytest.raises(SerializationError, match=r"is nested too deep: .* at most 100 levels deep \(MAX_NESTING_DEPTH"):
        enqueue(deep)

    # Then
    assert redis.dbsize() == 0


def test_an_argument_that_contains_itself_is_refused_as_too_deep(redis):
    looped = []
    looped.append(looped)

    with pytest.raises(SerializationError, match="argument 0 is nested too deep"):
        RecordJob.perform_later(looped)

    assert redis.dbsize() == 0


def test_decode_raises_value_error_when_tag_is_unknown():
    with pytest.raises(ValueError, match="unknown argument tag 'pickle'"):
        decode_args([{TAG: "pickle", "value": "gASV..."}])


def test_encoded_args_are_plain_json_when_encoded():
    encoded = encode_args([datetime.date(2024, 1, 1), uuid.UUID(int=1)], {"d": decimal.Decimal("1")})

    assert json.loads(json.dumps(encoded, allow_nan=False)) == encoded
