"""A job's payload: the one JSON object stored in Redis, in Sidekiq's format.

Fields written at enqueue: ``class``, ``args``, ``jid`` (24 hex chars), ``queue``,
``retry``, ``created_at``, ``enqueued_at`` (epoch seconds, floats, as Sidekiq 6)
and ``at`` for a scheduled job.  The worker adds ``retry_count``,
``error_class``, ``error_message``, ``failed_at``, ``retried_at`` on failure, and
``error_backtrace`` (a list of lines; Sidekiq stores it compressed, we keep it
readable).  :func:`dumps` always writes ``enqueued_at`` last, so the Lua poller
can refresh it in place without re-encoding the arguments (see ``lua/move_to_queue.lua``).
"""

import datetime
import json
import math
import re
import secrets
import time

from django_bgjobs import conf
from django_bgjobs.errors import InvalidOptionError, InvalidPayloadError

QUEUE_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")

#: The deepest a payload may nest JSON arrays and objects, its own object counting as level 1
#: (so its ``args`` list is level 2 and a list passed as an argument level 3).  Ruby's
#: ``JSON.parse`` and ``JSON.generate`` refuse deeper documents by default (``max_nesting:
#: 100``), so Sidekiq could neither write nor read one.  Enqueueing deeper arguments raises
#: :class:`~django_bgjobs.errors.SerializationError`; :func:`loads` refuses a deeper payload
#: read from Redis (the worker buries it instead of retrying it).
MAX_NESTING_DEPTH = 100


def option_seconds(name, value, bound):
    """An option given in seconds or as a timedelta (``wait``, ``expires_in``, ``lock_ttl``), in
    seconds, checked finite and ``bound`` (``">= 0"`` or ``"> 0"``); None stays None.  Raises
    :class:`InvalidOptionError` naming ``name``."""
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise InvalidOptionError(f"{name} must be a number of seconds or a timedelta, not {type(value).__name__}")
    if not math.isfinite(seconds) or seconds < 0 or (bound == "> 0" and seconds == 0):
        wanted = "a finite number of seconds >= 0" if bound == ">= 0" else "more than 0 seconds, and finite"
        raise InvalidOptionError(f"{name} must be {wanted}, got {value!r}")
    return seconds


def new_jid():
    """A fresh job id: 24 lowercase hex characters, like Sidekiq's."""
    return secrets.token_hex(12)


def new_jids(count):
    """``count`` fresh job ids from one call to the system's random source (a bulk enqueue
    would otherwise spend a tenth of its time asking for them one by one)."""
    text = secrets.token_hex(12 * count)
    return [text[i:i + 24] for i in range(0, 24 * count, 24)]


def now_s():
    """Epoch seconds as a float: the unit of every payload time and sorted-set score."""
    return time.time()


# One encoder for every payload: json.dumps with non-default options builds a new one per call.
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def dumps(payload):
    """Encode a payload dict, ``enqueued_at`` last, compactly."""
    if "enqueued_at" in payload and next(reversed(payload)) != "enqueued_at":
        payload = {k: v for k, v in payload.items() if k != "enqueued_at"} | {"enqueued_at": payload["enqueued_at"]}
    return _encode(payload)


#: A payload read back may pass ``MAX_PAYLOAD_BYTES`` by this much: the error fields a failure adds.
ERROR_FIELDS_ALLOWANCE_BYTES = 64 * 1024


def loads(raw):
    """Decode and check a payload read from Redis; raise :class:`InvalidPayloadError` with the reason."""
    limit = conf.get("MAX_PAYLOAD_BYTES")
    if limit is not None and len(raw) > limit + ERROR_FIELDS_ALLOWANCE_BYTES:
        raise InvalidPayloadError(
            f"payload is {len(raw):,} bytes, over BGJOBS['MAX_PAYLOAD_BYTES'] ({limit:,}); not decoded"
        )
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidPayloadError(f"payload is not UTF-8 text ({exc})") from None
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise InvalidPayloadError(f"payload is not valid JSON ({exc})") from None
    except RecursionError:  # json's decoder recurses once per level: thousands of them
        raise InvalidPayloadError(f"payload is nested deeper than MAX_NESTING_DEPTH ({MAX_NESTING_DEPTH}) "
                                  "levels; not decoded") from None
    # Counting brackets first (at C speed) spares the walk to every payload with few of them.
    if raw.count("[") + raw.count("{") > MAX_NESTING_DEPTH and nested_deeper_than(payload, MAX_NESTING_DEPTH):
        raise InvalidPayloadError(f"payload is nested deeper than MAX_NESTING_DEPTH ({MAX_NESTING_DEPTH}) levels")
    if not isinstance(payload, dict):
        raise InvalidPayloadError(f"payload is a JSON {type(payload).__name__}, not an object")
    cls = payload.get("class")
    if not isinstance(cls, str) or not cls:
        raise InvalidPayloadError("payload has no 'class' string")
    if not isinstance(payload.get("args", []), list):
        raise InvalidPayloadError("payload 'args' is not a list")
    payload.setdefault("args", [])
    return payload


def nested_deeper_than(value, limit):
    """True when ``value`` (decoded JSON) nests lists and dicts more than ``limit`` levels deep,
    ``value`` itself counting as level 1.  Iterative: any depth is measured without recursion."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, (list, dict)):
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return False


def describe(raw, limit=200):
    """A short printable excerpt of a raw payload, for log lines about bad input."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"
