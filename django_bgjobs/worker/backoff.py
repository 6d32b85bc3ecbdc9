"""Waiting out a lost Redis connection: exponential backoff with jitter, capped; and the
loop of the worker's periodic threads (poller, scheduler, heartbeat) built on it."""

import logging
import random
import threading

import redis

logger = logging.getLogger(__name__)


class Reconnect:
    """Call :meth:`failed` after each Redis error and :meth:`ok` after a success.

    ``failed`` sleeps 0.1 s, 0.2 s, 0.4 s ... up to ``BGJOBS["RECONNECT_MAX_WAIT_S"]``
    (with jitter so many threads do not hammer a recovering server together), and
    logs the first error of a run and then every tenth, so a long outage does not
    flood the log.
    """

    def __init__(self, what, max_wait_s, stop_event=None):
        self.what = what
        self.max_wait_s = max_wait_s
        self.errors = 0
        self.stop_event = stop_event or threading.Event()

    def failed(self, exc):
        self.errors += 1
        wait = min(self.max_wait_s, 0.1 * 2 ** min(self.errors - 1, 10)) * random.uniform(0.75, 1.25)
        if self.errors == 1 or self.errors % 10 == 0:
            logger.warning("%s: Redis error (%s); retrying in %.1fs (attempt %d)", self.what, exc, wait, self.errors)
        self.stop_event.wait(wait)

    def ok(self):
        if self.errors:
            logger.info("%s: Redis connection is back after %d failed attempts", self.what, self.errors)
            self.errors = 0


def repeat(step, interval_s, stop_event, reconnect, wait_first=False):
    """Call ``step()`` every ``interval_s`` seconds (a number, or a callable returning one:
    jitter) until ``stop_event`` is set; a Redis error waits with ``reconnect``'s backoff
    and the step is tried again.  ``wait_first``: wait one interval before the first step."""
    next_wait = interval_s if callable(interval_s) else (lambda: interval_s)
    if wait_first and stop_event.wait(next_wait()):
        return
    while not stop_event.is_set():
        try:
            step()
        except redis.RedisError as exc:
            reconnect.failed(exc)
            continue
        reconnect.ok()
        stop_event.wait(next_wait())
