"""Poller: moves due jobs from the ``schedule`` and ``retry`` sets into their queues.

Runs in one thread per worker process, started by the
:class:`~django_bgjobs.worker.launcher.Launcher`.  Safe with any number of workers:
each move is one Lua call (:func:`django_bgjobs.moves.due`, ``lua/move_to_queue.lua``) that
removes the job from the set and pushes it in the same atomic step, so a job is moved once and
never dropped.  It is a move, not a push: the client middleware chain does not run again.
:meth:`enqueue_due` does one pass and returns; the thread wraps it in a loop.
"""

import logging
import random
import threading

from django_bgjobs import conf, keys, moves
from django_bgjobs.connection import get_redis
from django_bgjobs.payload import now_s
from django_bgjobs.worker.backoff import Reconnect, repeat

logger = logging.getLogger(__name__)

BATCH = 100


class Poller:
    def __init__(self, client=None, stop_event=None):
        self.client = client or get_redis()
        self.stop_event = stop_event or threading.Event()
        self.interval_s = conf.get("POLL_INTERVAL_S")
        self.thread = None
        self._reconnect = Reconnect("poller", conf.get("RECONNECT_MAX_WAIT_S"), self.stop_event)

    def enqueue_due(self, now=None):
        """Move every job due at ``now`` (epoch seconds) to its queue; return how many moved."""
        now = now_s() if now is None else now
        moved = 0
        for sorted_set in (keys.schedule(), keys.retry()):
            while True:
                count = moves.due(self.client, sorted_set, now_s=now, limit=BATCH)
                moved += count
                if count < BATCH:
                    break
        return moved

    def start(self):
        self.thread = threading.Thread(target=self.run, name="bgjobs-poller", daemon=True)
        self.thread.start()

    def run(self):
        # Jitter so many workers started together do not poll in lockstep.
        repeat(self.enqueue_due, lambda: self.interval_s * random.uniform(0.5, 1.5), self.stop_event,
               self._reconnect)
