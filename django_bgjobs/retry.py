"""What happens to a job attempt that failed: retry later, the dead set, or nothing.

Two halves:

* :func:`decide` -- the retry rules, a pure function of the job, the exception and the count
  (no Redis, no signals), returning :class:`RetryIn`, :class:`Dead` or :class:`Discarded`
  with the reason.  Sidekiq's rules:

  1. A payload that can never run (bad arguments, unknown class, a unique job rejected at
     start) goes straight to the dead set with the reason.
  2. ``Discard`` raised: dropped (logged; no dead entry).
  3. The class's ``retry_on`` / ``discard_on`` declarations, when one matches, decide alone
     (``callbacks.rescue``).
  4. ``retry = False``: dropped.  Otherwise, while ``retry_count`` stays below the job's
     ``retry`` (``MAX_RETRIES``, 25, by default) the job waits in the retry set for
     ``retry_in`` or :func:`backoff_s` seconds; after that, or when ``retry_in`` returns
     ``"kill"``, the dead set (``retries_exhausted`` is called).  ``"discard"``: dropped.

  ``tasks.py`` asks it too, to tell whether a failed task will run again.
* :func:`fail` -- what the worker's unit of work (``worker/fetcher.py``) calls for a failed
  attempt: record Sidekiq's error fields (``error_class``, ``error_message``,
  ``error_backtrace``, ``failed_at`` / ``retried_at``, ``retry_count``), decide, then write
  the retry or dead entry (the dead set trimmed as Sidekiq trims it), the removal of the job
  from the in-flight list and every feature's end writes (unique locks, batch counts:
  :mod:`django_bgjobs.job_end`) in ONE MULTI, so a crash at any instant leaves the job in
  exactly one place with its locks and batch in step; then the signals (``job_retried``,
  ``job_died``).
"""

import base64
import codecs
import hashlib
import logging
import math
import random
import traceback
from dataclasses import dataclass
from typing import ClassVar

from django_bgjobs import callbacks, conf, keys, registry, signals
from django_bgjobs.errors import Discard, InvalidPayloadError, Retry, UniqueJobRejected, UnknownJobError
from django_bgjobs.job_end import End, Outcome, queue_writes
from django_bgjobs.payload import (
    MAX_OPTION_SECONDS,
    as_bytes,
    compress_backtrace,
    dumps,
    fingerprint,
    is_duration,
    jid_in,
    new_jid,
    now_s,
    printable,
    seconds_of,
    short_repr,
    timestamp,
)

logger = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 10_000
MAX_BACKTRACE_FRAMES = 40
#: How much of an unreadable payload over ``MAX_PAYLOAD_BYTES`` its dead entry keeps (the start).
UNREADABLE_KEPT_BYTES = 16 * 1024
#: Failures that say the payload itself can never run: the dead set at once.
PAYLOAD_ERRORS = (InvalidPayloadError, UnknownJobError, UniqueJobRejected)


# -- the decision -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryIn:
    """Retry: the job waits in the retry set between ``shortest_s`` and ``longest_s`` (the
    default backoff spreads retries out; a fixed wait has both equal)."""

    shortest_s: float
    longest_s: float
    reason: str
    outcome: ClassVar[Outcome] = Outcome.RETRIED

    def wait_s(self):
        """A wait drawn between the bounds."""
        return self.shortest_s + random.random() * (self.longest_s - self.shortest_s)


@dataclass(frozen=True)
class Dead:
    """The dead set, with ``reason`` (``dead_reason``).  ``exhausted``: the job's retries are
    over (or ``retry_in`` said "kill"), so its ``retries_exhausted`` is called first."""

    reason: str
    exhausted: bool = False
    outcome: ClassVar[Outcome] = Outcome.DEAD


@dataclass(frozen=True)
class Discarded:
    """Dropped: no retry, no dead entry."""

    reason: str
    outcome: ClassVar[Outcome] = Outcome.DISCARDED


def backoff_range_s(count):
    """Sidekiq's default wait before retry number ``count`` (0-based): ``(shortest, longest)``
    seconds, ``count**4 + 15`` plus up to ``10 * (count + 1)`` of jitter."""
    shortest = count**4 + 15
    return float(shortest), float(shortest + 10 * (count + 1))


def backoff_s(count, jitter=True):
    """Sidekiq's default wait before retry number ``count`` (0-based), jitter drawn; with
    ``jitter=False`` the longest it may be."""
    shortest, longest = backoff_range_s(count)
    return shortest + random.random() * (longest - shortest) if jitter else longest


