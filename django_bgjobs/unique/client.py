"""Unique jobs, the client side: a Job's lock options, its lock digest, and the client
middleware :class:`UniqueLocks`, which makes the push take the lock and write the job in one
atomic step (a guard and writes attached to ``lua/push.lua``'s call).

::

    class GenerateReportJob(Job):
        lock = "until_executed"
        on_conflict = "log"
        lock_ttl = timedelta(hours=1)

        def lock_args(self, user_id, report_type):
            return (user_id, report_type)

A lock's key is ``unique:DIGEST``, where the digest covers the job's ``name``, its queue and
its ``lock_args`` (all its arguments by default) as JSON.  The lock is a hash naming the
job holding it, and always has a TTL: ``lock_ttl``, or ``BGJOBS["UNIQUE_LOCK_TTL_S"]``
(24 h), counted from when the job is due, so a lock never outlives its job for long.  The
payload carries ``lock`` and ``lock_digest`` so the worker needs nothing else to release it
(``unique/server.py``).  Lock types and what releases them:

``until_executing``
    Enqueue refused while an equal job waits; freed when a worker starts it.
``until_executed``
    Freed when the job succeeds, dies or is dropped; kept while it waits to retry.
``while_executing``
    Any number wait; a worker takes a run lock (``unique:DIGEST:run``) at start and the
    second one to start goes back to the schedule set for a few seconds.
``until_and_while_executing``
    Both: the enqueue lock is handed over for the run lock at start.
``until_expired``
    Only its TTL (``lock_ttl``, required) frees it.

The inline backend and the test capture ignore locks: they write nothing to Redis.
"""

import hashlib
import json
import logging
import math
from dataclasses import dataclass

from django_bgjobs import client, conf, job, keys, registry, serialization, signals
from django_bgjobs.errors import ConfigurationError, InvalidOptionError, UniqueJobError, UnknownJobError
from django_bgjobs.payload import dumps, now_s, option_seconds, printable, timestamp

logger = logging.getLogger(__name__)

LOCK_TYPES = ("until_executing", "until_executed", "while_executing", "until_and_while_executing", "until_expired")
#: What may happen to a job enqueued while its lock is held.
CLIENT_STRATEGIES = ("log", "raise", "reject", "replace")
#: What may happen to a job started while its run lock is held.
SERVER_STRATEGIES = ("reschedule", "log", "reject", "raise")
_HAS_CLIENT_SIDE = {"until_executing", "until_executed", "until_and_while_executing", "until_expired"}
_HAS_SERVER_SIDE = {"while_executing", "until_and_while_executing"}


@dataclass(frozen=True)
class LockOptions:
    """A Job class's lock options, checked: what ``Job.__init_subclass__`` stores."""

    lock: str
    #: The strategy when enqueueing finds the lock held (None for while_executing).
    client_conflict: str | None
    #: The strategy when starting finds the run lock held (None without a run lock).
    server_conflict: str | None
    #: ``lock_ttl`` in seconds, or None for ``UNIQUE_LOCK_TTL_S``.
    ttl_s: float | None
    custom_args: bool

    def ttl_ms(self, due_in_s=0.0):
        """The lock's TTL in milliseconds for a job due in ``due_in_s`` seconds."""
        ttl_s = self.ttl_s if self.ttl_s is not None else conf.get("UNIQUE_LOCK_TTL_S")
        return max(1, int(math.ceil((max(due_in_s, 0.0) + ttl_s) * 1000)))


def options_for(cls, where):
    """Check the lock options of Job class ``cls``; return :class:`LockOptions` or None (no lock).

    Raises :class:`ConfigurationError` naming ``where`` (``module.QualName``) on a mistake.
    """
    lock = getattr(cls, "lock", None)
    on_conflict = getattr(cls, "on_conflict", None)
    lock_ttl = getattr(cls, "lock_ttl", None)
    if lock is None:
        for name, value in (("on_conflict", on_conflict), ("lock_ttl", lock_ttl)):
            if value is not None:
                raise ConfigurationError(f"{where} sets {name} but no lock; set lock = one of {', '.join(LOCK_TYPES)}")
        return None
    if lock not in LOCK_TYPES:
        raise ConfigurationError(f"{where}.lock is {lock!r}; use one of {', '.join(LOCK_TYPES)}")
    ttl_s = _ttl_seconds(lock_ttl, where)
    if lock == "until_expired" and ttl_s is None:
        raise ConfigurationError(f"{where}: lock = 'until_expired' needs a lock_ttl (seconds or a timedelta)")
    client_conflict, server_conflict = _strategies(lock, on_conflict, where)
    lock_args = getattr(cls, "lock_args", None)
    if lock_args is not None and not callable(lock_args):
        raise ConfigurationError(f"{where}.lock_args must be a method returning the arguments the lock covers")
    return LockOptions(lock, client_conflict, server_conflict, ttl_s, lock_args is not None)


