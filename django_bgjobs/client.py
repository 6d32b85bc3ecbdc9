"""The client side: the one way a new payload gets into Redis.

Every producer calls :func:`push`: ``Job.perform_later`` and friends (``job.py``), recurring
ticks (``cron/server.py``), batch callbacks (``batches/client.py``), the ``django.tasks`` backend
(``tasks.py``) and ``api.Queue.push``.  For each call:

1. With ``BGJOBS["DEFER_ON_COMMIT"]`` (default on) inside ``transaction.atomic()``, the Redis
   backend waits for the commit and does everything below then, in a copy of the caller's
   context (so a middleware sees the context variables of the code that enqueued), as
   ActiveJob's ``enqueue_after_transaction_commit`` defers the whole enqueue: a worker never
   sees a row that is not committed, and a rollback runs no middleware and writes nothing.
2. The client middleware chain (:mod:`django_bgjobs.middleware`, ``CLIENT_MIDDLEWARE`` around
   the built-ins of :data:`conf.CLIENT_BUILTINS`) runs once per payload.  A middleware may change
   the payload, stop it (return None: nothing of it is written), and attach to it, through
   :func:`current_push`, a :class:`Guard` (a condition checked in the write's atomic step) and
   writes that go with it.  That is how unique locks, batches, recurring ticks and task
   results join the push: as data, which the core carries without knowing what it means.
3. The payloads that pass are encoded and checked against ``MAX_PAYLOAD_BYTES`` (one too
   large: :class:`PayloadTooLargeError`, nothing written), then handed to the backend: a
   capture installed by ``django_bgjobs.testing``, the ``inline`` backend (run at once, after
   a JSON round trip), or Redis: one EVALSHA of ``lua/push.lua``, whatever the number of
   payloads, so a call writes all of its payloads or none.
4. After the write: the result handlers the middleware attached (a lock that was held is
   logged or raised there), then, per payload written, the ``job_enqueued`` signal and the
   job class's ``after_enqueue``.  These are notifications, not middleware: they must see the
   write happen.

The core imports no feature: the features import it (and are found by the middleware chain).
"""

import contextvars
import json
import logging
import threading
import time

import redis
from django.dispatch import Signal

from django_bgjobs import conf, execution, keys, middleware, scripts, serialization, signals
from django_bgjobs.connection import describe, get_redis
from django_bgjobs.errors import BgJobsError, ConfigurationError, EnqueueError, PayloadTooLargeError
from django_bgjobs.payload import dumps, loads, new_jid, new_jids, now_s, timestamp, unscheduled

logger = logging.getLogger(__name__)

_captures = []
_captures_lock = threading.Lock()

#: Sent after a push in which a :class:`Guard` with ``evict`` removed a waiting payload to make
#: room for the new one (a unique job's ``on_conflict = "replace"``): ``sender`` is the job class
#: of the push, ``payload`` the removed payload (decoded; it will never run).  Batches listen to
#: it, so a batch does not wait for a job of it that was replaced.
payload_evicted = Signal()

#: In a write of :meth:`Push.write`: the payload itself, as written.
PAYLOAD = object()

# What a write of a push may do (lua/push.lua checks it too): writes that add or count, never
# commands that read, move or delete other data.
_WRITES = frozenset((
    "SADD", "SREM", "HSET", "HINCRBY", "SET", "EXPIRE", "PEXPIRE", "ZADD", "ZREMRANGEBYSCORE", "ZREMRANGEBYRANK",
))

_current = contextvars.ContextVar("django_bgjobs_push", default=None)


