"""What happens to a job attempt that failed: retry later, the dead set, or nothing.

Sidekiq's rules, run by the worker thread that ran the job:

1. ``Discard`` raised, ``retry_in`` returned ``"discard"``, or the job has
   ``retry = False``: the job is dropped (logged; no dead entry).
2. A payload that can never run (bad JSON, unknown class, arguments that do not fit
   ``perform``) goes straight to the dead set with the reason.
3. Otherwise ``retry_count`` goes up; while it stays below the job's ``retry`` (25 by
   default) the job waits in the ``retry`` set for ``retry_in`` or
   ``count**4 + 15 + rand(10 * (count + 1))`` seconds.  After that, or when ``retry_in``
   returns ``"kill"``, ``retries_exhausted`` is called and the job goes to the dead set.

Each outcome is written in one MULTI together with the removal of the job from the
worker's in-flight list, so a crash at any instant leaves the job in exactly one place.
"""

import base64
import datetime
import logging
import random
import traceback

from django_bgjobs import callbacks, conf, keys, registry, signals
from django_bgjobs.connection import get_redis
from django_bgjobs.errors import Discard, InvalidPayloadError, Retry, UniqueJobRejected, UnknownJobError
from django_bgjobs.payload import describe, dumps, new_jid, now_s

logger = logging.getLogger(__name__)

RETRIED, DEAD, DISCARDED = "retried", "dead", "discarded"
MAX_MESSAGE_CHARS = 10_000
MAX_BACKTRACE_FRAMES = 40


def backoff_s(count):
    """Sidekiq's default delay before retry number ``count`` (0-based), with jitter."""
    return count**4 + 15 + random.random() * 10 * (count + 1)


def error_class_name(exc):
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def record_error(payload, exc, now):
    """Put Sidekiq's error fields on ``payload`` (in place) for the attempt that raised ``exc``."""
    payload["error_class"] = error_class_name(exc)
    payload["error_message"] = str(exc)[:MAX_MESSAGE_CHARS]
    frames = traceback.format_exception(type(exc), exc, exc.__traceback__, limit=MAX_BACKTRACE_FRAMES)
    payload["error_backtrace"] = "".join(frames).splitlines()[-4 * MAX_BACKTRACE_FRAMES:]
    if "retry_count" in payload:
        payload["retry_count"] += 1
        payload["retried_at"] = now
    else:
        payload["retry_count"] = 0
        payload["failed_at"] = now


def _execute(client, build):
    """Run the commands ``build(pipe)`` queues, in one MULTI."""
    pipe = client.pipeline(transaction=True)
    build(pipe)
    pipe.execute()


def _once(write):
    return write()


def fail(raw, payload, exc, *, job=None, ack_key=None, queue=None, client=None, run_write=_once, after=None):
    """Deal with a failed attempt of ``raw`` (``payload`` is None when it did not parse).

    Returns ``"retried"``, ``"dead"`` or ``"discarded"``.  ``ack_key`` is the in-flight
    list the raw payload is removed from in the same MULTI.  ``run_write(write)`` runs the
    Redis write (the worker passes one that retries it until Redis takes it), so the
    user's hooks (``retry_in``, ``retries_exhausted``) run once whatever Redis does.
    ``after(pipe, outcome, payload, exc, retry_at)``, when given, queues more commands in
    that same MULTI (the worker's unique-lock and batch bookkeeping); ``payload`` is the
    updated copy, ``retry_at`` None unless the outcome is ``"retried"``.
    """
    client = client or get_redis()
    now = now_s()
    if payload is None:
        return _bury_unreadable(raw, exc, ack_key, queue, client, now, run_write)
    # A copy: the worker calls again after a Redis error, and must not count the failure twice.
    payload = dict(payload)
    job_class = type(job) if job is not None else _lookup(payload)
    if isinstance(exc, (InvalidPayloadError, UnknownJobError, UniqueJobRejected)):
        record_error(payload, exc, now)
        return _bury(raw, payload, exc, job_class, ack_key, client, now, reason=str(exc), run_write=run_write,
                     after=after)
    if isinstance(exc, Discard):
        return _discard(raw, payload, exc, ack_key, client, "Discard raised", run_write, after)
    record_error(payload, exc, now)
    count = payload["retry_count"]
    # The class's retry_on / discard_on declarations, when one matches, decide alone.
    declared = callbacks.rescue(job_class, count, exc)
    retry = payload.get("retry", True)
    if declared is None and (retry is False or retry is None):
        return _discard(raw, payload, exc, ack_key, client, "retry is off for this job", run_write, after)
    max_retries = conf.get("MAX_RETRIES") if isinstance(retry, bool) or retry is None else int(retry)
    decision = _retry_in(job, count, exc) if declared is None else declared
    source = "retry_in" if declared is None else "retry_on/discard_on"
    if decision == "discard":
        return _discard(raw, payload, exc, ack_key, client, f"{source} returned 'discard'", run_write, after)
    if decision == "kill" or (declared is None and count >= max_retries):
        _exhausted(job, payload, exc)
        reason = f"{source} returned 'kill'" if decision == "kill" else f"retries exhausted ({count} of {max_retries})"
        return _bury(raw, payload, exc, job_class, ack_key, client, now, reason=reason, run_write=run_write,
                     after=after)
    retry_at = now + (backoff_s(count) if decision is None else decision)
    def build(pipe):
        pipe.zadd(keys.retry(), {dumps(payload): retry_at})
        if ack_key:
            pipe.lrem(ack_key, 1, raw)
        if after is not None:
            after(pipe, RETRIED, payload, exc, retry_at)

    run_write(lambda: _execute(client, build))
    logger.warning(
        "%s jid=%s failed (%s: %s); retry %d of %d in %.0fs", payload["class"], payload.get("jid"),
        payload["error_class"], payload["error_message"][:200], count + 1, max_retries, retry_at - now,
    )
    signals.notify(signals.job_retried, job_class, payload=payload, exception=exc, retry_at=retry_at)
    return RETRIED


