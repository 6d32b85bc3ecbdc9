"""Job arguments to and from JSON.  JSON only: nothing is ever pickled or evaluated.

Plain JSON values (str, int, float, bool, None, lists, dicts with str keys) are
stored as they are, so a payload reads the same as a Sidekiq one.  A few Python
types are stored as a one-key object tagged ``"__bgjobs__"``:

* ``datetime``, ``date``, ``time`` as ISO 8601, ``Decimal`` as its string, ``UUID``
  as its string, a ``tuple`` as a list;
* a Django model instance as a reference ``[app_label, model_name, pk]``, fetched
  fresh from the database when the job runs (a row deleted meanwhile raises
  ``Model.DoesNotExist`` in the worker, which then retries like any failure).

Anything else raises :class:`~django_bgjobs.errors.SerializationError` (a
``TypeError``) naming the argument's position and type, before anything is written; so
do lists and dicts nested deeper than :data:`~django_bgjobs.payload.MAX_NESTING_DEPTH`
allows (100 levels in the whole payload, as Ruby's JSON reads; a list or dict given as an
argument starts at level 3, inside the payload object and its ``args`` list).
"""

import datetime
import decimal
import uuid

from django_bgjobs.errors import SerializationError
from django_bgjobs.payload import MAX_NESTING_DEPTH

TAG = "__bgjobs__"

_PLAIN = (str, int, float, bool, type(None))
_INF = float("inf")
# The level of an argument in the payload: the payload object is 1, its args list 2.
_ARGUMENT_LEVEL = 3


def encode_args(args, kwargs=None):
    """Return ``args`` as a JSON-ready list (``kwargs``, if any, become a trailing tagged dict)."""
    encoded = [_encode(value, f"argument {index}", _ARGUMENT_LEVEL) for index, value in enumerate(args)]
    if kwargs:
        # The tagged object is at the argument level, its "value" object one deeper.
        values = {k: _encode(v, f"keyword argument {k!r}", _ARGUMENT_LEVEL + 2) for k, v in kwargs.items()}
        encoded.append({TAG: "kwargs", "value": values})
    return encoded


def decode_args(encoded):
    """Return ``(args, kwargs)`` from a payload's ``args`` list, fetching model instances."""
    args = [_decode(value) for value in encoded]
    kwargs = {}
    if args and isinstance(encoded[-1], dict) and encoded[-1].get(TAG) == "kwargs":
        kwargs = args.pop()
    return args, kwargs


def _encode(value, where, level):
    """``value`` as JSON-ready data; ``level`` is where it sits in the payload (lists and dicts
    count, :data:`MAX_NESTING_DEPTH` at most; every non-plain value is stored as one)."""
    if isinstance(value, _PLAIN):
        if isinstance(value, float) and (value != value or value in (_INF, -_INF)):
            raise SerializationError(f"{where} is {value!r}, which JSON cannot hold")
        return value
    # A model reference is two levels: the tagged object and its [app, model, pk] list.
    if level + (getattr(value, "_meta", None) is not None) > MAX_NESTING_DEPTH:
        raise SerializationError(
            f"{where} is nested too deep: a payload nests lists and dicts at most {MAX_NESTING_DEPTH} levels "
            f"deep (MAX_NESTING_DEPTH; the payload object and its args list are the first two), as Sidekiq's "
            "JSON reads them"
        )
    if isinstance(value, (list, tuple)):
        return [_encode(item, where, level + 1) for item in value]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise SerializationError(
                    f"{where} is a dict with a {type(key).__name__} key {key!r}; JSON object keys must be str"
                )
            out[key] = _encode(item, where, level + 1)
        if TAG in out:
            raise SerializationError(f"{where} is a dict using the reserved key {TAG!r}")
        return out
    if isinstance(value, datetime.datetime):
        return {TAG: "datetime", "value": value.isoformat()}
    if isinstance(value, datetime.date):
        return {TAG: "date", "value": value.isoformat()}
    if isinstance(value, datetime.time):
        return {TAG: "time", "value": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {TAG: "decimal", "value": str(value)}
    if isinstance(value, uuid.UUID):
        return {TAG: "uuid", "value": str(value)}
    meta = getattr(value, "_meta", None)
    if meta is not None and hasattr(meta, "concrete_model") and hasattr(value, "pk"):
        if value.pk is None:
            raise SerializationError(f"{where} is an unsaved {meta.label} instance; save it first or pass its fields")
        return {TAG: "model", "value": [meta.app_label, meta.model_name, _encode(value.pk, where, level + 2)]}
    raise SerializationError(
        f"{where} is of type {type(value).__module__}.{type(value).__qualname__}, which cannot be stored as JSON; "
        "pass an id or plain values instead"
    )


def _decode(value):
    if isinstance(value, list):
        return [_decode(item) for item in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(TAG)
    if tag is None:
        return {key: _decode(item) for key, item in value.items()}
    raw = value.get("value")
    if tag == "datetime":
        return datetime.datetime.fromisoformat(raw)
    if tag == "date":
        return datetime.date.fromisoformat(raw)
    if tag == "time":
        return datetime.time.fromisoformat(raw)
    if tag == "decimal":
        try:
            return decimal.Decimal(raw)
        except decimal.InvalidOperation:  # an ArithmeticError, not a ValueError
            raise ValueError(f"{raw!r} is not a decimal") from None
    if tag == "uuid":
        return uuid.UUID(raw)
    if tag == "kwargs":
        if not isinstance(raw, dict):
            raise ValueError(f"keyword arguments are a {type(raw).__name__}, not an object")
        return {key: _decode(item) for key, item in raw.items()}
    if tag == "model":
        from django.apps import apps

        app_label, model_name, pk = raw
        model = apps.get_model(app_label, model_name)
        return model._default_manager.get(pk=_decode(pk))
    raise ValueError(f"unknown argument tag {tag!r}")
