"""Reliable fetch: take jobs from the queues into this process's in-flight lists, hand each
out as a :class:`UnitOfWork`, and write how it ended.

One ``Fetcher`` per worker process, shared by its :class:`~django_bgjobs.worker.processor.Processor`
threads; each thread calls :meth:`Fetcher.fetch` for itself and ends the unit of work it got.
This module is the only one that knows the in-flight lists (``keys.inflight``): everything
else ends a job through its unit of work, and the launcher's recoveries go through
:meth:`Fetcher.recover`, :meth:`Fetcher.listed` and :meth:`Fetcher.requeue`.

1. Take jobs with one Lua call (``lua/fetch.lua``) that tries every queue in order
   (strict or weighted), skips paused queues, and moves the jobs it takes into
   ``inflight:IDENTITY:QUEUE`` atomically.  A job is never only in memory: a ``kill -9``
   leaves it in the in-flight list for another worker to push back.
2. Prefetch: one call takes a job for every thread asking at that moment plus up to
   ``BGJOBS["PREFETCH"]`` more, held here in order (already in the in-flight list, so a
   crash still loses none of them) and handed to the next threads that ask, with no round
   trip.  The bound keeps one process from hoarding jobs others could run; a quiet worker
   gives its prefetched jobs back at once (``lua/requeue.lua``).
3. Acknowledge in the same call: a thread that finished a job adds it to the pending
   acknowledgements (:meth:`ack`) and makes the call itself (:meth:`write_acks`), unless
   another thread is in a call right then; that thread makes one more call as soon as its
   own returns.  Each call removes every pending job from the in-flight list (``LREM``)
   before it takes new ones, so ten threads finishing together cost one or two round
   trips, not ten, and no thread waits behind another.  An ack is written within two
   round trips of the job's end (a ``kill -9`` in between runs that job again, as it
   always could between the end of ``perform`` and the ack).
4. When all queues are empty, block on one queue with ``BLMOVE`` (also atomic) for up
   to ``FETCH_TIMEOUT_S``.  Threads spread over the queues (thread *i* waits on queue
   *i mod n*), so an idle worker picks up a job from any queue within a round trip
   when it has at least as many threads as queues; with fewer threads, a queue no
   thread waits on is seen within ``FETCH_TIMEOUT_S``.
5. A :class:`UnitOfWork` (Sidekiq's) ends each job: :meth:`~UnitOfWork.acknowledge` (with
   the features' end writes, ``job_end``), :meth:`~UnitOfWork.fail` (``retry.fail``),
   :meth:`~UnitOfWork.reschedule` or :meth:`~UnitOfWork.requeue` (put back unrun).  Every
   end is one MULTI (or one script) with the removal from the in-flight list, retried until
   Redis takes it, so a finished job is not run twice because of a blip.  :class:`Endings`
   writes the ends of several units in one MULTI (the async finisher's waves).
"""

import json
import logging
import threading
import time
from collections import deque

import redis

from django_bgjobs import conf, job_end, keys, retry, scripts
from django_bgjobs.connection import blocking_wait_s, get_redis
from django_bgjobs.errors import InvalidPayloadError, PoisonJobError
from django_bgjobs.job_end import Outcome
from django_bgjobs.payload import dumps, loads, now_s, timestamp, unscheduled
from django_bgjobs.worker.backoff import Reconnect

logger = logging.getLogger(__name__)

#: Crash counts are forgotten after three days without a crash (``lua/recover.lua``).
CRASHES_TTL_S = 3 * 24 * 60 * 60


