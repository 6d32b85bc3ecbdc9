"""One job as the monitoring API sees it.

* :class:`JobRecord` wraps one raw payload read from a queue list.  It keeps the
  raw bytes exactly as Redis returned them, because ``LREM`` / ``ZREM`` remove a
  member only when given its exact bytes; re-encoding the parsed dict could
  differ (key order, float formatting) and silently remove nothing.
* :class:`SortedEntry` is a record read from the schedule, retry or dead set,
  with its score and the moves an operator can ask for: delete, retry / add to
  its queue now, kill (to the dead set).

Records tolerate payloads that do not parse (the dead set keeps whatever a
worker could not read): ``item`` is then ``{}`` and ``parse_error`` says why.
"""

import hashlib
import json
import logging
import secrets
import time

import redis

from django_bgjobs import batches, job_end, keys, moves, registry, retry, signals
from django_bgjobs.job_end import Outcome
from django_bgjobs.api._common import queue_name_of, text
from django_bgjobs.connection import get_redis
from django_bgjobs.errors import BgJobsError, InvalidPayloadError, UnknownJobError
from django_bgjobs.payload import backtrace_lines, dumps, epoch_s, loads, now_s
from django_bgjobs.serialization import TAG


logger = logging.getLogger(__name__)

DISPLAY_ARGS_CHARS = 120
#: How much of an unreadable payload's raw text a page shows.
RAW_EXCERPT_CHARS = 10_000
KILL_REASON = "killed from the monitoring API"
# Optimistic (WATCH) moves give up after this many collisions with other writers.
_MAX_WATCH_ATTEMPTS = 50
_CLEAR_PAGE = 1000  # jobs read per call while clearing a queue or set


class JobRecord:
    """One payload in a queue (or, through :class:`SortedEntry`, in a sorted set)."""

    def __init__(self, raw, queue_name=None, *, parent=None, client=None):
        #: The member exactly as stored in Redis (bytes or str, as the client returns it).
        self.raw = raw
        self.parent = parent
        self._client = client
        try:
            #: The parsed payload dict; ``{}`` when the raw payload does not parse.
            self.item = loads(raw)
            #: Why the payload did not parse, or None.
            self.parse_error = None
        except InvalidPayloadError as exc:
            self.item = {}
            self.parse_error = str(exc)
        self._queue_name = queue_name

    def __repr__(self):
        return f"<{type(self).__name__} {self.klass or '?'} jid={self.jid} queue={self.queue}>"

    def __eq__(self, other):
        return isinstance(other, JobRecord) and type(other) is type(self) and other.raw == self.raw

    def __hash__(self):
        return hash(self.raw)

    @property
    def redis(self):
        if self._client is None:
            self._client = self.parent.redis if self.parent is not None else get_redis()
        return self._client

    # -- payload fields ---------------------------------------------------------------------

    @property
    def member_id(self):
        """A digest naming this exact member (its raw bytes), for forms and links that must name
        the entry whatever its payload holds (no jid, a jid that is not a string, a copy)."""
        raw = self.raw if isinstance(self.raw, bytes) else str(self.raw).encode("utf-8", "surrogatepass")
        return hashlib.sha1(raw).hexdigest()

    @property
    def jid(self):
        """The payload's ``jid``; None when it has none, or one that is not a string."""
        jid = self.item.get("jid")
        return jid if isinstance(jid, str) else None

    @property
    def klass(self):
        """The payload's ``class``: the job's registered name."""
        return self.item.get("class")

    @property
    def args(self):
        return self.item.get("args", [])

    @property
    def queue(self):
        """The queue this record was read from, else the payload's ``queue`` (None when not a string)."""
        queue = self._queue_name or self.item.get("queue")
        return queue if isinstance(queue, str) else None

    @property
    def created_at(self):
        """Epoch seconds when the job was first enqueued (falls back to ``enqueued_at``)."""
        return epoch_s(self.item.get("created_at")) or self.enqueued_at

    @property
    def enqueued_at(self):
        """Epoch seconds when the job was last pushed to a queue, or None."""
        return epoch_s(self.item.get("enqueued_at"))

    @property
    def failed_at(self):
        return epoch_s(self.item.get("failed_at"))

    @property
    def retried_at(self):
        return epoch_s(self.item.get("retried_at"))

    @property
    def retry_count(self):
        return self.item.get("retry_count")

    @property
    def error_class(self):
        return self.item.get("error_class")

    @property
    def error_message(self):
        return self.item.get("error_message")

    @property
    def error_backtrace(self):
        """The backtrace as a list of lines (also reads Sidekiq's compressed form)."""
        return backtrace_lines(self.item.get("error_backtrace"))

    @property
    def dead_reason(self):
        return self.item.get("dead_reason")

    @property
    def latency(self):
        """Seconds since the job was enqueued (or created), 0.0 when the payload has neither."""
        stamp = self.enqueued_at or self.created_at
        return max(0.0, time.time() - stamp) if stamp else 0.0

    @property
    def display_args(self):
        """The arguments as one short line for lists (``1, 'a', user=auth.user#3``)."""
        if self.parse_error:
            text_value = self.raw_excerpt
        else:
            text_value = ", ".join(_render_arg(arg, top=True) for arg in self.args)
        if len(text_value) > DISPLAY_ARGS_CHARS:
            text_value = text_value[: DISPLAY_ARGS_CHARS - 1] + "…"
        return text_value

    @property
    def raw_excerpt(self):
        """The raw payload as text (undecodable bytes replaced), cut to ``RAW_EXCERPT_CHARS``."""
        raw = text(self.raw) or ""
        if len(raw) > RAW_EXCERPT_CHARS:
            return raw[:RAW_EXCERPT_CHARS] + f"… ({len(raw):,} characters in all)"
        return raw

    # -- changes ----------------------------------------------------------------------------

    def delete(self):
        """Remove this exact payload from its queue; True when it was still there.  Its unique
        lock is freed and its batch told (``django_bgjobs.job_end``, ``Outcome.DELETED``)."""
        removed = self.redis.lrem(keys.queue(self.queue), 1, self.raw) > 0
        if removed:
            _note_removed(self.parent)
            _record_ends(self.redis, [self.item], Outcome.DELETED)
        return removed

    def queue_end(self, pipe, outcome):
        """Queue on ``pipe`` the unique-lock and batch bookkeeping of this job ended by hand."""
        job_end.queue_writes(pipe, job_end.End(outcome, self.item))

    def push_fired_callbacks(self):
        """Once the write :meth:`queue_end` joined has run: push the callbacks its batch fired."""
        if "bid" in self.item:
            batches.push_fired_callbacks(self.redis)


