"""Unique jobs, the client side: a Job's lock options, its lock digest, and the enqueue that
takes the lock and pushes the job in one atomic step (``lua/unique_push.lua``).

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
(``worker/hooks.py``).  Lock types and what releases them:

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

from django_bgjobs import conf, keys, scripts, serialization, signals
from django_bgjobs.errors import ConfigurationError, InvalidOptionError, UniqueJobError
from django_bgjobs.payload import dumps, option_seconds

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
    """Add ``lock`` and ``lock_digest`` to a payload being built (``client.build_payloads``)."""
    payload["lock"] = job_class._lock_options.lock
    payload["lock_digest"] = lock_digest(job_class, payload["queue"], args, kwargs, payload["args"])


def queue_push(pipe, job_class, payload, raw, now):
    """Queue on ``pipe`` (a MULTI) the Lua call that takes ``payload``'s lock and pushes it."""
    options = job_class._lock_options
    at = payload.get("at")
    bid = payload.get("bid") or ""
    dead_raw = ""
    if options.client_conflict == "reject":
        reason = f"a job with the same {options.lock} lock is already enqueued (unique lock {payload['lock_digest']})"
        dead_raw = dumps(dict(payload, error_class="django_bgjobs.errors.UniqueJobError", error_message=reason,
                              failed_at=now, dead_reason=reason))
    scripts.run(
        "unique_push",
        [keys.unique_lock(payload["lock_digest"]), keys.queue(payload["queue"]), keys.schedule(), keys.queues(),
         keys.dead(), keys.batch(bid), keys.batch_jids(bid)],
        [options.client_conflict or "log", raw, payload["jid"], payload["queue"], "" if at is None else repr(float(at)),
         "R" if payload.get("priority", 0) > 0 else "L", options.ttl_ms(0 if at is None else at - now),
         payload["class"], options.lock, bid, repr(float(now)), dead_raw,
         repr(float(now - conf.get("DEAD_TIMEOUT_S"))), conf.get("DEAD_MAX_JOBS"),
         max(1, math.ceil(conf.get("BATCH_UNFINISHED_TTL_S")))],
        client=pipe,
    )
    return dead_raw


def settle(job_class, locked, results, deferred):
    """Act on the answers of the ``unique_push`` calls of one push.

    ``locked`` is a list of ``(payload, raw, dead_raw)`` and ``results`` their answers.
    Returns ``(refused, error)``: the set of jids not enqueued, and the
    :class:`UniqueJobError` to raise (None unless ``on_conflict = "raise"`` refused one and
    the push was not deferred to a transaction's commit, where raising is too late: logged).
    """
    from django_bgjobs import batches

    refused = set()
    error = None
    for (payload, _raw, dead_raw), answer in zip(locked, results):
        status, holder = _text(answer[0]), _text(answer[1]) if len(answer) > 1 else None
        jid = payload["jid"]
        where = f"{payload['class']} jid={jid} ({payload['lock']} lock {payload['lock_digest']})"
        if status == "pushed" or (status == "conflict" and holder == jid):
            continue  # (its own lock: an enqueue tried again after a lost reply had gone through)
        if status == "replaced":
            holder_bid, removed = _text(answer[2]), int(answer[3])
            logger.info("%s replaced jid=%s%s", where, holder, "" if removed else " (no longer waiting)")
            if removed and holder_bid:
                batches.forget(holder_bid, holder)  # it will never run: do not wait for it
            continue
        refused.add(jid)
        if status == "rejected":
            logger.warning("%s moved to the dead set: duplicate of jid=%s", where, holder)
            reason = json.loads(dead_raw)["dead_reason"]
            signals.notify(signals.job_died, job_class, payload=json.loads(dead_raw), exception=None, reason=reason)
        elif job_class._lock_options.client_conflict == "raise" and not deferred:
            if error is None:
                error = UniqueJobError(f"{where} not enqueued: jid={holder} holds the lock", holder, payload["lock_digest"])
        else:
            log = logger.error if job_class._lock_options.client_conflict == "raise" else logger.info
            log("%s not enqueued: jid=%s holds the lock", where, holder)
    return refused, error


def _text(value):
    return value.decode() if isinstance(value, bytes) else value
