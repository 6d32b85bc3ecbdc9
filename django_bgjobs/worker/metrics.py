"""Job metrics: per job class, how many ran, how many failed and how long they took.

One :class:`ExecutionMetrics` per worker process, owned by the
:class:`~django_bgjobs.worker.manager.Manager`.  The threads that end jobs (processors, the
event loop's finisher) call :meth:`ExecutionMetrics.record` with each attempt's class and
duration; each heartbeat takes what was recorded since the last one (:meth:`take`) and adds
it, in the heartbeat's own MULTI, to the hash of the current UTC minute
(``keys.metrics``: ``CLASS|p``, ``CLASS|f``, ``CLASS|ms``, as Sidekiq 7 keeps them).  What a
failed heartbeat could not write is put back for the next (:meth:`put_back`).  The
monitoring side reads the hashes (``django_bgjobs.api.JobMetrics``, the admin's Metrics page).
"""

import threading

from django_bgjobs import conf, keys

#: How long a minute's hash is kept.
METRICS_TTL_S = 8 * 60 * 60
TEN_MINUTE_METRICS_TTL_S = 72 * 60 * 60  # Sidekiq 8's MID_TERM


class ExecutionMetrics:
    def __init__(self):
        self._lock = threading.Lock()
        self._pending = {}  # class name -> [runs, failures, milliseconds]

    def record(self, klass, duration_s, failed=False):
        with self._lock:
            entry = self._pending.get(klass)
            if entry is None:
                entry = self._pending[klass] = [0, 0, 0.0]
            entry[0] += 1
            entry[1] += failed
            entry[2] += duration_s * 1000

    def take(self):
        """What was recorded since the last call, for the caller to write: whole milliseconds,
        the fractions kept for the next call (a 0.4 ms job would otherwise always add 0)."""
        with self._lock:
            pending, self._pending = self._pending, {}
            taken = {}
            for klass, (runs, failures, ms) in pending.items():
                whole = int(ms)
                if runs or whole:
                    taken[klass] = [runs, failures, whole]
                if ms - whole:
                    self._pending[klass] = [0, 0, ms - whole]
        return taken

    def put_back(self, taken):
        """Return what :meth:`take` gave when writing it failed."""
        with self._lock:
            for klass, (runs, failures, ms) in taken.items():
                entry = self._pending.setdefault(klass, [0, 0, 0.0])
                entry[0] += runs
                entry[1] += failures
                entry[2] += ms


def queue_write(pipe, taken, now_s):
    """Queue on ``pipe`` the HINCRBYs adding ``taken`` to the hash of the minute of ``now_s``."""
    if not taken:
        return
    buckets = [(keys.metrics(now_s), METRICS_TTL_S)]
    if conf.get("SIDEKIQ_VERSION") == 8:  # and its ten-minute buckets, for its 24/48/72 h charts
        buckets.append((keys.metrics_ten_minutes(now_s), TEN_MINUTE_METRICS_TTL_S))
    for key, ttl_s in buckets:
        for klass, (runs, failures, ms) in taken.items():
            if runs:
                pipe.hincrby(key, f"{klass}|p", runs)
            if failures:
                pipe.hincrby(key, f"{klass}|f", failures)
            if ms:
                pipe.hincrby(key, f"{klass}|ms", ms)
        pipe.expire(key, ttl_s)