def decide(job, exc, count):
    """What the failure ``exc`` of ``job``'s attempt leads to: :class:`RetryIn`, :class:`Dead`
    or :class:`Discarded` (see the module docstring).

    ``job``: the Job instance that failed -- its class's ``retry_on`` / ``discard_on``, its
    ``retry_in``, and its payload's ``retry`` option are read -- or None when none could be
    made (then only the payload errors and the defaults apply).  ``count``: the payload's
    ``retry_count`` after this failure (0 after the first).  The only side effects are the
    job's own ``retry_in`` and ``RetryOn(wait=callable)`` calls, and a log line when one of
    them raises or answers nonsense.
    """
    if isinstance(exc, PAYLOAD_ERRORS):
        return Dead(str(exc))
    if isinstance(exc, Discard):
        return Discarded("Discard raised")
    declared = callbacks.rescue(type(job) if job is not None else None, count, exc)
    retry = job.payload.get("retry", True) if job is not None and job.payload is not None else True
    if declared is None and (retry is False or retry is None):
        return Discarded("retry is off for this job")
    max_retries = conf.get("MAX_RETRIES") if isinstance(retry, bool) or retry is None else int(retry)
    answer = _retry_in(job, count, exc) if declared is None else declared
    source = "retry_in" if declared is None else "retry_on/discard_on"
    if answer == "discard":
        return Discarded(f"{source} returned 'discard'")
    if answer == "kill":
        return Dead(f"{source} returned 'kill'", exhausted=True)
    if declared is None and count >= max_retries:
        return Dead(f"retries exhausted ({count} of {max_retries})", exhausted=True)
    reason = f"retry {count + 1} of {max_retries}" if declared is None else f"retry_on, after attempt {count + 1}"
    if answer is None:
        return RetryIn(*backoff_range_s(count), reason)
    return RetryIn(answer, answer, reason)


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
    if is_duration(answer):
        seconds = seconds_of(answer)
        if math.isfinite(seconds) and seconds <= MAX_OPTION_SECONDS:  # not inf, nan or 10**400
            return max(seconds, 0.0)
    logger.error("%s.retry_in returned %s; using the default backoff", type(job).name if job else "?",
                 printable(short_repr(answer)))
    return None


# -- the failure, written ------------------------------------------------------------------------


def error_class_name(exc):
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def record_error(payload, exc, now):
    """Put Sidekiq's error fields on ``payload`` (in place) for the attempt that raised ``exc``."""
    payload["error_class"] = error_class_name(exc)
    payload["error_message"] = str(exc)[:MAX_MESSAGE_CHARS]
    frames = traceback.format_exception(type(exc), exc, exc.__traceback__, limit=MAX_BACKTRACE_FRAMES)
    payload["error_backtrace"] = compress_backtrace("".join(frames).splitlines()[-4 * MAX_BACKTRACE_FRAMES:])
    if "retry_count" in payload:
        payload["retry_count"] += 1
        payload["retried_at"] = timestamp(now)
    else:
        payload["retry_count"] = 0
        payload["failed_at"] = timestamp(now)


def add_to_dead(pipe, raw, now):
    """Queue on ``pipe`` the ZADD of ``raw`` to the dead set and its trimming, as Sidekiq does."""
    pipe.zadd(keys.dead(), {raw: now})
    pipe.zremrangebyscore(keys.dead(), "-inf", now - conf.get("DEAD_TIMEOUT_S"))
    pipe.zremrangebyrank(keys.dead(), 0, -conf.get("DEAD_MAX_JOBS") - 1)


def fail(work, exc, job=None):
    """Write the end of a failed attempt; return its :class:`Outcome` (``RETRIED``, ``DEAD``
    or ``DISCARDED``).

    ``work`` is the attempt's unit of work (``worker/fetcher.py``): it gives ``raw``,
    ``queue``, ``payload`` (raising :class:`InvalidPayloadError` when the raw payload is not
    a JSON object) and ``write(build)``, which runs the commands ``build(pipe)`` queues in
    one MULTI with the job's removal from the in-flight list (``build`` returns the
    follow-ups of :func:`job_end.queue_writes`, run once that MULTI is written; so are the
    log line and the ``job_retried`` / ``job_died`` signal of a retry or dead entry).  ``job``: the Job instance
    that ran, if one was made.  The decision is taken once, whatever Redis does (the unit
    retries its write), so ``retry_in`` and ``retries_exhausted`` run once.  A payload whose
    own fields break the rules (``"retry_count": "x"``) is buried as unreadable, rather than
    left in flight to do the same to the next worker.
    """
    now = now_s()
    try:
        payload = work.payload
    except InvalidPayloadError:
        return _bury_unreadable(work, exc, now)
    try:
        # A copy: the caller's dict must not carry this failure's count (it may fail again).
        payload = dict(payload)
        if job is None and not isinstance(exc, PAYLOAD_ERRORS):
            job = _bare_job(payload)
        if not isinstance(exc, Discard):
            record_error(payload, exc, now)
        decision = decide(job, exc, payload.get("retry_count", 0))
    except Exception as bug:
        logger.exception("cannot apply the retry rules to jid=%s; burying the payload", printable(payload.get("jid")))
        reason = InvalidPayloadError(f"payload fields break the retry rules ({type(bug).__name__}: {bug})")
        return _bury_unreadable(work, reason, now)
    job_class = type(job) if job is not None else _lookup(payload)
    if isinstance(decision, RetryIn):
        return _retry(work, payload, exc, job_class, now, decision.wait_s(), decision.reason)
    if isinstance(decision, Dead):
        if decision.exhausted:
            _exhausted(job, payload, exc)
        return _bury(work, payload, exc, job_class, now, decision.reason)
    work.write(lambda pipe: queue_writes(pipe, End(Outcome.DISCARDED, payload, None, exc)))
    logger.warning("%s jid=%s discarded (%s): %s", printable(payload.get("class")), printable(payload.get("jid")),
                   decision.reason, exc)
    return Outcome.DISCARDED


