"""Cluster-wide numbers for a dashboard: :class:`Stats`.

``stat:processed`` and ``stat:failed`` count every job run and failure since the
last reset; their ``:YYYY-MM-DD`` twins (UTC day) feed :meth:`Stats.history`.
"""

import datetime

from django_bgjobs import keys
from django_bgjobs.api._common import RedisUser, answers, configured_queue_names, text, to_int
from django_bgjobs.api.records import JobRecord

STAT_NAMES = ("processed", "failed")
MAX_HISTORY_DAYS = 5 * 365


class Stats(RedisUser):
    """A snapshot of the counters, set sizes and queue sizes, read when created::

        stats = Stats()
        stats.processed, stats.failed, stats.enqueued, stats.retry_size, stats.queues

    Two pipelined round trips, whatever the number of queues and processes: the
    first reads every fixed key and the members of ``queues`` and ``processes``;
    the second reads each queue's length and each process's ``busy`` count.
    """

    def __init__(self, client=None):
        super().__init__(client)
        self._fetch()

    def __repr__(self):
        return f"<Stats processed={self.processed} failed={self.failed} enqueued={self.enqueued}>"

    def _fetch(self):
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(keys.stat("processed"))
        pipe.get(keys.stat("failed"))
        pipe.zcard(keys.schedule())
        pipe.zcard(keys.retry())
        pipe.zcard(keys.dead())
        pipe.smembers(keys.processes())
        pipe.smembers(keys.queues())
        pipe.lindex(keys.queue("default"), -1)
        # A key of another type (another program's) reads as empty: answers() gives None.
        processed, failed, scheduled, retries, dead, identities, queue_names, oldest_default = answers(pipe)
        #: Jobs run since the last :meth:`reset`, and how many of those raised.
        self.processed = to_int(processed)
        self.failed = to_int(failed)
        self.scheduled_size = scheduled or 0
        self.retry_size = retries or 0
        self.dead_size = dead or 0
        #: Seconds the oldest job of the ``default`` queue has waited (0.0 when empty).
        self.default_queue_latency = 0.0 if oldest_default is None else JobRecord(oldest_default).latency

        identities = sorted(text(i) for i in identities or ())
        names = sorted({text(n) for n in queue_names or ()} | set(configured_queue_names()))
        pipe = self.redis.pipeline(transaction=False)
        for identity in identities:
            pipe.type(keys.process(identity))
            pipe.hget(keys.process(identity), "busy")
        for name in names:
            pipe.llen(keys.queue(name))
        results = answers(pipe)
        per_process = results[: 2 * len(identities)]
        # A live process is a hash; a member naming a key of another type is no process.
        live_busy = [busy for kind, busy in zip(per_process[::2], per_process[1::2]) if text(kind) == "hash"]
        sizes = [size or 0 for size in results[2 * len(identities):]]
        #: Live worker processes, and the sum of their busy threads.
        self.processes_size = len(live_busy)
        self.workers_size = sum(to_int(busy) for busy in live_busy)
        #: Queue name -> jobs waiting, biggest first (as Sidekiq's dashboard lists them).
        self.queues = dict(sorted(zip(names, sizes), key=lambda pair: (-pair[1], pair[0])))
        self.enqueued = sum(sizes)

    @classmethod
    def history(cls, days=30, start_date=None, client=None):
        """``[(date, processed, failed), ...]`` for ``days`` UTC days, newest first, from ``start_date``.

        One MGET.  Days without a counter (nothing ran, or it expired) count 0.
        """
        if not 1 <= days <= MAX_HISTORY_DAYS:
            raise ValueError(f"days must be between 1 and {MAX_HISTORY_DAYS}, not {days}")
        start = start_date or datetime.datetime.now(datetime.timezone.utc).date()
        dates = [start - datetime.timedelta(days=n) for n in range(days)]
        stat_keys = [keys.stat(name, d.isoformat()) for d in dates for name in STAT_NAMES]
        values = RedisUser(client).redis.mget(stat_keys)
        return [(d, to_int(values[2 * n]), to_int(values[2 * n + 1])) for n, d in enumerate(dates)]

    @classmethod
    def reset(cls, *which, client=None):
        """Set ``stat:processed`` and/or ``stat:failed`` to 0 (both when none is named).

        The per-day counters are left alone, as Sidekiq does.
        """
        unknown = set(which) - set(STAT_NAMES)
        if unknown:
            raise ValueError(f"unknown stat(s) {sorted(unknown)}; choose from {STAT_NAMES}")
        names = [name for name in STAT_NAMES if not which or name in which]
        RedisUser(client).redis.mset({keys.stat(name): 0 for name in names})