class Guard:
    """A condition on one Redis key, checked in the atomic step that writes a payload; when it
    fails the payload is not written (see ``lua/push.lua`` for the exact rules).

    Build one with :meth:`absent`, :meth:`above` or :meth:`member`.  ``refused``: writes (tuples,
    as :meth:`Push.write` takes them) done instead when this guard refuses the payload.
    """

    __slots__ = ("spec",)

    def __init__(self, spec, refused=()):
        if refused:
            spec["refused"] = [_command(write, None) for write in refused]
        self.spec = spec

    @classmethod
    def absent(cls, key, field, value, *, evict=None, refused=()):
        """Pass when hash ``key`` has no ``field``; claims nothing (the payload's writes set it).
        ``field`` holding ``value`` means an earlier try of this push was written: counted as
        written.  ``evict=(list_key, zset_key, raw_field, moved_field)``: a field held by another payload
        does not refuse; that payload (the hash's ``raw_field``) is removed from the sorted set
        or the list (searched by ``field`` when the hash's ``moved_field`` is set: it was
        scheduled, and may have been rewritten on its way to the list), and the hash deleted."""
        spec = {"if": "absent", "key": key, "field": field, "value": value}
        if evict is not None:
            list_key, zset_key, raw_field, moved_field = evict
            spec["evict"] = {"list": list_key, "zset": zset_key, "raw": raw_field, "moved": moved_field}
        return cls(spec, refused)

    @classmethod
    def above(cls, key, field, number, *, refused=()):
        """Pass when ``number`` is greater than the number in hash field ``field`` (or there is
        none), and set the field to it at once, even when a later guard refuses."""
        return cls({"if": "above", "key": key, "field": field, "value": repr(float(number))}, refused)

    @classmethod
    def member(cls, key, member, *, refused=()):
        """Pass when ``member`` is in sorted set ``key``, removing it at once (so it is taken
        by one push only)."""
        return cls({"if": "member", "key": key, "member": member}, refused)

    def __repr__(self):
        return f"<Guard {self.spec['if']} {self.spec['key']}>"


class PushResult:
    """What the atomic step did with one payload, for a handler attached with :meth:`Push.guard`.

    ``written``: the payload is in Redis.  ``guard``: the :class:`Guard` that refused it, or that
    evicted another payload for it; None otherwise.  ``current``: that guard's field as found (the
    holder's jid for a lock).  ``evicted``: the payload removed by the guard (raw JSON), or None.
    """

    __slots__ = ("written", "guard", "current", "evicted")

    def __init__(self, written, guard=None, current=None, evicted=None):
        self.written, self.guard, self.current, self.evicted = written, guard, current, evicted

    def __repr__(self):
        return f"<PushResult written={self.written} current={self.current!r}>"


class Push:
    """One call of :func:`push` in progress: its job class, and what was attached to each of its
    payloads, by jid (so a middleware must not change a payload's jid).  Inside the client
    middleware chain :func:`current_push` returns it.

    Nothing attached is used by the capture and ``inline`` backends, which write no Redis.
    """

    __slots__ = ("job_class", "deferred", "_guards", "_writes", "_handlers")

    def __init__(self, job_class, deferred=False, guards=None, writes=None):
        #: The Job class whose payloads these are (None for a payload naming no registered class:
        #: ``api.Queue.push``).
        self.job_class = job_class
        #: True when the push runs at a transaction's commit: too late to raise at the caller.
        self.deferred = deferred
        self._guards = {jid: list(found) for jid, found in guards.items()} if guards else {}
        self._writes = {jid: [_command(w, jid) for w in found] for jid, found in writes.items()} if writes else {}
        self._handlers = {}

    def guard(self, jid, guard, on_result=None):
        """Check ``guard`` before writing payload ``jid`` (after any guard attached before it).
        ``on_result(push, payload, result)`` is called after the write with a :class:`PushResult`;
        it may return an exception, raised once every payload's notifications are sent."""
        self._guards.setdefault(jid, []).append(guard)
        if on_result is not None:
            self._handlers.setdefault(jid, []).append((guard, on_result))

    def write(self, jid, command, key, *args):
        """Run ``command key args...`` in the atomic step, when payload ``jid`` is written.
        ``command`` is one of SADD, SREM, HSET, HINCRBY, SET, EXPIRE, PEXPIRE, ZADD,
        ZREMRANGEBYSCORE, ZREMRANGEBYRANK; an argument may be :data:`PAYLOAD`."""
        self._writes.setdefault(jid, []).append(_command((command, key, *args), jid))

    def attached(self, jid):
        """True when anything was attached to payload ``jid``."""
        return jid in self._guards or jid in self._writes


#: ``current_push()``: the :class:`Push` whose client middleware chain is running (None
#: outside one).  The context variable's own ``get``, called once per payload by middleware.
current_push = _current.get


def _command(write, jid):
    command, *args = write
    if command not in _WRITES:
        raise ConfigurationError(f"a push may not run {command!r}; only {', '.join(sorted(_WRITES))}")
    # Strings for Lua: a JSON number would come back through Lua's 14 significant digits.
    return [command, *(a if a is PAYLOAD or isinstance(a, str) else _text_arg(a) for a in args)]


