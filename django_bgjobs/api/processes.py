"""Worker processes and the jobs they run now, as their heartbeats left them in Redis.

Each ``runjobs`` process adds its identity to the ``processes`` set and, every
heartbeat, rewrites the hash ``<identity>`` (``info`` JSON, ``busy``, ``beat``,
``quiet``) and ``<identity>:work`` (thread id -> the job it runs; ``<identity>:workers``
when it writes Sidekiq 6's form, and Ruby's Sidekiq 6 does), both with a short TTL.  A process that died without saying goodbye leaves its identity in
the set after its hashes have expired: reads skip it, :meth:`ProcessSet.cleanup`
removes it.  Remote commands go through the list ``<identity>-signals``.
"""

import json

from django_bgjobs import keys
from django_bgjobs.api._common import (
    RedisUser, answers, json_or_none, text, to_float, to_int, unless_wrong_type,
)
from django_bgjobs.api.records import JobRecord
from django_bgjobs.payload import epoch_s

SIGNAL_TTL_S = 60


class Process(RedisUser):
    """One live worker process (``runjobs``), from its last heartbeat."""

    def __init__(self, identity, info, busy=0, beat=None, quiet=False, client=None, rss_kb=0, rtt_us=0):
        super().__init__(client)
        self.identity = identity
        #: The whole ``info`` dict the worker wrote (hostname, pid, tag, queues, ...).
        self.info = info
        #: How many of its threads run a job now.
        self.busy = busy
        #: Epoch seconds of its last heartbeat.
        self.beat = beat
        #: True once the process was told to stop taking jobs (quiet) or is shutting down.
        self.is_quiet = quiet
        #: Its resident memory in kB and the round trip of its last PING to Redis in µs, at its
        #: last heartbeat (0 when it did not say: an older version).
        self.rss_kb = rss_kb
        self.rtt_us = rtt_us

    def __repr__(self):
        return f"<Process {self.identity} busy={self.busy}/{self.concurrency}>"

    # The fields of ``info`` as their types, None (or []) when a writer left another type.

    @property
    def hostname(self):
        return _of_type(self.info.get("hostname"), str)

    @property
    def pid(self):
        return _of_type(self.info.get("pid"), int)

    @property
    def tag(self):
        return _of_type(self.info.get("tag"), str)

    @property
    def queues(self):
        queues = self.info.get("queues")
        return [str(name) for name in queues] if isinstance(queues, list) else []

    @property
    def concurrency(self):
        return _of_type(self.info.get("concurrency"), int)

    @property
    def async_concurrency(self):
        """How many ``async def perform`` jobs the process runs at once besides its threads."""
        return _of_type(self.info.get("async_concurrency"), int)

    @property
    def started_at(self):
        """Epoch seconds when the process started."""
        return epoch_s(self.info.get("started_at"))

    def quiet(self):
        """Ask the process to stop fetching jobs; it finishes those it runs (takes a heartbeat)."""
        self._signal("TSTP")

    def stop(self):
        """Ask the process to shut down within its shutdown timeout (takes a heartbeat)."""
        self._signal("TERM")

    def _signal(self, command):
        key = keys.process_signals(self.identity)
        pipe = self.redis.pipeline(transaction=True)
        pipe.lpush(key, command)
        # A command for a process that never reads it must not wait for a later one.
        pipe.expire(key, SIGNAL_TTL_S)
        pipe.execute()


