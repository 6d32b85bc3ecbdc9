"""Reliable fetch: take jobs from the queues into this process's in-flight lists, and
acknowledge finished ones.

One ``Fetcher`` per worker process, shared by its :class:`~django_bgjobs.worker.processor.Processor`
threads; each thread calls :meth:`Fetcher.fetch` and :meth:`Fetcher.ack` for itself.

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
"""

import threading
import time
from collections import deque

import redis

from django_bgjobs import conf, keys, scripts
from django_bgjobs.connection import blocking_wait_s, get_redis


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

    def inflight_key(self, queue_name):
        return self._inflight[queue_name]

    def fetch(self, slot=0, block=True):
        """Return ``(queue_name, raw_payload)`` or None when nothing came within the timeout."""
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
        by_queue = {}
        for queue, raw in jobs:
            by_queue.setdefault(queue, []).append(raw)
        moved = 0
        for queue, raws in by_queue.items():
            moved += scripts.run("requeue", [self._inflight[queue], self._queue[queue]], raws, client=self.client)
        return moved

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