def _text_arg(value):
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (int, bytes)):
        return value.decode() if isinstance(value, bytes) else str(value)
    raise TypeError(f"a push write takes strings and numbers, not {type(value).__name__}")


# -- building payloads ------------------------------------------------------------------------


def build_payloads(configured, items, *, encoded=None, created_at=None):
    """The payload dicts of one ``ConfiguredJob`` for ``items`` (``(args, kwargs)`` pairs):
    arguments checked (they fit ``perform``: ``TypeError`` naming the job and the parameter;
    serializable) and encoded, jids drawn; nothing written.  Features add their fields in
    the middleware (a batch's ``bid``) or in ``ConfiguredJob.build_payloads`` (a lock's digest,
    which needs the arguments as Python values).  ``encoded``: the items' arguments already
    encoded (:func:`encode_bulk`); ``created_at``: the time of the call, when a bulk's chunks
    are built one after the other."""
    job_class = configured.job_class
    if job_class.abstract:
        raise ConfigurationError(f"{job_class.__qualname__} is abstract; enqueue one of its subclasses")
    queue = configured.queue or job_class.queue
    retry = configured.retry if configured.retry is not None else job_class.retry
    retry = True if retry is None else retry
    created_at = now_s() if created_at is None else created_at
    at_s = configured.scheduled_at_s(created_at)
    expires_in_s = configured.expires_in_s or job_class._expires_in_s
    # Sidekiq Pro's rule: the expiry counts from when the job is due, not from now.
    expiry = (max(at_s or created_at, created_at) + expires_in_s) if expires_in_s else None
    created_stamp = timestamp(created_at)
    payloads = []
    items = items if isinstance(items, list) else list(items)
    jids = new_jids(len(items)) if len(items) > 1 else [new_jid()]
    for index, ((args, kwargs), jid) in enumerate(zip(items, jids)):
        if encoded is None:  # a bulk's were checked in its first pass (encode_bulk)
            execution.check_arguments(job_class, args, kwargs)
        payload = {
            "class": job_class.name,
            "args": serialization.encode_args(args, kwargs) if encoded is None else encoded[index],
            "retry": retry,
            "queue": queue,
            "jid": jid,
            "created_at": created_stamp,
        }
        if at_s is not None and at_s > created_at:
            payload["at"] = at_s
        if expiry is not None:
            payload["expiry"] = expiry
        payloads.append(payload)
    return payloads


def encode_bulk(configured, items):
    """The first pass of a bulk written in chunks: every item's arguments checked against
    ``perform`` (``TypeError``) and encoded (raising
    ``SerializationError``) and, with ``MAX_PAYLOAD_BYTES``, its payload's size checked
    (``PayloadTooLargeError``), so a caller's mistake is found before any chunk is written.
    The encoded lists are the ones the payloads and the handles then hold: no extra copy."""
    for args, kwargs in items:
        execution.check_arguments(configured.job_class, args, kwargs)
    encoded = [serialization.encode_args(args, kwargs) for args, kwargs in items]
    limit = conf.get("MAX_PAYLOAD_BYTES")
    if limit is not None and encoded:
        # A payload's size is its arguments' plus its other fields' (the same for every item
        # of the call, but for the digits of a number: a margin of 64 bytes covers them).
        sample = build_payloads(configured, items[:1], encoded=encoded[:1])[0]
        fields = len(dumps(sample)) - len(dumps(sample["args"])) + 64
        for args in encoded:
            size = len(dumps(args)) + fields
            if size > limit:
                raise PayloadTooLargeError(
                    f"a {_name(configured.job_class, [sample])} payload is about {size:,} bytes, over "
                    f"BGJOBS['MAX_PAYLOAD_BYTES'] ({limit:,}); store the data elsewhere (a model, a file) "
                    "and pass its id"
                )
    return encoded


# -- the one push -----------------------------------------------------------------------------


