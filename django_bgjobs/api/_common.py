"""Small helpers shared by the monitoring API's modules (no Redis access at import)."""

import json
import math

from django_bgjobs import conf
from django_bgjobs.connection import answers, get_redis, unless_wrong_type  # noqa: F401 - for the API modules
from django_bgjobs.payload import valid_queue_name

DEFAULT_PAGE_SIZE = 100
# A Redis integer is a signed 64-bit number: a longer "counter" is not one.
_REDIS_INT_RANGE = range(-2**63, 2**63)


class RedisUser:
    """Base of every API object: holds an optional client, else uses the shared one on first use."""

    def __init__(self, client=None):
        self._client = client

    @property
    def redis(self):
        """The ``redis.Redis`` client this object talks to (the shared one unless one was given)."""
        if self._client is None:
            self._client = get_redis()
        return self._client


def text(value):
    """``value`` as ``str`` whether the client decodes responses or not (None stays None)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def to_int(value):
    """A Redis counter or hash field as an int; 0 when missing, not a number or outside Redis's
    64-bit range (``3`` followed by 400 zeros is not a counter Redis could have kept)."""
    try:
        number = int(text(value))
    except (TypeError, ValueError):
        return 0
    return number if number in _REDIS_INT_RANGE else 0


def to_float(value):
    """A Redis hash field as a finite float; None when missing, not a number, or infinite."""
    try:
        number = float(text(value))
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def json_or_none(raw):
    """Decoded JSON, or None when ``raw`` is not JSON (or nested too deep to decode)."""
    try:
        return json.loads(text(raw))
    except (TypeError, ValueError, RecursionError):
        return None


def queue_name_of(item):
    """The queue a payload belongs to, ``"default"`` when it names none (as Sidekiq's client does)."""
    name = item.get("queue")
    return name if valid_queue_name(name) else "default"


def configured_queue_names():
    """Queue names from ``BGJOBS["QUEUES"]`` without their ``,weight`` suffix."""
    names = []
    for entry in conf.get("QUEUES") or ():
        if isinstance(entry, str):
            names.append(entry.rsplit(",", 1)[0].strip())
        elif isinstance(entry, (list, tuple)) and entry:
            names.append(str(entry[0]))
    return [name for name in names if name]


def glob_escape(substring):
    """Escape Redis glob characters so ``MATCH`` looks for ``substring`` literally."""
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in substring)
