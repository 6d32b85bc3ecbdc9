"""The client side: turn ``perform_later`` calls into payloads and write them.

1. Build each payload (arguments checked and encoded here, so a bad argument
   raises before anything is written).
2. Hand the payloads to the backend: a capture installed by
   ``django_bgjobs.testing``, the ``inline`` backend (run at once, after a JSON
   round trip), or Redis.
3. For Redis, push inside ``transaction.on_commit`` when a transaction is open
   (``BGJOBS["DEFER_ON_COMMIT"]``, default on), so a worker never sees a row
   that is not committed and a rollback enqueues nothing.  One round trip per
   call, whatever the number of jobs, and one atomic step (a Lua script, or a MULTI),
   so a call writes all or nothing.
"""

import logging
import threading
import time
from itertools import chain

import redis

from django_bgjobs import conf, keys, scripts, serialization, signals
from django_bgjobs.connection import describe, get_redis
from django_bgjobs.errors import ConfigurationError, EnqueueError, PayloadTooLargeError
from django_bgjobs.payload import dumps, loads, new_jid, new_jids, now_s

logger = logging.getLogger(__name__)

_captures = []
_captures_lock = threading.Lock()


def enqueue(configured, items):
    """Enqueue one job per ``(args, kwargs)`` in ``items``; return their ``EnqueuedJob`` handles."""
    from django_bgjobs.job import EnqueuedJob

    payloads = build_payloads(configured, items)
    job_class = configured.job_class
    handles = [
        EnqueuedJob(p["jid"], job_class, p["queue"], p["args"], p.get("at")) for p in payloads
    ]
    skipped = set()
    if job_class._has_enqueue_callbacks:
        kept = _before_enqueue(job_class, payloads)
        skipped = {p["jid"] for p in payloads} - {p["jid"] for p in kept}
        payloads = kept
    if payloads:
        # unique jobs whose lock was held (on_conflict "log" or "reject") come back refused
        skipped |= dispatch(job_class, payloads) or set()
    if skipped:
        return [None if handle.jid in skipped else handle for handle in handles]
    return handles


def _before_enqueue(job_class, payloads):
    """Run the class's ``before_enqueue`` on each payload; one that raises ``Discard`` is dropped
    (like ActiveJob's ``throw :abort``) and leaves a None in ``perform_later``'s answer."""
    from django_bgjobs.errors import Discard

    kept = []
    for payload in payloads:
        try:
            job_class.before_enqueue(payload)
        except Discard as exc:
            logger.info("%s jid=%s not enqueued: before_enqueue discarded it (%s)", job_class.name, payload["jid"], exc)
        else:
            kept.append(payload)
    return kept


def _enqueued(job_class, payloads, refused=()):
    """After a push: the ``job_enqueued`` signal and the class's ``after_enqueue``, per payload."""
    listening = signals.job_enqueued.has_listeners(job_class)  # asked once, not once per payload
    if not listening and not job_class._has_enqueue_callbacks:
        return
    for payload in payloads:
        if payload["jid"] in refused:
            continue
        if listening:
            signals.job_enqueued.send(sender=job_class, payload=payload, scheduled_at=payload.get("at"))
        if job_class._has_enqueue_callbacks:
            job_class.after_enqueue(payload)


def build_payloads(configured, items):
    """The payload dicts for ``items`` (checked and encoded; nothing written)."""
    job_class = configured.job_class
    if job_class.abstract:
        raise ConfigurationError(f"{job_class.__qualname__} is abstract; enqueue one of its subclasses")
    queue = configured.queue or job_class.queue
    retry = configured.retry if configured.retry is not None else job_class.retry
    retry = True if retry is None else retry
    created_at = now_s()
    at_s = configured.scheduled_at_s(created_at)
    expires_in_s = configured.expires_in_s or job_class._expires_in_s
    # Sidekiq Pro's rule: the expiry counts from when the job is due, not from now.
    expiry = (max(at_s or created_at, created_at) + expires_in_s) if expires_in_s else None
    from django_bgjobs import batches, unique

    stamp_lock = unique.stamp if job_class._lock_options is not None else None
    bid = batches.current_bid()
    payloads = []
    items = items if isinstance(items, list) else list(items)
    jids = new_jids(len(items)) if len(items) > 1 else [new_jid()]
    for (args, kwargs), jid in zip(items, jids):
        payload = {
            "class": job_class.name,
            "args": serialization.encode_args(args, kwargs),
            "retry": retry,
            "queue": queue,
            "jid": jid,
            "created_at": created_at,
        }
        if bid is not None:
            payload["bid"] = bid
        if stamp_lock is not None:
            stamp_lock(payload, job_class, args, kwargs)
        if at_s is not None and at_s > created_at:
            payload["at"] = at_s
        if expiry is not None:
            payload["expiry"] = expiry
        payloads.append(payload)
    return payloads


