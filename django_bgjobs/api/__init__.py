"""The monitoring API: Python objects over django-bgjobs' data in Redis, named like Sidekiq's.

::

    from django_bgjobs.api import Queue, RetrySet, DeadSet, ProcessSet, Stats

    Stats().enqueued                      # jobs waiting, all queues
    Queue("default").latency()            # seconds the oldest job has waited
    RetrySet().find_job(jid).retry()      # run a failed job now
    DeadSet().page(0, 25, reverse=True)   # the 25 latest deaths

It is the monitoring side, for the admin, a shell or a health check: it imports
no worker code and opens no connection at import.  Read methods never write;
methods that change data say so (``delete``, ``retry``, ``kill``, ``clear``,
``pause``, ``cleanup``...).  The data is live: a page read while workers run
may already be out of date.

Modules: ``records`` (one job), ``queues`` (queue lists), ``sets`` (the
schedule, retry and dead sets), ``processes`` (workers and their current jobs),
``stats`` (counters and history), ``cron`` (recurring jobs), ``unique`` (unique-job
locks), ``batches`` (batches and their progress), ``metrics`` (per job class, minute by minute).
"""

from django_bgjobs.api.batches import BatchSet
from django_bgjobs.api.cron import CronEntry, CronSet
from django_bgjobs.api.metrics import ClassMetrics, JobMetrics
from django_bgjobs.api.processes import Process, ProcessSet, WorkSet
from django_bgjobs.api.queues import Queue
from django_bgjobs.api.records import JobRecord, SortedEntry
from django_bgjobs.api.sets import DeadSet, RetrySet, ScheduledSet, SortedSet
from django_bgjobs.api.stats import Stats
from django_bgjobs.api.unique import UniqueLock, UniqueLocks
from django_bgjobs.batches.client import BatchStatus

__all__ = [
    "BatchSet", "BatchStatus", "ClassMetrics", "CronEntry", "CronSet", "DeadSet", "JobMetrics", "JobRecord",
    "Process", "ProcessSet", "Queue",
    "RetrySet", "ScheduledSet", "SortedEntry", "SortedSet", "Stats", "UniqueLock", "UniqueLocks", "WorkSet",
]
