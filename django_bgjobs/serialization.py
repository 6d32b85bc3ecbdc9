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
``TypeError``) naming the argument's position and type, before anything is written.
"""

import datetime
import decimal
import uuid

from django_bgjobs.errors import SerializationError

TAG = "__bgjobs__"

_PLAIN = (str, int, float, bool, type(None))
_INF = float("inf")


def encode_args(args, kwargs=None):
    """Return ``args`` as a JSON-ready list (``kwargs``, if any, become a trailing tagged dict)."""
    encoded = [_encode(value, f"argument {index}") for index, value in enumerate(args)]
    if kwargs:
        encoded.append({TAG: "kwargs", "value": {k: _encode(v, f"keyword argument {k!r}") for k, v in kwargs.items()}})
    return encoded


def decode_args(encoded):
    """Return ``(args, kwargs)`` from a payload's ``args`` list, fetching model instances."""
    args = [_decode(value) for value in encoded]
    kwargs = {}
    if args and isinstance(encoded[-1], dict) and encoded[-1].get(TAG) == "kwargs":
        kwargs = args.pop()
    return args, kwargs


def _encode(value, where):
    if isinstance(value, _PLAIN):
        if isinstance(value, float) and (value != value or value in (_INF, -_INF)):
            raise SerializationError(f"{where} is {value!r}, which JSON cannot hold")
        return value
    if isinstance(value, (list, tuple)):
        return [_encode(item, where) for item in value]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise SerializationError(
                    f"{where} is a dict with a {type(key).__name__} key {key!r}; JSON object keys must be str"
                )
            out[key] = _encode(item, where)
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
        return {TAG: "model", "value": [meta.app_label, meta.model_name, _encode(value.pk, where)]}
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
