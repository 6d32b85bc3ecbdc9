"""The schedule, retry and dead sets as the monitoring API sees them.

Each is a sorted set of raw payloads scored by epoch seconds: when due for
``schedule`` and ``retry``, when the job died for ``dead``.  Listing pages
through with ``ZRANGE`` offsets; searching uses ``ZSCAN MATCH`` so the server
filters and no call loads a whole set.  Moves to a queue go through
:mod:`django_bgjobs.moves` (``lua/move_to_queue.lua``: remove-if-present and push in
one step, shared with the poller; no client middleware runs, as the job is not new);
moves to the dead set go through ``retry.add_to_dead`` inside a WATCHed MULTI, so the
dead set's caps are applied in one place.
"""

from django_bgjobs import keys, moves, retry
from django_bgjobs.job_end import Outcome
from django_bgjobs.api._common import DEFAULT_PAGE_SIZE, RedisUser, glob_escape, text, unless_wrong_type
from django_bgjobs.api.records import KILL_REASON, SortedEntry, clear_jobs, move_watched, notify_died
from django_bgjobs.payload import dumps, now_s


class SortedSet(RedisUser):
    """Base of :class:`ScheduledSet`, :class:`RetrySet` and :class:`DeadSet`."""

    #: Short name of the set, as in Sidekiq (``schedule``, ``retry``, ``dead``).
    name = None

    def __init__(self, client=None):
        super().__init__(client)
        # Removals made through this object's entries, so iteration does not skip entries.
        self._removed = 0

    def __repr__(self):
        return f"<{type(self).__name__}>"

    @property
    def key(self):
        raise NotImplementedError

    # -- reads ------------------------------------------------------------------------------

    def size(self):
        """How many entries the set holds (0 when its key holds another type)."""
        return unless_wrong_type(0, self.redis.zcard, self.key)

    def __len__(self):
        return self.size()

    def problem(self):
        """None, or why the set cannot be read: its key holds another type (it then reads as empty)."""
        kind = text(self.redis.type(self.key))
        return None if kind in ("zset", "none") else f"its key {text(self.key)!r} holds a {kind}, not a zset"

    def page(self, offset=0, limit=DEFAULT_PAGE_SIZE, reverse=False):
        """Up to ``limit`` :class:`SortedEntry` in score order (highest first if ``reverse``)."""
        if offset < 0:
            raise ValueError(f"offset must be >= 0, not {offset}")
        if limit <= 0:
            return []
        read = self.redis.zrevrange if reverse else self.redis.zrange
        pairs = unless_wrong_type([], read, self.key, offset, offset + limit - 1, withscores=True)
        return [SortedEntry(self, score, raw) for raw, score in pairs]

    def entries(self, reverse=False, page_size=DEFAULT_PAGE_SIZE):
        """Iterate every entry in score order, a page at a time; removing the yielded entry is safe."""
        position = 0
        removed_before = self._removed
        while True:
            entries = self.page(position - (self._removed - removed_before), page_size, reverse)
            yield from entries
            if len(entries) < page_size:
                return
            position += len(entries)

    def __iter__(self):
        return self.entries()

    def scan(self, substring, count=DEFAULT_PAGE_SIZE):
        """Iterate the entries whose raw payload contains ``substring`` (class, jid, error text...)."""
        seen = set()
        pattern = f"*{glob_escape(substring)}*"
        if unless_wrong_type(None, self.redis.zcard, self.key) is None:
            return
        for raw, score in self.redis.zscan_iter(self.key, match=pattern, count=count):
            if raw not in seen:  # ZSCAN may return a member twice while the set is rehashed
                seen.add(raw)
                yield SortedEntry(self, score, raw)

    def find_job(self, jid):
        """The :class:`SortedEntry` with this jid, or None.  O(n), paged by ZSCAN."""
        for entry in self.scan(jid):
            if entry.jid == jid:
                return entry
        return None

    def find_member(self, member_id, score=None):
        """The :class:`SortedEntry` whose exact member has this :attr:`~JobRecord.member_id`, or
        None (names any entry, one whose payload does not parse included); faster given its score."""
        entries = self.fetch(score) if score is not None and score == score else self.entries()
        return next((entry for entry in entries if entry.member_id == member_id), None)

    def fetch(self, score, jid=None):
        """Entries scored exactly ``score`` (or within a ``(min, max)`` tuple), optionally one jid."""
        low, high = score if isinstance(score, tuple) else (score, score)
        pairs = unless_wrong_type([], self.redis.zrangebyscore, self.key, low, high, withscores=True)
        entries = [SortedEntry(self, s, raw) for raw, s in pairs]
        return [e for e in entries if jid is None or e.jid == jid]

    # -- changes ----------------------------------------------------------------------------

    def delete_by_jid(self, jid, score=None):
        """Remove the entry with this jid (faster given its score); True when removed."""
        if score is None:
            entry = self.find_job(jid)
        else:
            entry = next(iter(self.fetch(score, jid)), None)
        return entry is not None and entry.delete()

    def retry_all(self):
        """Move every entry to its queue to run now (a manual retry, as :meth:`SortedEntry.retry`).

        Returns how many jobs were moved.  Payloads that do not parse stay in the set.
        """
        return self._all_to_queue(uncount_retry=True)

    def add_all_to_queue(self):
        """Move every entry to its queue now, leaving ``retry_count`` alone; return how many moved."""
        return self._all_to_queue(uncount_retry=False)

    def kill_all(self, reason=KILL_REASON):
        """Move every entry to the dead set (trimmed by its caps); return how many moved."""
        moved = 0
        budget = self.size()  # entries added meanwhile wait for the next call
        while budget > 0:
            # Every entry read is moved (unparseable ones keep their raw bytes), so read from the front.
            entries = self.page(0, min(DEFAULT_PAGE_SIZE, budget))
            if not entries:
                break
            now = now_s()
            dead_raws = {
                e.raw: e.raw if e.parse_error else dumps(dict(e.item, dead_reason=reason)) for e in entries
            }
            by_raw = {e.raw: e for e in entries}

            written = []  # the members of the attempt that went through (move_watched may retry)

            def to_dead(pipe, present, dead_raws=dead_raws, by_raw=by_raw, now=now, written=written):
                written[:] = present
                for member in present:
                    retry.add_to_dead(pipe, dead_raws[member], now)
                    by_raw[member].queue_end(pipe, Outcome.KILLED)  # its lock freed, its batch told

            count = move_watched(self.redis, self.key, list(dead_raws), to_dead)
            if count:
                batched = [by_raw[member] for member in written if "bid" in by_raw[member].item]
                if batched:
                    batched[0].push_fired_callbacks()  # one drain pushes what all of them fired
                notify_died([dead_raws[member] for member in written], reason)
            moved += count
            budget -= len(entries)
        self._removed += moved
        return moved

    def clear(self):
        """Delete every entry; return how many there were.  Outside the dead set their unique
        locks are freed and their batches told (``records.clear_jobs``)."""
        if self.name == "dead":  # their ends were written when they died
            pipe = self.redis.pipeline(transaction=True)
            pipe.zcard(self.key)
            pipe.unlink(self.key)  # a big key is freed in the background
            return pipe.execute()[0]
        return clear_jobs(self.redis, self.key, "zset")

    def _all_to_queue(self, uncount_retry):
        moved = 0
        skipped = 0  # entries that do not parse stay at the front; page past them
        budget = self.size()
        while budget > 0:
            entries = self.page(skipped, min(DEFAULT_PAGE_SIZE, budget))
            if not entries:
                break
            readable = [entry for entry in entries if not entry.parse_error]
            skipped += len(entries) - len(readable)
            jobs = [(entry.raw, entry.requeued(uncount_retry)) for entry in readable]
            moved += moves.members(self.redis, self.key, jobs, now_s=now_s())
            budget -= len(entries)
        self._removed += moved
        return moved


