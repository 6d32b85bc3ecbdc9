"""Rails ActiveJob payloads, as Sidekiq's ActiveJob adapter writes them, in both directions.

A Rails app on Sidekiq enqueues an ActiveJob job as a wrapper::

    {"class": "ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper",   # Sidekiq 8: "Sidekiq::ActiveJob::Wrapper"
     "wrapped": "SomeJob", "queue": "default", "args": [{
         "job_class": "SomeJob", "job_id": "<uuid>", "provider_job_id": null, "queue_name": "default",
         "priority": null, "arguments": [...], "executions": 0, "exception_executions": {},
         "locale": "en", "timezone": "UTC", "enqueued_at": "2026-12-07T10:00:00.000000000Z"}],
     "retry": true, "jid": "...", "created_at": ..., "enqueued_at": ...}

**Running them.**  The wrappers are registered Job names (:class:`RailsJobWrapper`,
:class:`SidekiqActiveJobWrapper`); a worker that takes such a payload runs the Python Job
whose ``name`` is the ``job_class`` (``name = "SomeJob"``), with its retry rules, hooks and
middleware, and ``perform`` gets ``arguments`` converted by :func:`from_arguments`.

**Enqueuing them.**  A Job with ``activejob = True`` is pushed in that form (the built-in
client middleware :class:`ActiveJobForm`, innermost), so a Rails worker runs it; its wrapper
class name follows ``BGJOBS["SIDEKIQ_VERSION"]``.  A Python worker runs it too.

**Arguments** (Rails' ``ActiveJob::Arguments``): JSON values as they are; a hash with
``_aj_symbol_keys`` or ``_aj_hash_with_indifferent_access`` is a dict (keys are strings
either way); a last hash with ``_aj_ruby2_keywords`` is the keyword arguments; a GlobalID
(``{"_aj_globalid": "gid://app/User/1"}``) arrives as its string (look the record up
yourself); ``_aj_serialized`` values: symbols as strings, ``Date`` as ``date``, ``Time`` /
``DateTime`` / ``ActiveSupport::TimeWithZone`` as aware ``datetime``, ``BigDecimal`` as
``Decimal``, ``ActiveSupport::Duration`` as ``timedelta``.  Anything else makes the payload
unreadable: it goes to the dead set with the reason.  Going the other way, dicts, keyword
arguments, ``datetime``, ``date``, ``Decimal`` and ``UUID`` (a string) are written as Rails
7.1 and later read them (``Decimal`` uses the ``BigDecimalSerializer`` that Rails 7.1 added); a model instance is refused at enqueue (pass its id: there is no GlobalID here).
"""

import datetime
import decimal
import uuid

from django_bgjobs import client, conf, registry, serialization
from django_bgjobs.errors import InvalidPayloadError, SerializationError
from django_bgjobs.job import Job

#: The wrapper class Sidekiq's ActiveJob adapter writes, by Sidekiq version (``Changes.md``, 8.0).
WRAPPER_CLASS = {6: "ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper",
                 7: "ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper",
                 8: "Sidekiq::ActiveJob::Wrapper"}

_SYMBOL_KEYS = "_aj_symbol_keys"
_RUBY2_KEYWORDS = "_aj_ruby2_keywords"
_INDIFFERENT = "_aj_hash_with_indifferent_access"
_GLOBALID = "_aj_globalid"
_SERIALIZED = "_aj_serialized"
_MARKERS = (_SYMBOL_KEYS, _RUBY2_KEYWORDS, _INDIFFERENT)
_SERIALIZER = "ActiveJob::Serializers::{}Serializer"


# -- Rails -> Python -----------------------------------------------------------------------------


def from_arguments(arguments):
    """``(args, kwargs)`` for an ActiveJob ``arguments`` list (see the module docstring);
    raises ``ValueError`` naming what it cannot convert."""
    if not isinstance(arguments, list):
        raise ValueError(f"ActiveJob arguments are a {type(arguments).__name__}, not a list")
    kwargs = {}
    if arguments and isinstance(arguments[-1], dict) and _RUBY2_KEYWORDS in arguments[-1]:
        kwargs, arguments = _from(arguments[-1]), arguments[:-1]
    return [_from(value) for value in arguments], kwargs