def push(job_class, payloads, *, guards=None, writes=None, defer=True, redis_client=None):
    """Put ``payloads`` (new payload dicts) on their queues, or in the schedule set when they
    carry ``at``; the one way a new payload gets into Redis (see the module docstring).

    ``guards`` / ``writes``: ``{jid: [...]}`` attached by the producer before the middleware
    runs (a recurring tick's claim, a task's result); see :class:`Push`.  ``defer``: wait for
    the commit of an open transaction (``DEFER_ON_COMMIT``); producers that need the outcome
    now (a tick, a batch callback, the API) pass False.  ``redis_client``: the client to write
    with (default the shared one).

    Returns one item per payload, in order: the payload as written (after the middleware), or
    None when it was not written (stopped by a middleware, or refused by a guard: a held lock).
    A push deferred to a commit returns the payloads as given.  Raises what the middleware or
    a result handler raise (``UniqueJobError`` for ``on_conflict = "raise"``), and
    :class:`EnqueueError` when Redis fails.
    """
    if not payloads:
        return []
    with _captures_lock:
        capture = _captures[-1] if _captures else None
    if capture is not None:
        accepted, kept = _run_chain(Push(job_class, False, guards, writes), payloads)
        capture.extend(loads(dumps(p)) for p in kept)
        return accepted
    backend = conf.get("BACKEND")
    if backend == "inline":
        accepted, kept = _run_chain(Push(job_class, False, guards, writes), payloads)
        for payload in kept:
            payload["enqueued_at"] = timestamp(now_s())
            _notify(job_class, [payload])
            execution.perform_inline(loads(dumps(payload)))
        return accepted
    if backend != "redis":
        raise ConfigurationError(f"BGJOBS['BACKEND'] must be 'redis' or 'inline', not {backend!r}")
    alias = _open_transaction() if defer and conf.get("DEFER_ON_COMMIT") else None
    if alias is not None:
        from django.db import transaction

        context = contextvars.copy_context()
        transaction.on_commit(
            lambda: context.run(_push_now, Push(job_class, True, guards, writes), payloads, redis_client),
            using=alias,
        )
        return list(payloads)
    return _push_now(Push(job_class, False, guards, writes), payloads, redis_client)


def _accept(payload):
    """The end of the client middleware chain: the payload goes on to be written."""
    return payload


def _run_chain(push_, payloads):
    """Each payload through the client middleware chain, with ``push_`` as :func:`current_push`;
    ``(accepted, kept)``: what the chain returned per payload (None: stopped), and the payloads
    it let through."""
    handler = middleware.chain(middleware.CLIENT, _accept)
    token = _current.set(push_)
    try:
        accepted = [handler(payload) for payload in payloads]
    finally:
        _current.reset(token)
    kept = []
    for payload in accepted:
        if payload is not None:
            if not isinstance(payload, dict):
                raise BgJobsError(
                    f"a client middleware returned a {type(payload).__name__}; return the payload dict or None"
                )
            kept.append(payload)
    return accepted, kept


def _push_now(push_, payloads, redis_client=None):
    accepted, kept = _run_chain(push_, payloads)
    if not kept:
        return accepted
    results = _write(push_, kept, redis_client or get_redis())
    if results is None:  # the plain form: every payload written, nothing attached
        _notify(push_.job_class, kept)
        return accepted
    error = None
    written = []
    refused = set()
    for payload, result in zip(kept, results):
        for guard, handler in push_._handlers.get(payload["jid"], ()):
            raised = handler(push_, payload, _for_guard(result, guard))
            error = error or raised
        if result.written:
            written.append(payload)
            if result.evicted:
                _evicted(push_.job_class, result.evicted)
        else:
            refused.add(id(payload))
    if refused:
        accepted = [None if p is None or id(p) in refused else p for p in accepted]
    _notify(push_.job_class, written)
    if error is not None:
        raise error
    return accepted


def _for_guard(result, guard):
    """``result`` as a handler attached with ``guard`` sees it (another guard's details hidden)."""
    if result.guard is None or result.guard is guard:
        return result
    return PushResult(result.written)


def _evicted(job_class, raw):
    try:
        payload = loads(raw)
    except BgJobsError:
        return  # a malformed payload removed: nobody can tell anything about it
    for receiver, response in payload_evicted.send_robust(sender=job_class, payload=payload):
        if isinstance(response, Exception):
            logger.error("payload_evicted receiver %r raised %r", receiver, response, exc_info=response)