class ScheduledSet(SortedSet):
    """Jobs enqueued for later (``perform_later`` after ``set(wait=...)``), scored by due time."""

    name = "schedule"

    @property
    def key(self):
        return keys.schedule()


class RetrySet(SortedSet):
    """Failed jobs waiting for their next attempt, scored by when it is due."""

    name = "retry"

    @property
    def key(self):
        return keys.retry()


class DeadSet(SortedSet):
    """Jobs that will not run again unless retried by hand, scored by when they died.

    Capped like Sidekiq's: ``BGJOBS["DEAD_MAX_JOBS"]`` entries, ``BGJOBS["DEAD_TIMEOUT_S"]`` old.
    """

    name = "dead"

    @property
    def key(self):
        return keys.dead()

    def kill(self, job, reason=None, now=None):
        """Add ``job`` (a raw payload, or a payload dict) to the dead set, then trim the set.

        ``reason`` is written as the payload's ``dead_reason`` when ``job`` is a dict.  The job
        is removed from nowhere (it may be running still, as in Sidekiq, where a job's own code
        calls this), so its unique lock and batch are left alone: the end of the attempt that
        holds them writes them.
        """
        now = now_s() if now is None else now
        if isinstance(job, dict):
            job = dumps(dict(job, dead_reason=reason) if reason else job)
        pipe = self.redis.pipeline(transaction=True)
        retry.add_to_dead(pipe, job, now)
        pipe.execute()
        notify_died([job], reason)
        return True