def _ttl_seconds(lock_ttl, where):
    try:
        return option_seconds("lock_ttl", lock_ttl, "> 0")
    except InvalidOptionError as exc:
        raise ConfigurationError(f"{where}.{exc}") from None


def _strategies(lock, on_conflict, where):
    """``(client, server)`` strategies from ``on_conflict``: None, one name, or a dict
    ``{"client": ..., "server": ...}``.  A single name goes to the side(s) it fits."""
    client_default = "log" if lock in _HAS_CLIENT_SIDE else None
    server_default = "reschedule" if lock in _HAS_SERVER_SIDE else None
    if on_conflict is None:
        return client_default, server_default
    if isinstance(on_conflict, dict):
        unknown = set(on_conflict) - {"client", "server"}
        if unknown:
            raise ConfigurationError(f"{where}.on_conflict has unknown key(s) {sorted(unknown)}; use 'client', 'server'")
        client = on_conflict.get("client", client_default)
        server = on_conflict.get("server", server_default)
        if "client" in on_conflict and lock not in _HAS_CLIENT_SIDE:
            raise ConfigurationError(f"{where}: a {lock} lock is not checked at enqueue; drop on_conflict['client']")
        if "server" in on_conflict and lock not in _HAS_SERVER_SIDE:
            raise ConfigurationError(f"{where}: a {lock} lock takes no run lock; drop on_conflict['server']")
        if client is not None and client not in CLIENT_STRATEGIES:
            raise ConfigurationError(f"{where}.on_conflict['client'] is {client!r}; use one of {', '.join(CLIENT_STRATEGIES)}")
        if server is not None and server not in SERVER_STRATEGIES:
            raise ConfigurationError(f"{where}.on_conflict['server'] is {server!r}; use one of {', '.join(SERVER_STRATEGIES)}")
        return client, server
    if not isinstance(on_conflict, str):
        raise ConfigurationError(f"{where}.on_conflict must be a strategy name or a dict, not {type(on_conflict).__name__}")
    client = on_conflict if client_default and on_conflict in CLIENT_STRATEGIES else client_default
    server = on_conflict if server_default and on_conflict in SERVER_STRATEGIES else server_default
    if on_conflict not in (client, server):
        sides = [s for s, ok in (("enqueue", client_default), ("start", server_default)) if ok]
        allowed = sorted(set((CLIENT_STRATEGIES if client_default else ()) + (SERVER_STRATEGIES if server_default else ())))
        raise ConfigurationError(
            f"{where}.on_conflict is {on_conflict!r}, which does not apply to a {lock} lock (checked at "
            f"{' and '.join(sides)}); use one of {', '.join(allowed)}"
        )
    return client, server