class UnitOfWork:
    """One fetched job, from :meth:`Fetcher.fetch` until its end is written (Sidekiq's
    ``UnitOfWork``).  It alone holds the in-flight list the job sits in.

    ``queue`` and ``raw`` (the payload exactly as fetched) are public; :attr:`payload` is the
    parsed dict.  Exactly one of :meth:`acknowledge`, :meth:`fail`, :meth:`reschedule` and
    :meth:`requeue` ends it (a job abandoned at shutdown gets none: the launcher pushes its
    in-flight lists back whole).  Each end is written in one MULTI (or script) with the
    removal from the in-flight list, and retried until Redis takes it.
    """

    __slots__ = ("queue", "raw", "_fetcher", "_payload", "_patient", "_reconnect", "_endings")

    def __init__(self, fetcher, queue, raw):
        self.queue, self.raw = queue, raw
        self._fetcher = fetcher
        self._payload = None
        self._patient = True
        self._reconnect = None
        self._endings = None  # the Endings this unit's end joins (set by Endings.join), or None

    def __repr__(self):
        return f"<UnitOfWork {self.queue} {self.raw[:80]!r}>"

    @property
    def payload(self):
        """The parsed payload (parsed once); :class:`InvalidPayloadError` when the raw
        payload is not a JSON object."""
        if self._payload is None:
            self._payload = loads(self.raw)
        return self._payload

    # -- ends ------------------------------------------------------------------------------

    def acknowledge(self, outcome=Outcome.SUCCEEDED, fetch_next=False):
        """The attempt ended without a failure (``SUCCEEDED``, or ``EXPIRED`` unrun): out of
        the in-flight list, with the features' end writes in the same MULTI.  A job with none
        (most) leaves with the next ``fetch.lua`` call instead (:meth:`Fetcher.ack`);
        ``fetch_next``: the calling thread asks for its next job right after, so that call
        takes one for it."""
        payload = self._payload
        if payload is None:
            try:
                payload = self.payload
            except InvalidPayloadError:  # unreadable: no feature can have state about it
                pass
        if payload is not None and job_end.concerns(payload):
            self.write(lambda pipe: job_end.queue_writes(pipe, job_end.End(outcome, payload)), fetch_next)
        elif self._endings is not None:
            self.write(lambda pipe: None)
        else:
            self._fetcher.ack(self.queue, self.raw, fetch_next=fetch_next)
            self._until_written(self._fetcher.write_acks)

    def fail(self, exc, job=None, patient=True):
        """The attempt failed with ``exc``: :func:`django_bgjobs.retry.fail` decides and writes
        the retry or dead entry with the removal and the end writes; return the Outcome.
        ``patient=False``: one try, a ``RedisError`` propagates (the launcher at shutdown
        retries on its own terms)."""
        self._patient = patient
        return retry.fail(self, exc, job)

    def reschedule(self, at_s, payload):
        """Put the job back unrun in the schedule set, due at ``at_s``, as ``payload`` (a dict:
        the fields it should carry then; stored :func:`~django_bgjobs.payload.unscheduled`), in
        one MULTI with the removal."""
        entry = dumps(unscheduled(payload))

        def build(pipe):
            pipe.zadd(keys.schedule(), {entry: at_s})  # no end writes: the job has not ended

        self.write(build)

    def requeue(self):
        """Push the job back unrun to the tail of its queue (it runs next); True when it was
        still in the in-flight list (not pushed back by someone else already)."""
        moved = []
        self._until_written(lambda: moved.append(self._fetcher.requeue([(self.queue, self.raw)])))
        return bool(moved and moved[-1])

    def defer(self, log, *args):
        """Call ``log(*args)`` (a log line about this end) now; or, when the end joined
        :class:`Endings`, once they are written, so that the ends go to Redis first."""
        if self._endings is None:
            log(*args)
        else:
            self._endings.defer(log, args)

    def note_started(self, jid):
        """Before running a job ``lua/recover.lua`` pushed back after a crash (its payload
        carries ``crashes``): say this worker runs it, so a crash now counts against it."""
        client, identity = self._fetcher.client, self._fetcher.identity
        self._until_written(lambda: client.hset(keys.crashes(), f"{jid}:by", identity))

    def write(self, build, fetch_next=False):
        """End the job: the commands ``build(pipe)`` queues and the removal from the in-flight
        list, in one MULTI, retried until written (``build`` is called again for a retry, so
        it must only queue commands); then the follow-ups ``build`` returned (those of
        :func:`job_end.queue_writes`), with the MULTI's results.  When it queues none, the removal joins the next
        ``fetch.lua`` call (see :meth:`acknowledge`).  A unit that joined :class:`Endings` only
        adds its end to them: :meth:`Endings.write` writes it, with the others'."""
        if self._endings is not None:
            self._endings.add(self, build)
            return
        client = self._fetcher.client
        pipe = client.pipeline(transaction=True)
        follow_ups = build(pipe)
        if not len(pipe):
            self._fetcher.ack(self.queue, self.raw, fetch_next=fetch_next)
            self._until_written(self._fetcher.write_acks)
            return
        pipe.lrem(self._fetcher._inflight[self.queue], 1, self.raw)
        built = [pipe]
        written = []  # (follow-ups, results) of the MULTI that went through

        def execute():
            if built:
                written[:] = [(follow_ups, built.pop().execute())]
                return
            again = client.pipeline(transaction=True)
            again_follow_ups = build(again)
            again.lrem(self._fetcher._inflight[self.queue], 1, self.raw)
            written[:] = [(again_follow_ups, again.execute())]

        self._until_written(execute)
        if written:
            job_end.run_follow_ups(client, *written[0])

    def _until_written(self, write):
        """Run a Redis write until it succeeds (:func:`_until_written`); once only when the
        unit is not patient."""
        if not self._patient:
            write()
            return
        self._reconnect = _until_written(write, self._reconnect, f"ending a job of queue {self.queue}")