def dispatch(job_class, payloads):
    """Hand payloads from :func:`build_payloads` (which the caller may have added fields to,
    as ``django_bgjobs.tasks`` adds ``priority``) to the capture, inline or Redis backend."""
    with _captures_lock:
        capture = _captures[-1] if _captures else None
    if capture is not None:
        capture.extend(loads(dumps(p)) for p in payloads)
        return
    backend = conf.get("BACKEND")
    if backend == "inline":
        from django_bgjobs import execution

        for payload in payloads:
            payload["enqueued_at"] = now_s()
            _enqueued(job_class, [payload])
            execution.perform_inline(loads(dumps(payload)))
        return
    if backend != "redis":
        raise ConfigurationError(f"BGJOBS['BACKEND'] must be 'redis' or 'inline', not {backend!r}")
    alias = _open_transaction() if conf.get("DEFER_ON_COMMIT") else None
    if alias is not None:
        from django.db import transaction

        transaction.on_commit(lambda: push(job_class, payloads, deferred=True), using=alias)
        return None
    return push(job_class, payloads)


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


def push(job_class, payloads, attempt=0, deferred=False):
    """Write ``payloads`` to Redis in one atomic step: queues now, or the schedule set when due later.

    The usual call -- jobs due now, all to one queue, nothing else to write -- is one EVALSHA
    of ``lua/push.lua``; anything else is one MULTI.

    A payload with a ``priority`` above 0 goes to the front of its queue (the end workers
    take from), so it runs before the jobs already waiting.  ``job_class.on_push(pipe,
    payloads)``, when the class defines it, adds its own writes to the same MULTI (the
    ``django.tasks`` backend records each task's result there).

    A unique job's payload (``lock_digest``) is pushed by ``lua/unique_push.lua``, queued in
    the same MULTI, which takes its lock in the same step; a batched payload (``bid``) is
    added to its batch's pending set there too.  Returns the set of jids not enqueued
    because their lock was held (``deferred``: pushed at a transaction's commit, where a
    unique job's ``on_conflict = "raise"`` is logged instead of raised).
    """
    now = now_s()
    by_queue = {}
    front = {}
    scheduled = {}
    locked = []  # (payload, raw) of unique jobs whose lock is taken at enqueue
    lock_options = job_class._lock_options
    takes_lock = lock_options is not None and lock_options.client_conflict is not None
    for payload in payloads:
        if takes_lock and "lock_digest" in payload:
            if "at" not in payload:
                payload["enqueued_at"] = now
            locked.append((payload, dumps(payload)))
            continue
        if "at" in payload:
            scheduled[dumps(payload)] = payload["at"]
        else:
            payload["enqueued_at"] = now
            target = front if payload.get("priority", 0) > 0 else by_queue
            target.setdefault(payload["queue"], []).append(dumps(payload))
    _check_sizes(job_class, chain(scheduled, *by_queue.values(), *front.values()))
    if locked:
        _check_sizes(job_class, (raw for _, raw in locked))
    plain = not locked and getattr(job_class, "on_push", None) is None and not any("bid" in p for p in payloads)
    try:
        if plain and not scheduled and not front and len(by_queue) == 1:  # the usual perform_later
            [(queue, raws)] = by_queue.items()
            _exchange(get_redis(), lambda conn: scripts.run_on_connection(
                conn, "push", [keys.queues(), keys.queue(queue)], [queue, *raws],
            ))
        elif plain:  # no hook adds to the MULTI: the lean path (see _multi_exec)
            commands = []
            if by_queue or front:
                commands.append(("SADD", keys.queues(), *by_queue, *front))
                commands += [("LPUSH", keys.queue(queue), *raws) for queue, raws in by_queue.items()]
                commands += [("RPUSH", keys.queue(queue), *raws) for queue, raws in front.items()]
            if scheduled:
                pairs = chain.from_iterable((at, raw) for raw, at in scheduled.items())
                commands.append(("ZADD", keys.schedule(), *pairs))
            _multi_exec(get_redis(), commands)
        else:
            pipe = get_redis().pipeline(transaction=True)
            if by_queue or front:
                pipe.sadd(keys.queues(), *by_queue, *front)
                for queue, raws in by_queue.items():
                    pipe.lpush(keys.queue(queue), *raws)
                for queue, raws in front.items():
                    pipe.rpush(keys.queue(queue), *raws)
            if scheduled:
                pipe.zadd(keys.schedule(), scheduled)
            if locked:
                from django_bgjobs import unique

                first = len(pipe)
                locked = [(p, raw, unique.queue_push(pipe, job_class, p, raw, now)) for p, raw in locked]
            if any("bid" in payload for payload in payloads):
                from django_bgjobs import batches

                by_lua = {id(p) for p, _, _ in locked}
                batches.queue_counts(pipe, [p for p in payloads if id(p) not in by_lua])
            on_push = getattr(job_class, "on_push", None)
            if on_push is not None:
                on_push(pipe, payloads)
            results = pipe.execute()
    except redis.RedisError as exc:
        if attempt < conf.get("ENQUEUE_RETRIES") and isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
            wait_s = min(0.1 * 2**attempt, 2.0)
            logger.warning("enqueue to Redis at %s failed (%s); trying again in %.1fs", describe(), exc, wait_s)
            time.sleep(wait_s)
            return push(job_class, payloads, attempt + 1, deferred)
        raise EnqueueError(_failure_message(job_class, payloads, exc)) from exc
    refused, error = set(), None
    if locked:
        refused, error = unique.settle(job_class, locked, results[first:first + len(locked)], deferred)
    _enqueued(job_class, payloads, refused)
    if error is not None:
        raise error
    return refused


