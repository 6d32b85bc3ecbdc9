"""Waiting out a lost Redis connection: exponential backoff with jitter, capped."""

import logging
import random
import threading

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