def _until_written(write, reconnect, what):
    """Run a Redis write until it succeeds (giving up, with an error logged, after 1000
    tries); return the :class:`Reconnect` that timed its retries (None when there were none)."""
    while True:
        try:
            write()
        except redis.RedisError as exc:
            if reconnect is None:
                reconnect = Reconnect(what, conf.get("RECONNECT_MAX_WAIT_S"))
            reconnect.failed(exc)
            if reconnect.errors > 1000:
                logger.error("giving up writing the end of a job after 1000 attempts; the job may run again")
                return reconnect
        else:
            if reconnect is not None:
                reconnect.ok()
            return reconnect


class Endings:
    """The ends of several units of work, written together: one MULTI holds every unit's
    commands and its removal from the in-flight list, so jobs that finish together cost one
    round trip, and each end is as atomic as on its own (the MULTI is all or nothing).

    A unit joins them (:meth:`join`), then is ended as usual (``acknowledge``, ``fail``): its
    end is only built and added here.  :meth:`write` writes them all, retried until Redis takes
    them (``build`` is called again for a retry), then runs their follow-ups with the
    MULTI's results -- after the write, as for one unit.  The async finisher
    (``worker/event_loop.py``) ends what the event loop finished since its last write this way.
    """

    __slots__ = ("_ends", "_deferred", "_reconnect")

    def __init__(self):
        self._ends = []  # (unit, build)
        self._deferred = []  # (log, args): UnitOfWork.defer
        self._reconnect = None

    def join(self, unit):
        """Make ``unit``'s end, whichever it is, one of these (patient, as a unit is)."""
        unit._endings = self

    def add(self, unit, build):
        self._ends.append((unit, build))

    def defer(self, log, args):
        self._deferred.append((log, args))

    def write(self):
        """Write every end added, log the lines deferred (:meth:`UnitOfWork.defer`), then run
        the follow-ups (see the class docstring)."""
        ends, self._ends = self._ends, []
        deferred, self._deferred = self._deferred, []
        written = []  # (follow-ups, results) of the MULTI that went through

        def execute():
            pipe = client.pipeline(transaction=True)
            follow_ups = []
            for unit, build in ends:
                follow_ups += build(pipe) or ()
                pipe.lrem(unit._fetcher._inflight[unit.queue], 1, unit.raw)
            written[:] = [(follow_ups, pipe.execute())]

        if ends:
            client = ends[0][0]._fetcher.client
            self._reconnect = _until_written(execute, self._reconnect, f"ending {len(ends)} jobs")
        for log, args in deferred:
            log(*args)
        if written:
            job_end.run_follow_ups(client, *written[0])


class _Ack:
    """A finished job waiting for the call that removes it from the in-flight list."""

    __slots__ = ("queue", "raw", "fetch_next", "thread")

    def __init__(self, queue, raw, fetch_next):
        self.queue, self.raw, self.fetch_next = queue, raw, fetch_next
        self.thread = threading.get_ident()  # the thread that will ask for the next job


