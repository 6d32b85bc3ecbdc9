"""Reliable fetch: take a job from the queues into this process's in-flight lists.

Run by each :class:`~django_bgjobs.worker.processor.Processor` thread for itself.

1. Try every queue in order (strict or weighted) with one Lua call
   (``lua/fetch.lua``) that skips paused queues and moves the first job it finds
   into ``inflight:IDENTITY:QUEUE`` atomically.  A job is never only in memory: a
   ``kill -9`` leaves it in the in-flight list for another worker to push back.
2. When all queues are empty, block on one queue with ``BLMOVE`` (also atomic) for up
   to ``FETCH_TIMEOUT_S``.  Threads spread over the queues (thread *i* waits on queue
   *i mod n*), so an idle worker picks up a job from any queue within a round trip
   when it has at least as many threads as queues; with fewer threads, a queue no
   thread waits on is seen within ``FETCH_TIMEOUT_S``.
"""

import time

from django_bgjobs import conf, keys, scripts
from django_bgjobs.connection import blocking_wait_s, get_redis


class Fetcher:
    def __init__(self, identity, queue_order, client=None):
        self.identity = identity
        self.queue_order = queue_order
        self.client = client or get_redis()
        self._inflight = {name: keys.inflight(identity, name) for name in queue_order.names}
        self._queue = {name: keys.queue(name) for name in queue_order.names}
        # Below the socket timeout, so Redis answers a BLMOVE before the client stops listening.
        self.timeout_s = blocking_wait_s(self.client, conf.get("FETCH_TIMEOUT_S"))

    def inflight_key(self, queue_name):
        return self._inflight[queue_name]

    def fetch(self, slot=0, block=True):
        """Return ``(queue_name, raw_payload)`` or None when nothing came within the timeout."""
        names = self.queue_order.order()
        flat = [keys.paused()]
        for name in names:
            flat += (self._queue[name], self._inflight[name])
        found = scripts.run("fetch", flat, names, client=self.client)
        if found:
            return found[0].decode(), found[1]
        if not block:
            return None
        name = self.queue_order.names[slot % len(self.queue_order.names)]
        if self.client.sismember(keys.paused(), name):
            # The queue this thread waits on is paused: wait without taking from it.
            time.sleep(self.timeout_s)
            return None
        raw = self.client.blmove(self._queue[name], self._inflight[name], self.timeout_s, "RIGHT", "LEFT")
        return (name, raw) if raw is not None else None
