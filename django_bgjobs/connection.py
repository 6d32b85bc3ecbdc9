"""The Redis connection every part of django-bgjobs shares, created on first use.

Where it comes from, in order: ``BGJOBS["REDIS"] = {"CACHE": alias}`` reuses a
django-redis cache's client; ``BGJOBS["REDIS"] = {...}`` passes keyword arguments
to ``redis.Redis``; otherwise ``BGJOBS["REDIS_URL"]`` (the ``REDIS_URL``
environment variable wins when set).  Importing this module opens nothing.

A client we build gets ``BGJOBS["SOCKET_CONNECT_TIMEOUT_S"]`` and ``["SOCKET_TIMEOUT_S"]``
(so a vanished or silent server makes a call fail in seconds instead of hanging) and no
automatic retry inside redis-py: a command re-sent after its reply was lost would run twice
(a job enqueued twice, a job fetched into the in-flight list while the caller gets another).
Callers decide: the client raises ``EnqueueError`` (or retries per ``ENQUEUE_RETRIES``), the
worker backs off and reconciles.  A django-redis cache's client is used as it is configured.

:func:`answers` and :func:`unless_wrong_type` are for readers of a database other programs
write too (the monitoring API, batch status): a key of another type reads as empty there.
"""

import re
import threading

import redis
from django.core.signals import setting_changed
from django.dispatch import receiver
from redis.backoff import NoBackoff
from redis.retry import Retry

from django_bgjobs import conf
from django_bgjobs.errors import ConfigurationError

_lock = threading.Lock()
_client = None
_owned = False  # True when we made the client (a django-redis cache's client is not ours to close)


def get_redis():
    """Return the shared ``redis.Redis`` client (thread-safe; one pool per process)."""
    global _client, _owned
    client = _client
    if client is None:
        with _lock:
            if _client is None:
                _client, _owned = _make_client()
            client = _client
    return client


def _make_client():
    """Return ``(client, owned)``."""
    options = conf.get("REDIS")
    if options and "CACHE" in options:
        try:
            from django_redis import get_redis_connection
        except ImportError as exc:  # pragma: no cover - django-redis is a dependency
            raise ConfigurationError("BGJOBS['REDIS']['CACHE'] needs django-redis installed") from exc
        return get_redis_connection(options["CACHE"]), False
    if options:
        return redis.Redis(**{**_client_defaults(), **options}), True
    url = conf.get("REDIS_URL")
    try:
        return redis.Redis.from_url(url, health_check_interval=30, **_client_defaults()), True
    except ValueError as exc:
        # from None: redis-py's own message may quote a piece of the password ("Port could
        # not be cast to integer value as 'pa'" for an unquoted '/' in it).
        raise ConfigurationError(
            f"BGJOBS['REDIS_URL'] is not a valid Redis URL: {redact_url(url)} ({_without_secrets(str(exc), url)})"
        ) from None


# Up to the LAST "@": a password may hold an unquoted "@" or "/"; hiding too much is harmless.
_USERINFO_RE = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)?(?P<userinfo>.*)@", re.DOTALL)
_SECRET_PARAM_RE = re.compile(
    r"(?i)(?P<name>[?&;][^=&;#]*(?:pass|pwd|secret|token|auth|key)[^=&;#]*=)(?P<value>[^&;#]*)"
)


def redact_url(url):
    """``url`` (a Redis, Sentinel or any other URL, well formed or not) with its credentials
    shown as ``***``: the user and password (``redis://***@host:6379/0``) and the value of a
    query parameter such as ``password=``.  Every message that shows a URL shows this."""
    text = _USERINFO_RE.sub(lambda match: f"{match.group('scheme') or ''}***@", str(url), count=1)
    return _SECRET_PARAM_RE.sub(lambda match: f"{match.group('name')}***", text)


def _without_secrets(message, url):
    """``message`` (about ``url``) with every piece of ``url``'s credentials replaced by ``***``."""
    text = str(url)
    match = _USERINFO_RE.match(text)
    pieces = re.split(r"[:@/]", match.group("userinfo")) if match else []
    pieces += [found.group("value") for found in _SECRET_PARAM_RE.finditer(text)]
    for piece in sorted({piece for piece in pieces if len(piece) > 1}, key=len, reverse=True):
        message = message.replace(piece, "***")
    return message


def _client_defaults():
    """Timeouts and retry policy for a client we build (keyword arguments the user gives win)."""
    return {
        "socket_connect_timeout": conf.get("SOCKET_CONNECT_TIMEOUT_S"),
        "socket_timeout": conf.get("SOCKET_TIMEOUT_S"),
        "retry": Retry(NoBackoff(), 0),
    }


def blocking_wait_s(client, wanted_s):
    """How long a blocking command (``BLMOVE``) on ``client`` may wait: ``wanted_s``, cut to
    stay clear of the client's socket timeout, so the server answers before the socket gives
    up (a reply that arrives after the client stopped listening would strand a fetched job)."""
    timeout_s = client.connection_pool.connection_kwargs.get("socket_timeout")
    if not timeout_s:
        return wanted_s
    return min(wanted_s, max(timeout_s - 1, timeout_s / 2))


def eviction_policy(client=None):
    """Redis's ``maxmemory-policy``, from ``INFO memory`` (allowed by managed services that
    disable ``CONFIG``), or None when Redis does not say.  Network I/O."""
    return (client or get_redis()).info("memory").get("maxmemory_policy")


def eviction_warning(policy):
    """What to tell the operator when ``policy`` lets Redis drop keys, or None."""
    if policy in (None, "noeviction"):
        return None
    return (
        f"Redis maxmemory-policy is {policy!r}: when Redis is full it deletes keys to make room, so jobs "
        "(queues, the schedule, retry and dead sets, heartbeats) can be lost without a trace. "
        "Set maxmemory-policy to noeviction, as Sidekiq recommends: a full Redis then refuses new jobs "
        "(perform_later raises EnqueueError) instead of dropping old ones."
    )


def describe():
    """A short ``host:port/db`` of the configured server, for log lines and errors."""
    kwargs = get_redis().connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}/{kwargs.get('db', 0)}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def reset():
    """Forget the shared client (after a settings change, or in a forked child)."""
    global _client
    with _lock:
        old, _client = _client, None
    if old is not None and _owned:
        old.connection_pool.disconnect()


@receiver(setting_changed)
def _reset(setting, **kwargs):
    if setting == "BGJOBS":
        reset()


# -- reading a database other programs write too -------------------------------------------


def is_wrong_type(error):
    """True for the error Redis answers a command on a key holding another type (WRONGTYPE)."""
    return isinstance(error, redis.ResponseError) and "WRONGTYPE" in str(error)


def unless_wrong_type(default, read, *args, **kwargs):
    """``read(*args, **kwargs)``, or ``default`` when its key holds another type: the
    monitoring side reads a database other programs write too, and shows what it can."""
    try:
        return read(*args, **kwargs)
    except redis.ResponseError as exc:
        if is_wrong_type(exc):
            return default
        raise


def answers(pipe):
    """Run a pipeline of reads; each answer, or None for a command on a key of another type."""
    results = pipe.execute(raise_on_error=False)
    for result in results:
        if isinstance(result, Exception) and not is_wrong_type(result):
            raise result
    return [None if isinstance(result, Exception) else result for result in results]