def _from(value):
    if isinstance(value, list):
        return [_from(item) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and _GLOBALID in value:  # Rails' serialized_global_id?: that one key only
        return value[_GLOBALID]
    if _SERIALIZED in value:
        return _deserialize(value[_SERIALIZED], value.get("value"))
    return {key: _from(item) for key, item in value.items() if key not in _MARKERS}


def _deserialize(serializer, value):
    kind = serializer.removeprefix("ActiveJob::Serializers::").removesuffix("Serializer")
    if kind in ("Symbol", "Module"):
        return value
    if kind == "Date":
        return datetime.date.fromisoformat(value)
    if kind in ("Time", "DateTime", "TimeWithZone"):
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if kind == "BigDecimal":
        try:
            return decimal.Decimal(value)
        except decimal.InvalidOperation:
            raise ValueError(f"{value!r} is not a BigDecimal") from None
    if kind == "Duration":
        return datetime.timedelta(seconds=value)
    raise ValueError(f"ActiveJob serializer {serializer!r} has no Python equivalent here")


class RailsJobWrapper(Job):
    """The ActiveJob payloads of Sidekiq up to 7 (``ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper``)."""

    name = WRAPPER_CLASS[7]

    @classmethod
    def resolve(cls, payload):
        """The Job named by the payload's ``job_class``, with its ActiveJob ``arguments``."""
        args = payload.get("args")
        data = args[0] if isinstance(args, list) and len(args) == 1 else None
        if not isinstance(data, dict) or not isinstance(data.get("job_class"), str):
            raise InvalidPayloadError("an ActiveJob payload's args must be one object with a job_class")
        job_class = registry.get(data["job_class"])
        try:
            return (job_class, *from_arguments(data.get("arguments", [])))
        except (ValueError, TypeError, AttributeError) as exc:
            raise InvalidPayloadError(f"ActiveJob arguments cannot be converted: {exc}") from None

    def perform(self, job_data):  # never called: resolve() runs the wrapped Job instead
        raise NotImplementedError


class SidekiqActiveJobWrapper(RailsJobWrapper):
    """The ActiveJob payloads of Sidekiq 8 (``Sidekiq::ActiveJob::Wrapper``)."""

    name = WRAPPER_CLASS[8]


# -- Python -> Rails -----------------------------------------------------------------------------


def to_arguments(args):
    """Our encoded ``args`` (``serialization.encode_args``) as an ActiveJob ``arguments`` list."""
    return [_to(value, f"argument {index}") for index, value in enumerate(args)]


def _to(value, where):
    if isinstance(value, list):
        return [_to(item, where) for item in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(serialization.TAG)
    if tag is None:
        return {**{key: _to(item, where) for key, item in value.items()}, _SYMBOL_KEYS: []}
    raw = value["value"]
    if tag == "kwargs":
        return {**{key: _to(item, f"keyword argument {key!r}") for key, item in raw.items()},
                _RUBY2_KEYWORDS: list(raw)}
    if tag == "datetime":
        parsed = datetime.datetime.fromisoformat(raw)
        if parsed.tzinfo is None:
            raise SerializationError(f"{where} is a naive datetime; Rails needs an aware one")
        return {_SERIALIZED: _SERIALIZER.format("Time"), "value": parsed.isoformat(timespec="microseconds")}
    if tag == "date":
        return {_SERIALIZED: _SERIALIZER.format("Date"), "value": raw}
    if tag == "decimal":
        return {_SERIALIZED: _SERIALIZER.format("BigDecimal"), "value": raw}
    if tag == "uuid":
        return raw
    raise SerializationError(f"{where} ({tag}) has no ActiveJob form; pass plain values (a model: its id)")


class ActiveJobForm:
    """Built-in client middleware (innermost): a payload of a Job with ``activejob = True``
    is written as Sidekiq's ActiveJob adapter writes it (see the module docstring)."""

    def __init__(self, call_next):
        self.call_next = call_next

    def __call__(self, payload):
        push = client.current_push()
        if push is None or not getattr(push.job_class, "activejob", False):
            return self.call_next(payload)
        created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
        payload["args"] = [{
            "job_class": payload["class"], "job_id": str(uuid.uuid4()), "provider_job_id": None,
            "queue_name": payload["queue"], "priority": None, "arguments": to_arguments(payload["args"]),
            "executions": 0, "exception_executions": {}, "locale": "en", "timezone": "UTC",
            "enqueued_at": created.replace("+00:00", "Z"),
        }]
        payload["wrapped"] = payload["class"]
        payload["class"] = WRAPPER_CLASS[conf.get("SIDEKIQ_VERSION")]
        return self.call_next(payload)