def add_to_dead(pipe, raw, now):
    """Queue on ``pipe`` the ZADD of ``raw`` to the dead set and its trimming, as Sidekiq does."""
    pipe.zadd(keys.dead(), {raw: now})
    pipe.zremrangebyscore(keys.dead(), "-inf", now - conf.get("DEAD_TIMEOUT_S"))
    pipe.zremrangebyrank(keys.dead(), 0, -conf.get("DEAD_MAX_JOBS") - 1)


def _lookup(payload):
    try:
        return registry.get(payload.get("class"))
    except UnknownJobError:
        return None


def _retry_in(job, count, exc):
    """The job's ``retry_in`` answer as seconds, "kill", "discard" or None (default backoff)."""
    if isinstance(exc, Retry) and exc.wait is not None:
        answer = exc.wait
    elif job is None:
        return None
    else:
        try:
            answer = job.retry_in(count, exc)
        except Exception:
            logger.exception("%s.retry_in raised; using the default backoff", type(job).name)
            return None
    if answer is None or answer in ("kill", "discard"):
        return answer
    if isinstance(answer, datetime.timedelta):
        return max(answer.total_seconds(), 0)
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        return max(float(answer), 0)
    logger.error("%s.retry_in returned %r; using the default backoff", type(job).name, answer)
    return None


def _exhausted(job, payload, exc):
    if job is None:
        return
    try:
        job.retries_exhausted(payload, exc)
    except Exception:
        logger.exception("%s.retries_exhausted raised; the job goes to the dead set anyway", type(job).name)


def _bury(raw, payload, exc, job_class, ack_key, client, now, reason, run_write, after=None):
    payload["dead_reason"] = reason
    def build(pipe):
        add_to_dead(pipe, dumps(payload), now)
        if ack_key:
            pipe.lrem(ack_key, 1, raw)
        if after is not None:
            after(pipe, DEAD, payload, exc, None)

    run_write(lambda: _execute(client, build))
    logger.error("%s jid=%s moved to the dead set: %s", payload.get("class"), payload.get("jid"), reason)
    signals.notify(signals.job_died, job_class, payload=payload, exception=exc, reason=reason)
    return DEAD


def _bury_unreadable(raw, exc, ack_key, queue, client, now, run_write):
    """A payload that is not even a JSON object: keep its exact bytes inside a readable dead entry."""
    if isinstance(raw, bytes):
        try:
            original, encoding = raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            original, encoding = base64.b64encode(raw).decode("ascii"), "base64"
    else:
        original, encoding = raw, "utf-8"
    wrapper = {
        "class": "django_bgjobs.UnreadablePayload", "args": [], "retry": False, "queue": queue,
        "jid": new_jid(), "created_at": now, "original_payload": original, "original_encoding": encoding,
    }
    record_error(wrapper, exc, now)
    wrapper.pop("error_backtrace")
    logger.error("unreadable payload in queue %s moved to the dead set: %s: %s", queue, exc, describe(raw))
    return _bury(raw, wrapper, exc, None, ack_key, client, now, reason=str(exc), run_write=run_write)


def _discard(raw, payload, exc, ack_key, client, why, run_write, after=None):
    if after is not None:
        def build(pipe):
            if ack_key:
                pipe.lrem(ack_key, 1, raw)
            after(pipe, DISCARDED, payload, exc, None)

        run_write(lambda: _execute(client, build))
    elif ack_key:
        run_write(lambda: client.lrem(ack_key, 1, raw))
    logger.warning("%s jid=%s discarded (%s): %s", payload.get("class"), payload.get("jid"), why, exc)
    return DISCARDED