def _write(push_, payloads, client, attempt=0):
    """Write ``payloads`` (through the chain) in one EVALSHA of ``lua/push.lua``; return a
    :class:`PushResult` per payload, or None for the plain form (every one written).

    The usual call -- due now, one queue, nothing attached -- is the script's plain form (the
    fast path ``docs/performance.rst`` measures); anything else its planned form.  A payload
    with a ``priority`` above 0 goes to the tail of its queue (the end workers take from), so
    it runs before the jobs already waiting.
    """
    enqueued_at = timestamp(now_s())
    raws = []
    queue = None
    plain = True
    for payload in payloads:
        if "at" not in payload:
            payload["enqueued_at"] = enqueued_at
            if queue is None:
                queue = payload["queue"]
            plain = plain and payload["queue"] == queue and not payload.get("priority", 0) > 0
            raws.append(dumps(payload))
        else:
            plain = False
            raws.append(dumps(unscheduled(payload)))
    _check_sizes(push_.job_class, payloads, raws)
    plain = plain and not push_._guards and not push_._writes
    try:
        if plain:
            _exchange(client, lambda conn: scripts.run_on_connection(
                conn, "push", [keys.queues(), keys.queue(queue)], [queue, *raws],
            ))
            return None
        plan = [_plan_entry(push_, payload, raw) for payload, raw in zip(payloads, raws)]
        if not push_._guards and push_._writes and len(plan) > 1:
            # No guard: every payload is written, so their writes can all go after the last
            # one, merged (a bulk push into a batch: one SADD of every jid, not one per job).
            plan[-1]["writes"] = _merged([write for entry in plan for write in entry.pop("writes", ())])
        answers = _exchange(client, lambda conn: scripts.run_on_connection(
            conn, "push", [keys.queues()], ["", json.dumps(plan, separators=(",", ":")), *raws],
        ))
    except redis.RedisError as exc:
        if attempt < conf.get("ENQUEUE_RETRIES") and isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
            wait_s = min(0.1 * 2**attempt, 2.0)
            logger.warning("enqueue to Redis at %s failed (%s); trying again in %.1fs", describe(), exc, wait_s)
            time.sleep(wait_s)
            return _write(push_, payloads, client, attempt + 1)
        raise EnqueueError(_failure_message(push_.job_class, payloads, exc)) from exc
    return [_result(push_, payload, answer) for payload, answer in zip(payloads, answers)]


def _plan_entry(push_, payload, raw):
    """The ``lua/push.lua`` plan entry of one payload (see the script's contract)."""
    if "at" in payload:
        entry = {"to": "Z", "key": keys.schedule(), "at": repr(float(payload["at"]))}
    else:
        queue = payload["queue"]
        entry = {"to": "R" if payload.get("priority", 0) > 0 else "L", "key": keys.queue(queue), "queue": queue}
    jid = payload["jid"]
    guards = push_._guards.get(jid)
    if guards:
        entry["guards"] = [_with_payload(g.spec, raw) for g in guards]
    writes = push_._writes.get(jid)
    if writes:
        entry["writes"] = [[raw if a is PAYLOAD else a for a in write] for write in writes]
    return entry


def _merged(writes):
    """``writes`` (done in this order, with no read in between) as fewer commands with the same
    effect: the ``SADD`` to a key and the ``HINCRBY`` of a hash field each become one, in the
    place of the first, unless something else writes that key; a repeated ``EXPIRE`` or
    ``PEXPIRE`` (same key and TTL) is done once, in the place of the first."""
    kinds = {}
    for command, key, *_ in writes:
        kinds.setdefault(key, set()).add(command)
    merged, at = [], {}
    for write in writes:
        command, key, *args = write
        others = kinds[key] - {command, "EXPIRE", "PEXPIRE"}
        if command == "SADD" and not others:
            group = ("SADD", key)
        elif command == "HINCRBY" and not others:
            group = ("HINCRBY", key, args[0])
        elif command in ("EXPIRE", "PEXPIRE"):
            group = tuple(write)
        else:
            merged.append(write)
            continue
        if group not in at:
            at[group] = len(merged)
            merged.append(list(write))
        elif command == "SADD":
            merged[at[group]].extend(args)
        elif command == "HINCRBY":
            kept = merged[at[group]]
            kept[3] = str(int(kept[3]) + int(args[1]))
    return merged