def lock_digest(job_class, queue, args, kwargs, encoded_args):
    """The digest naming the lock of a ``job_class`` job on ``queue`` with these arguments.

    ``encoded_args`` is the payload's ``args`` (used as they are when the class has no
    ``lock_args``).  JSON with sorted keys, so equal arguments give equal digests.
    """
    if job_class._lock_options.custom_args:
        covered = job_class().lock_args(*args, **kwargs)
        if not isinstance(covered, (list, tuple)):
            covered = (covered,)
        encoded_args = serialization.encode_args(tuple(covered), {})
    text = json.dumps([job_class.name, queue, encoded_args], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def stamp(payload, job_class, args, kwargs):
    """Add ``lock`` and ``lock_digest`` to a payload being built for a class with a ``lock``
    (one of ``job.payload_stamps``, run by ``ConfiguredJob.build_payloads``, where the
    arguments are still Python values for ``lock_args``)."""
    if job_class._lock_options is None:
        return
    payload["lock"] = job_class._lock_options.lock
    payload["lock_digest"] = lock_digest(job_class, payload["queue"], args, kwargs, payload["args"])


class UniqueLocks:
    """Client middleware (built in, :data:`conf.CLIENT_BUILTINS`): a payload with a
    ``lock_digest`` whose class takes its lock at enqueue is written only if the lock is free
    -- or, for ``on_conflict = "replace"``, by taking it over from the waiting holder, which is
    removed -- and the lock is written with it, in the push's atomic step (a guard and writes
    attached to the push, :class:`django_bgjobs.client.Push`).  Two clients enqueueing the same
    job at the same instant enqueue it once, and a lock never exists without its job.

    After the write (:func:`settle`): a refused payload is logged (``"log"``), raised as
    :class:`UniqueJobError` (``"raise"``; logged when the push waited for a transaction's
    commit, too late to raise), or is in the dead set with its reason (``"reject"``, written in
    the same atomic step).  ``perform_later`` returns None for it.
    """

    def __init__(self, call_next):
        self.call_next = call_next

    def __call__(self, payload):
        if "lock_digest" not in payload:
            return self.call_next(payload)
        payload = self.call_next(payload)
        if payload is None or "lock_digest" not in payload:
            return payload
        push = client.current_push()
        if push is None:  # a chain called by hand, outside client.push: nothing to write with
            return payload
        options = _options(push.job_class, payload)
        if options is None or options.client_conflict is None:
            return payload  # while_executing: its lock is taken when it starts
        push.guard(payload["jid"], _guard(options, payload), on_result=settle)
        for command in _lock_writes(options, payload):
            push.write(payload["jid"], *command)
        return payload


def _options(job_class, payload):
    """The lock options of the payload's class (None when unknown or without a lock)."""
    if job_class is None or job_class.name != payload.get("class"):
        try:
            job_class = registry.get(payload.get("class"))
        except UnknownJobError:
            return None
    options = job_class._lock_options
    return options if options is not None and options.lock == payload.get("lock") else None


def _guard(options, payload):
    key = keys.unique_lock(payload["lock_digest"])
    jid = payload["jid"]
    if options.client_conflict == "replace":
        return client.Guard.absent(key, "jid", jid, evict=(keys.queue(payload["queue"]), keys.schedule(), "raw", "at"))
    if options.client_conflict == "reject":
        now = now_s()
        return client.Guard.absent(key, "jid", jid, refused=[
            ("ZADD", keys.dead(), now, dumps(_dead_entry(options, payload, now))),
            ("ZREMRANGEBYSCORE", keys.dead(), "-inf", now - conf.get("DEAD_TIMEOUT_S")),
            ("ZREMRANGEBYRANK", keys.dead(), 0, -conf.get("DEAD_MAX_JOBS") - 1),
        ])
    return client.Guard.absent(key, "jid", jid)


def _dead_entry(options, payload, now):
    """The payload as it goes to the dead set when ``on_conflict = "reject"`` refuses it."""
    reason = f"a job with the same {options.lock} lock is already enqueued (unique lock {payload['lock_digest']})"
    return dict(payload, error_class="django_bgjobs.errors.UniqueJobError", error_message=reason, failed_at=timestamp(now),
                dead_reason=reason)


def _lock_writes(options, payload):
    """The writes that take the lock, done with the push: the hash (its ``raw`` kept for
    ``"replace"``, to find the job again) and its TTL, counted from when the job is due."""
    now = now_s()
    at = payload.get("at")
    key = keys.unique_lock(payload["lock_digest"])
    fields = ["jid", payload["jid"], "class", payload["class"], "queue", payload["queue"], "lock", options.lock,
              "at", "" if at is None else repr(float(at)), "bid", payload.get("bid") or "",
              "locked_at", repr(float(now))]
    if options.client_conflict == "replace":
        fields += ["raw", client.PAYLOAD]
    return [("HSET", key, *fields), ("PEXPIRE", key, options.ttl_ms(0 if at is None else at - now))]


def settle(push, payload, result):
    """Act on the fate of a payload whose lock was checked (see :class:`UniqueLocks`); return
    the :class:`UniqueJobError` to raise, or None."""
    options = _options(push.job_class, payload)
    if options is None:
        return None
    jid = payload["jid"]
    where = f"{payload['class']} jid={jid} ({payload['lock']} lock {payload['lock_digest']})"  # written here
    if result.written:
        if result.guard is not None:  # replaced: the holder's waiting payload was removed
            logger.info("%s replaced jid=%s%s", where, printable(result.current),
                        "" if result.evicted else " (no longer waiting)")
        return None
    if result.guard is None:
        return None  # refused by another guard (a recurring tick already taken): not the lock's doing
    holder = result.current
    if options.client_conflict == "reject":
        logger.warning("%s moved to the dead set: duplicate of jid=%s", where, printable(holder))
        dead = json.loads(result.guard.spec["refused"][0][3])  # the ZADD of _guard's refused writes
        signals.notify(signals.job_died, push.job_class, payload=dead, exception=None, reason=dead["dead_reason"])
    elif options.client_conflict == "raise" and not push.deferred:
        return UniqueJobError(f"{where} not enqueued: jid={holder} holds the lock", holder, payload["lock_digest"])
    else:
        log = logger.error if options.client_conflict == "raise" else logger.info
        log("%s not enqueued: jid=%s holds the lock", where, holder)
    return None


def _check_class(cls, where):
    """One of ``job.class_checks``: a Job subclass's lock options, checked as it is created."""
    cls._lock_options = options_for(cls, where)


job.class_checks.append(_check_class)
job.payload_stamps.append(stamp)