def _retry(work, payload, exc, job_class, now, wait_s, reason):
    retry_at = now + wait_s
    entry = dumps(payload)

    def build(pipe):
        pipe.zadd(keys.retry(), {entry: retry_at})
        return [*queue_writes(pipe, End(Outcome.RETRIED, payload, retry_at, exc)), written]

    def written(client, results):  # a follow-up: once the entry is in Redis (with others' ends, maybe)
        logger.warning(
            "%s jid=%s failed (%s: %s); %s in %.0fs", printable(payload["class"]), printable(payload.get("jid")),
            payload["error_class"], printable(payload["error_message"]), reason, wait_s,
        )
        signals.notify(signals.job_retried, job_class, payload=payload, exception=exc, retry_at=retry_at)

    work.write(build)
    return Outcome.RETRIED


def _bury(work, payload, exc, job_class, now, reason, end_writes=True):
    payload["dead_reason"] = reason
    entry = dumps(payload)

    def build(pipe):
        add_to_dead(pipe, entry, now)
        return [*(queue_writes(pipe, End(Outcome.DEAD, payload, None, exc)) if end_writes else ()), written]

    def written(client, results):  # a follow-up: once the entry is in Redis (with others' ends, maybe)
        logger.error("%s jid=%s moved to the dead set: %s", printable(payload.get("class")),
                     printable(payload.get("jid")), printable(reason))
        signals.notify(signals.job_died, job_class, payload=payload, exception=exc, reason=reason)

    work.write(build)
    return Outcome.DEAD


def _bury_unreadable(work, exc, now):
    """A payload that is not even a JSON object (or whose fields break the rules): keep its
    exact bytes inside a readable dead entry, under the jid its text names if it names one.
    One over ``MAX_PAYLOAD_BYTES`` keeps only its first :data:`UNREADABLE_KEPT_BYTES`, with
    ``original_truncated``, its size and its sha256: a 50 MB payload written by another
    client must not become a 50 MB dead entry, failure row and admin page."""
    data = as_bytes(work.raw)
    wrapper = {"class": "django_bgjobs.UnreadablePayload", "args": [], "retry": False, "queue": work.queue,
               "jid": jid_in(data) or new_jid(), "created_at": timestamp(now)}
    limit = conf.get("MAX_PAYLOAD_BYTES")
    kept = data
    if limit is not None and len(data) > limit:
        kept = data[:min(limit, UNREADABLE_KEPT_BYTES)]
        wrapper |= {"original_truncated": True, "original_size_bytes": len(data),
                    "original_sha256": hashlib.sha256(data).hexdigest()}
    try:
        # A cut may split a character: keep the whole ones (final=False holds back a partial end).
        text = codecs.getincrementaldecoder("utf-8")().decode(kept, final=kept is data)
        wrapper |= {"original_payload": text, "original_encoding": "utf-8"}
    except UnicodeDecodeError:
        wrapper |= {"original_payload": base64.b64encode(kept).decode("ascii"), "original_encoding": "base64"}
    record_error(wrapper, exc, now)
    wrapper.pop("error_backtrace")
    logger.error("unreadable payload in queue %s moved to the dead set: %s (%s)", printable(work.queue), exc,
                 fingerprint(data))
    return _bury(work, wrapper, exc, None, now, reason=str(exc), end_writes=False)


def _lookup(payload):
    try:
        return registry.get(payload.get("class"))
    except UnknownJobError:
        return None


def _bare_job(payload):
    """An instance of the payload's class to ask ``retry_in`` and tell ``retries_exhausted``,
    when the failure came before the worker made one (None when the class is unknown, or
    cannot be made)."""
    job_class = _lookup(payload)
    if job_class is None:
        return None
    try:
        job = job_class()
    except Exception:  # a class whose __init__ fails still gets the retry rules, without its hooks
        logger.exception("%s() raised; its failure is retried by the default rules", job_class.name)
        return None
    job.jid, job.payload = payload.get("jid"), payload
    return job


def _exhausted(job, payload, exc):
    if job is None:
        return
    try:
        job.retries_exhausted(payload, exc)
    except Exception:
        logger.exception("%s.retries_exhausted raised; the job goes to the dead set anyway", type(job).name)