class SortedEntry(JobRecord):
    """A record in the schedule, retry or dead set, with its score (epoch seconds)."""

    def __init__(self, parent, score, raw):
        super().__init__(raw, parent=parent)
        self.score = float(score)

    @property
    def at(self):
        """The score, in epoch seconds: when due (schedule, retry) or when it died (dead)."""
        return self.score

    def delete(self):
        """Remove this entry from its set; True when it was still there.  Outside the dead set
        (where its end was written when it died) its unique lock is freed and its batch told,
        in the same MULTI (``django_bgjobs.job_end``, ``Outcome.DELETED``)."""
        if self.parent.name == "dead":
            removed = self.redis.zrem(self.parent.key, self.raw) > 0
        else:
            removed = move_watched(
                self.redis, self.parent.key, [self.raw], lambda pipe, _present: self.queue_end(pipe, Outcome.DELETED),
            ) > 0
            if removed:
                self.push_fired_callbacks()
        if removed:
            _note_removed(self.parent)
        return removed

    def retry(self):
        """Move the job to the head of its queue to run now; True when this call moved it.

        As Sidekiq does, a manual retry does not count against the retry limit:
        ``retry_count`` goes down by one here and back up if the job fails again.
        """
        return self._to_queue(uncount_retry=True)

    def add_to_queue(self):
        """Move a scheduled job to its queue now (its ``retry_count`` is left alone)."""
        return self._to_queue(uncount_retry=False)

    def kill(self, reason=KILL_REASON):
        """Move the job to the dead set (with the dead set's trimming); True when this call moved it."""
        now = now_s()
        if self.parse_error:
            dead_raw = self.raw
        else:
            dead_raw = dumps(dict(self.item, dead_reason=reason))
        def to_dead(pipe, _present):
            retry.add_to_dead(pipe, dead_raw, now)
            self.queue_end(pipe, Outcome.KILLED)

        moved = move_watched(self.redis, self.parent.key, [self.raw], to_dead)
        if moved:
            self.push_fired_callbacks()
            _note_removed(self.parent)
            notify_died([dead_raw], reason)
        return bool(moved)

    def requeued(self, uncount_retry):
        """The payload to push when this job goes back to its queue now (``queue`` always names
        a valid queue; ``django_bgjobs.moves`` drops ``at`` and stamps ``enqueued_at``)."""
        if self.parse_error:
            raise InvalidPayloadError(f"cannot enqueue a payload that does not parse: {self.parse_error}")
        payload = dict(self.item)
        if uncount_retry and isinstance(payload.get("retry_count"), int):
            payload["retry_count"] -= 1
        payload["queue"] = queue_name_of(payload)
        return payload

    def _to_queue(self, uncount_retry):
        moved = moves.member(self.redis, self.parent.key, self.raw, payload=self.requeued(uncount_retry), now_s=now_s())
        if moved:
            _note_removed(self.parent)
        return moved


