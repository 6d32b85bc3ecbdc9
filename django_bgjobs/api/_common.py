"""Small helpers shared by the monitoring API's modules (no Redis access at import)."""

from django_bgjobs import conf
from django_bgjobs.connection import get_redis
from django_bgjobs.payload import valid_queue_name

DEFAULT_PAGE_SIZE = 100


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
    """A Redis counter or hash field as an int; 0 when missing or not a number."""
    try:
        return int(text(value))
    except (TypeError, ValueError):
        return 0


def to_float(value):
    """A Redis hash field as a float; None when missing or not a number."""
    try:
        return float(text(value))
    except (TypeError, ValueError):
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