class Fetcher:
    def __init__(self, identity, queue_order, client=None, prefetch=0):
        self.identity = identity
        self.queue_order = queue_order
        self.client = client or get_redis()
        #: The most jobs held here taken but not started (``BGJOBS["PREFETCH"]`` in a worker).
        self.prefetch = prefetch
        self._inflight = {name: keys.inflight(identity, name) for name in queue_order.names}
        self._queue = {name: keys.queue(name) for name in queue_order.names}
        self._paused_key = keys.paused()
        self._prefetched = deque()  # (queue, raw), oldest first, all in the in-flight list
        self._acks = []  # pending _Ack entries
        self._lock = threading.Lock()  # guards _prefetched and _acks
        self._call_lock = threading.Lock()  # one fetch.lua call at a time, so calls batch
        self._connection = None  # a pooled connection kept for fetch.lua calls (under _call_lock)
        # Below the socket timeout, so Redis answers a BLMOVE before the client stops listening.
        self.timeout_s = blocking_wait_s(self.client, conf.get("FETCH_TIMEOUT_S"))

    def fetch(self, slot=0, block=True):
        """Return the :class:`UnitOfWork` of the next job, or None when nothing came within
        the timeout."""
        found = self._fetch(slot, block)
        return None if found is None else UnitOfWork(self, *found)

    def _fetch(self, slot, block):
        with self._lock:
            if self._prefetched:
                return self._take_prefetched()
        with self._call_lock:
            with self._lock:
                if self._prefetched:  # the call just before this one took enough for us too
                    return self._take_prefetched()
            found = self._call(1)
        self.write_acks()  # any that came in during the call
        if found is not None or not block:
            return found
        name = self.queue_order.names[slot % len(self.queue_order.names)]
        if self.client.sismember(keys.paused(), name):
            # The queue this thread waits on is paused: wait without taking from it.
            time.sleep(self.timeout_s)
            return None
        raw = self.client.blmove(self._queue[name], self._inflight[name], self.timeout_s, "RIGHT", "LEFT")
        return (name, raw) if raw is not None else None

    def ack(self, queue, raw, fetch_next=False):
        """Note a finished job for removal from the in-flight list; :meth:`write_acks` writes it.

        ``fetch_next``: the thread will ask for another job right after, so the call that
        writes this ack takes one for it.
        """
        with self._lock:
            self._acks.append(_Ack(queue, raw, fetch_next))

    def write_acks(self):
        """Write the pending acks with one ``fetch.lua`` call, unless another thread is in a
        call right now: that thread writes them as soon as its own call returns (so an ack
        waits at most two round trips, and no thread queues up behind another).  Raises
        ``RedisError`` when the call fails; the acks stay pending and calling again retries.
        """
        while True:
            with self._lock:
                if not self._acks:
                    return
            if not self._call_lock.acquire(blocking=False):
                return  # the holder checks again after releasing
            try:
                self._call(0)
            finally:
                self._call_lock.release()

    def flush(self):
        """Write every pending ack now, waiting for a call in progress (shutdown calls it
        before pushing the in-flight lists back)."""
        with self._call_lock:
            with self._lock:
                pending = bool(self._acks)
            if pending:
                self._call(0)

    def prefetched(self):
        """The ``(queue, raw)`` jobs held here, taken but not started, oldest first."""
        with self._lock:
            return list(self._prefetched)

    def held(self):
        """The ``(queue, raw)`` jobs held here: prefetched, and finished with their ack still to
        write.  (A call in progress holds its acks and the jobs it takes for the length of a
        round trip; the launcher allows for that.)"""
        with self._lock:
            return list(self._prefetched) + [(entry.queue, entry.raw) for entry in self._acks]

    def give_back(self):
        """Push the prefetched jobs back to the tail of their queues (a quiet worker does);
        return how many went back."""
        with self._lock:
            jobs, self._prefetched = list(self._prefetched), deque()
        return self.requeue(jobs)

    def requeue(self, jobs):
        """Push ``(queue, raw)`` jobs out of this process's in-flight lists back to the tail of
        their queues, in the order given (``lua/requeue.lua``: one no longer in flight is not
        pushed twice); return how many went back."""
        by_queue = {}
        for queue, raw in jobs:
            by_queue.setdefault(queue, []).append(raw)
        moved = 0
        for queue, raws in by_queue.items():
            moved += scripts.run("requeue", [self._inflight[queue], self._queue[queue]], raws, client=self.client)
        return moved

    def listed(self):
        """The ``(queue, raw)`` jobs in this process's in-flight lists now, as Redis has them."""
        names = self.queue_order.names
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.lrange(self._inflight[name], 0, -1)
        return [(name, raw) for name, raws in zip(names, pipe.execute()) for raw in raws]

    def recover(self, identity, queues, max_crashes=0):
        """Push the in-flight jobs of worker ``identity`` back to their queues
        (``lua/recover.lua``); return ``(moved, buried, reason)``: the number pushed back (-1
        when that worker is alive), the dead entries (dicts) of the poison jobs buried, and
        their ``dead_reason``.  ``max_crashes`` 0: the worker is this one, stopping (nothing
        is counted); else a crash counts against its jobs and one at ``max_crashes`` is buried.
        """
        flat = [keys.inflight_owners(), keys.process(identity), keys.crashes(), keys.dead()]
        for name in queues:
            flat += (keys.inflight(identity, name), keys.queue(name))
        now = now_s()
        reason = f"its worker process died {max_crashes} times while running it (BGJOBS['MAX_CRASHES'])"
        death = {
            "dead_reason": reason, "error_class": retry.error_class_name(PoisonJobError(reason)),
            "error_message": f"poison job: {reason}", "failed_at": timestamp(now),
        }
        moved, *buried = scripts.run("recover", flat, [
            identity, max_crashes, repr(now), conf.get("DEAD_TIMEOUT_S"), conf.get("DEAD_MAX_JOBS"),
            CRASHES_TTL_S, "," + dumps(death)[1:-1], *death,
        ], client=self.client)
        return moved, [json.loads(entry) for entry in buried], reason

    def forget_prefetched(self):
        """Drop the prefetched jobs from memory (at shutdown, when the in-flight lists are
        pushed back whole); return them."""
        with self._lock:
            jobs, self._prefetched = list(self._prefetched), deque()
        return jobs

    def _take_prefetched(self):
        """Pop the oldest prefetched job (the caller holds ``_lock``).  If this thread's ack is
        still pending, it no longer needs the job that ack asks for: a call would otherwise
        take one too many, and the bound would creep."""
        me = threading.get_ident()
        for entry in self._acks:
            if entry.thread == me:
                entry.fetch_next = False
        return self._prefetched.popleft()

    def _call(self, own):
        """One ``fetch.lua`` call; the caller holds ``_call_lock``.

        Writes the pending acks and takes ``own`` jobs for the calling thread (0 or 1) plus
        one for each ack whose thread asks for one, topped up to ``prefetch`` held jobs.
        Returns the calling thread's job (the oldest taken; nothing older is held, since
        ``fetch`` calls only when nothing is) or None; keeps the others in order.
        """
        with self._lock:
            batch, self._acks = self._acks, []
            # One job per thread about to ask: the caller's own ack, if pending, is that ask.
            me = threading.get_ident() if own else None
            wanted = own + sum(1 for entry in batch if entry.fetch_next and entry.thread != me)
            take = wanted + self.prefetch - len(self._prefetched) if wanted else 0
        names = self.queue_order.order()
        flat = [self._paused_key]
        position = {}
        for index, name in enumerate(names, 1):
            flat += (self._queue[name], self._inflight[name])
            position[name] = index
        args = [max(take, 0), len(names), *names]
        for entry in batch:
            args += (position[entry.queue], entry.raw)
        try:
            found = self._run_fetch(flat, args)
        except BaseException:
            with self._lock:  # pending again, oldest first, for the next call
                self._acks[:0] = batch
            raise
        jobs = [(found[i].decode(), found[i + 1]) for i in range(0, len(found or ()), 2)]
        mine = jobs.pop(0) if own and jobs else None
        if jobs:
            with self._lock:
                self._prefetched.extend(jobs)
        return mine

    def _run_fetch(self, keys, args):
        """Run ``fetch.lua`` on the connection this fetcher keeps (the caller holds
        ``_call_lock``), taken from the client's pool on first use and after an error."""
        pool = self.client.connection_pool
        connection = self._connection
        if connection is None:
            connection = self._connection = pool.get_connection()
        try:
            return scripts.run_on_connection(connection, "fetch", keys, args)
        except redis.ResponseError:
            raise  # a reply was read: the connection is in step
        except BaseException:
            self._connection = None
            connection.disconnect()
            pool.release(connection)
            raise

    def close(self):
        """Give the kept connection back to the pool (the launcher calls it as it leaves)."""
        with self._call_lock:
            connection, self._connection = self._connection, None
        if connection is not None:
            self.client.connection_pool.release(connection)