def move_watched(client, key, members, queue_commands):
    """Remove ``members`` from sorted set ``key`` and run ``queue_commands(pipe, present)`` in one MULTI.

    Optimistic: WATCH ``key``, keep only the members still in it, and retry if another
    writer changed the set meanwhile, so no member is moved twice.  Returns how many
    members were removed (``queue_commands`` is called, with the members still present,
    only when there are some).
    Used where the commands must come from Python (``retry.add_to_dead``), so they
    cannot live in a Lua script.
    """
    with client.pipeline(transaction=True) as pipe:
        for _ in range(_MAX_WATCH_ATTEMPTS):
            try:
                pipe.watch(key)
                scores = pipe.zmscore(key, members)  # Redis >= 6.2, as Sidekiq 7 requires
                present = [m for m, score in zip(members, scores) if score is not None]
                if not present:
                    pipe.unwatch()
                    return 0
                pipe.multi()
                pipe.zrem(key, *present)
                queue_commands(pipe, present)
                pipe.execute()
                return len(present)
            except redis.WatchError:
                continue
    raise BgJobsError(f"gave up moving jobs out of {text(key)!r}: it kept changing under {_MAX_WATCH_ATTEMPTS} attempts")


def notify_died(dead_raws, reason=None):
    """Send ``job_died`` for payloads this API just moved to the dead set (unparseable ones skipped).

    As Sidekiq's ``DeadSet#kill`` calls its death handlers, so a job killed by hand is
    recorded like one that ran out of retries.  ``exception`` is None: nothing raised.
    A receiver's error is logged, not raised: the move is already done.
    """
    if not signals.job_died.receivers:
        return
    for raw in dead_raws:
        try:
            payload = loads(raw)
        except InvalidPayloadError:
            continue
        try:
            sender = registry.get(payload.get("class"))
        except UnknownJobError:
            sender = None
        why = reason or payload.get("dead_reason") or KILL_REASON
        signals.notify(signals.job_died, sender, payload=payload, exception=None, reason=why)


def clear_jobs(client, key, kind, more=None):
    """Delete ``key`` (a ``"list"`` or ``"zset"`` of jobs, as ``kind`` says) whole and return how
    many jobs it held; the jobs in it with a unique lock or a batch get their end written
    (``DELETED``), in pages.  ``more(pipe)`` adds commands to the MULTI that takes the key.

    The key is renamed first, atomically (under WATCH, once its type is checked: a key of
    another type raises :class:`BgJobsError` and is left as it is), so a job pushed meanwhile
    is not touched; the renamed key expires in an hour should this process die before
    deleting it.
    """
    size, read = {"list": ("llen", client.lrange), "zset": ("zcard", client.zrange)}[kind]
    doomed = keys.being_cleared(secrets.token_hex(8))
    with client.pipeline(transaction=True) as pipe:
        for _ in range(_MAX_WATCH_ATTEMPTS):
            try:
                pipe.watch(key)
                found = text(pipe.type(key))
                if found not in (kind, "none"):
                    raise BgJobsError(f"cannot clear {text(key)!r}: it holds a {found}, not a {kind}; nothing was changed")
                pipe.multi()
                getattr(pipe, size)(key)
                if found != "none":
                    pipe.rename(key, doomed)
                    pipe.expire(doomed, 3600)
                if more is not None:
                    more(pipe)
                count = pipe.execute()[0]
                break
            except redis.WatchError:
                continue
        else:
            raise BgJobsError(f"gave up clearing {text(key)!r}: it kept changing under {_MAX_WATCH_ATTEMPTS} attempts")
    if not count:
        return 0
    for start in range(0, count, _CLEAR_PAGE):
        items = []
        for raw in read(doomed, start, start + _CLEAR_PAGE - 1):
            marker = raw if isinstance(raw, str) else raw.decode(errors="replace")
            if '"lock_digest"' in marker or '"bid"' in marker:
                try:
                    items.append(loads(raw))
                except InvalidPayloadError:
                    pass
        _record_ends(client, items, Outcome.DELETED)
    client.unlink(doomed)  # a big key is freed in the background
    return count


def _record_ends(client, items, outcome):
    """:func:`job_end.record`, after the jobs are gone: a Redis error is logged (their locks
    are then left to their TTLs, their batches unfinished), since the removal is done."""
    try:
        job_end.record(client, items, outcome)
    except redis.RedisError as exc:
        logger.error("%d removed job(s) keep their unique locks until their TTLs, and their batches "
                     "are not told: Redis refused the bookkeeping (%s)", len(items), exc)


def _note_removed(parent):
    if parent is not None:
        parent._removed += 1


def _render_arg(value, top=False):
    if isinstance(value, dict):
        tag = value.get(TAG)
        if tag == "kwargs" and top and isinstance(value.get("value"), dict):
            return ", ".join(f"{k}={_render_arg(v)}" for k, v in value["value"].items())
        if tag == "model" and isinstance(value.get("value"), list) and len(value["value"]) == 3:
            app_label, model_name, pk = value["value"]
            return f"{app_label}.{model_name}#{pk}"
        if tag is not None:
            return f"{tag}({value.get('value')})"
        return "{" + ", ".join(f"{k!r}: {_render_arg(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_render_arg(v) for v in value) + "]"
    if isinstance(value, str):
        return repr(value)
    return json.dumps(value)