def _with_payload(spec, raw):
    if "refused" not in spec:
        return spec
    return dict(spec, refused=[[raw if a is PAYLOAD else a for a in write] for write in spec["refused"]])


def _result(push_, payload, answer):
    written = answer[0] == 1
    if len(answer) == 1:
        return _WRITTEN if written else _REFUSED
    guard = push_._guards[payload["jid"]][answer[1] - 1]
    current = _text(answer[2]) if len(answer) > 2 else None
    evicted = _text(answer[3]) if len(answer) > 3 else None
    return PushResult(written, guard, current, evicted or None)


_WRITTEN = PushResult(True)
_REFUSED = PushResult(False)


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _notify(job_class, payloads):
    """After a write: the ``job_enqueued`` signal and the class's ``after_enqueue``, per payload."""
    if not payloads:
        return
    listening = signals.job_enqueued.has_listeners(job_class)  # asked once, not once per payload
    callbacks = job_class is not None and job_class._has_enqueue_callbacks
    if not listening and not callbacks:
        return
    for payload in payloads:
        if listening:
            signals.job_enqueued.send(sender=job_class, payload=payload, scheduled_at=payload.get("at"))
        if callbacks:
            job_class.after_enqueue(payload)


def _open_transaction():
    """The alias of a database with an open ``atomic()`` block in this thread, or None.

    With several databases in transactions at once, the push waits for the first one
    found (the default database first): document, do not guess further.
    """
    from django.db import DEFAULT_DB_ALIAS, connections

    if connections[DEFAULT_DB_ALIAS].in_atomic_block:
        return DEFAULT_DB_ALIAS
    for conn in connections.all(initialized_only=True):
        if conn.in_atomic_block:
            return conn.alias
    return None


def _exchange(client, talk):
    """``talk(connection)`` on a pooled connection, without the client's command machinery (which
    cost as much CPU as everything else ``perform_later`` does: ``docs/performance.rst``).
    ``talk`` raises ``ResponseError`` only once every reply is read, so after one the
    connection goes back to the pool as it is; after any other error (a dropped connection,
    a timeout) it is disconnected first, never pooled in an unknown state."""
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        return talk(conn)
    except redis.ResponseError:
        raise
    except BaseException:
        conn.disconnect()
        raise
    finally:
        pool.release(conn)


def _check_sizes(job_class, payloads, raws):
    """Raise :class:`PayloadTooLargeError` if an encoded payload passes ``MAX_PAYLOAD_BYTES``."""
    limit = conf.get("MAX_PAYLOAD_BYTES")
    if limit is None:
        return
    for payload, raw in zip(payloads, raws):
        if len(raw) > limit:  # dumps() writes ASCII only: characters are bytes
            raise PayloadTooLargeError(
                f"a {_name(job_class, [payload])} payload is {len(raw):,} bytes, over BGJOBS['MAX_PAYLOAD_BYTES'] "
                f"({limit:,}); store the data elsewhere (a model, a file) and pass its id"
            )


def _name(job_class, payloads):
    return job_class.name if job_class is not None else str(payloads[0].get("class"))


def _failure_message(job_class, payloads, exc):
    where = f"Redis at {describe()}"
    what = f"{len(payloads)} {_name(job_class, payloads)} job(s)"
    # Redis before 7 reports an OOM inside a script as "ERR Error running script ... OOM command not allowed".
    if isinstance(exc, redis.exceptions.OutOfMemoryError) or "OOM command not allowed" in str(exc):
        return (
            f"could not enqueue {what}: {where} is full (it reached its "
            f"maxmemory and its maxmemory-policy is noeviction, so it refuses writes rather than drop data). "
            f"Free memory or raise maxmemory. ({exc})"
        )
    if isinstance(exc, redis.TimeoutError):
        return f"could not enqueue {what}: {where} did not answer in time ({exc})"
    return f"could not enqueue {what} to {where}: {exc}"


def writes_to_redis():
    """True unless a test capture is installed or the backend is ``inline`` (batches and
    unique locks then write nothing)."""
    with _captures_lock:
        if _captures:
            return False
    return conf.get("BACKEND") == "redis"


def install_capture(sink):
    """Route every push into the list ``sink`` instead of the backend (used by ``testing``)."""
    with _captures_lock:
        _captures.append(sink)


def remove_capture(sink):
    with _captures_lock:
        _captures.remove(sink)