def _multi_exec(client, commands):
    """Run ``commands`` (tuples of arguments) in one MULTI/EXEC round trip on a pooled
    connection: what ``client.pipeline(transaction=True).execute()`` does, without the rest
    of its machinery, which cost as much CPU as everything else ``perform_later`` does
    (``docs/performance.rst``).  Raises as the pipeline would: ``ResponseError`` when Redis
    refused a command (then EXEC aborts and nothing is written), ``ConnectionError`` or
    ``TimeoutError`` when the connection failed."""
    if not commands:
        return []

    def talk(conn):
        conn.send_packed_command(conn.pack_commands([("MULTI",), *commands, ("EXEC",)]))
        refused = None
        for _ in range(len(commands) + 1):  # +OK for MULTI, then +QUEUED for each command
            try:
                conn.read_response()
            except redis.ResponseError as exc:
                refused = refused or exc
        try:
            results = conn.read_response()
        except redis.ResponseError as exc:  # EXECABORT
            raise refused or exc from None
        for item in results:
            if isinstance(item, redis.ResponseError):
                raise item
        return results

    return _exchange(client, talk)


def _exchange(client, talk):
    """``talk(connection)`` on a pooled connection, without the client's command machinery.
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


def _check_sizes(job_class, raws):
    """Raise :class:`PayloadTooLargeError` if an encoded payload passes ``MAX_PAYLOAD_BYTES``."""
    limit = conf.get("MAX_PAYLOAD_BYTES")
    if limit is None:
        return
    for raw in raws:
        if len(raw) > limit:  # dumps() writes ASCII only: characters are bytes
            raise PayloadTooLargeError(
                f"a {job_class.name} payload is {len(raw):,} bytes, over BGJOBS['MAX_PAYLOAD_BYTES'] ({limit:,}); "
                "store the data elsewhere (a model, a file) and pass its id"
            )


def _failure_message(job_class, payloads, exc):
    where = f"Redis at {describe()}"
    # Redis before 7 reports an OOM inside a script as "ERR Error running script ... OOM command not allowed".
    if isinstance(exc, redis.exceptions.OutOfMemoryError) or "OOM command not allowed" in str(exc):
        return (
            f"could not enqueue {len(payloads)} {job_class.name} job(s): {where} is full (it reached its "
            f"maxmemory and its maxmemory-policy is noeviction, so it refuses writes rather than drop data). "
            f"Free memory or raise maxmemory. ({exc})"
        )
    if isinstance(exc, redis.TimeoutError):
        return f"could not enqueue {len(payloads)} {job_class.name} job(s): {where} did not answer in time ({exc})"
    return f"could not enqueue {len(payloads)} {job_class.name} job(s) to {where}: {exc}"


def writes_to_redis():
    """True unless a test capture is installed or the backend is ``inline`` (batches and
    unique locks then write nothing)."""
    with _captures_lock:
        if _captures:
            return False
    return conf.get("BACKEND") == "redis"


def install_capture(sink):
    """Route every enqueue into the list ``sink`` instead of the backend (used by ``testing``)."""
    with _captures_lock:
        _captures.append(sink)


def remove_capture(sink):
    with _captures_lock:
        _captures.remove(sink)