class ProcessSet(RedisUser):
    """The live worker processes, sorted by identity.  Reading never prunes (see :meth:`cleanup`)."""

    def __iter__(self):
        identities = self._identities()
        pipe = self.redis.pipeline(transaction=False)
        for identity in identities:
            pipe.type(keys.process(identity))
            pipe.hmget(keys.process(identity), "info", "busy", "beat", "quiet", "rss", "rtt_us")
        results = answers(pipe)
        for identity, kind, fields in zip(identities, results[::2], results[1::2]):
            if text(kind) == "hash":  # a member naming a key of another type is no process
                yield _process(identity, fields, self._client)

    def size(self):
        """How many processes are live (identities whose heartbeat hash has not expired)."""
        return sum(1 for _ in self)

    def __len__(self):
        return self.size()

    def get(self, identity):
        """The live :class:`Process` with this identity, or None."""
        # Membership first: the identity may come from a form, and name any key at all.
        if not unless_wrong_type(False, self.redis.sismember, keys.processes(), identity):
            return None
        pipe = self.redis.pipeline(transaction=False)
        pipe.type(keys.process(identity))
        pipe.hmget(keys.process(identity), "info", "busy", "beat", "quiet", "rss", "rtt_us")
        kind, fields = answers(pipe)
        return _process(identity, fields, self._client) if text(kind) == "hash" else None

    def served_queues(self):
        """The names of the queues some live process fetches from, from each heartbeat's
        ``queues`` (a quiet process fetches nothing).  A queue outside it waits for ever."""
        served = set()
        for process in self:
            if not process.is_quiet and isinstance(process.queues, list):
                served.update(queue for queue in process.queues if isinstance(queue, str))
        return served

    def total_concurrency(self):
        """Threads available across every live process."""
        return sum(p.concurrency or 0 for p in self)

    def stale(self):
        """The members of the ``processes`` set that name no live process, sorted: their heartbeat
        hash expired (a process that died without saying goodbye), or their key holds another type."""
        identities = self._identities()
        pipe = self.redis.pipeline(transaction=False)
        for identity in identities:
            pipe.type(keys.process(identity))
        return [identity for identity, kind in zip(identities, pipe.execute()) if text(kind) != "hash"]

    def cleanup(self):
        """Remove the :meth:`stale` members, each by its exact name; return how many were removed.

        A write, so it is never called by the read methods; the admin or a cron calls it.
        """
        stale = self.stale()
        return self.redis.srem(keys.processes(), *stale) if stale else 0

    def _identities(self):
        return sorted(text(member) for member in unless_wrong_type((), self.redis.smembers, keys.processes()))


class WorkSet(RedisUser):
    """What every thread of every process runs now: ``(identity, thread_id, work)`` tuples.

    ``work`` is the dict the worker wrote (``queue``, ``payload``, ``run_at``) with
    ``payload`` decoded into a dict, and ``job`` a :class:`JobRecord` of it.  Live data:
    a job may have finished by the time it is shown.
    """

    def __iter__(self):
        identities = ProcessSet(self._client)._identities()
        pipe = self.redis.pipeline(transaction=False)
        for identity in identities:
            pipe.hgetall(keys.work(identity))  # Sidekiq 7 and later, and ours by default
            pipe.hgetall(keys.workers(identity))  # Sidekiq 6
        replies = answers(pipe)
        for identity, threads, threads_6 in zip(identities, replies[::2], replies[1::2]):
            threads = {**(threads_6 or {}), **(threads or {})}
            for thread_id in sorted(threads):
                work = _work(threads[thread_id])
                if work is not None:
                    yield identity, text(thread_id), work

    def size(self):
        """How many threads run a job, from the processes' ``busy`` counts (as Sidekiq counts)."""
        identities = ProcessSet(self._client)._identities()
        pipe = self.redis.pipeline(transaction=False)
        for identity in identities:
            pipe.hget(keys.process(identity), "busy")
        return sum(to_int(busy) for busy in answers(pipe))

    def find_work_by_jid(self, jid):
        """The ``(identity, thread_id, work)`` running the job ``jid``, or None."""
        for identity, thread_id, work in self:
            if work["job"].jid == jid:
                return identity, thread_id, work
        return None


def _of_type(value, kind):
    return value if isinstance(value, kind) and not isinstance(value, bool) else None


def _process(identity, fields, client):
    info_raw, busy, beat, quiet, rss, rtt = (text(f) for f in fields or (None,) * 6)
    info = json_or_none(info_raw) if info_raw else {}
    if not isinstance(info, dict):
        info = {}
    return Process(identity, info, to_int(busy), to_float(beat), quiet == "true", client=client,
                   rss_kb=to_int(rss), rtt_us=to_int(rtt))


def _work(raw):
    work = json_or_none(raw)
    if not isinstance(work, dict):
        return None
    payload = work.get("payload")
    if isinstance(payload, dict):
        try:
            payload = json.dumps(payload)
        except (ValueError, RecursionError):
            payload = text(raw)
    if not isinstance(payload, (str, bytes)):
        payload = ""
    queue = work.get("queue")
    record = JobRecord(payload, queue if isinstance(queue, str) else None)
    work["payload"] = record.item
    work["job"] = record
    return work

