"""Jobs and batch callbacks for the unique-job and batch tests (imported by ``jobs.py``, so
worker subprocesses know them too).

Runs are recorded in the ledger of ``jobs.py`` (``test:performed``) with their start and
end times and pid, so a test can check that two runs never overlapped.  Batch callbacks
append ``{"event", "bid", "options", "total", "pending", "failures"}`` to :data:`CALLBACKS_KEY`.
"""

import json
import os
import time
from datetime import timedelta

from django_bgjobs import Batch, Job
from django_bgjobs.connection import get_redis
from tests.testapp.jobs import JobFailure, record

CALLBACKS_KEY = "test:callbacks"
RUNNING_KEY = "test:running"  # a counter of runs under way; MAX_RUNNING_KEY keeps its peak
MAX_RUNNING_KEY = "test:max-running"


def callbacks(client=None):
    """The batch callbacks that ran, oldest first."""
    client = client or get_redis()
    return [json.loads(raw) for raw in client.lrange(CALLBACKS_KEY, 0, -1)]


class _TimedRun:
    """Sleeps ``seconds`` while counted in ``test:running``, then records the run."""

    def perform(self, key, seconds=0.0):
        redis = get_redis()
        started = time.time()
        running = redis.incr(RUNNING_KEY)
        redis.eval("if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then "
                   "redis.call('SET', KEYS[1], ARGV[1]) end", 1, MAX_RUNNING_KEY, running)
        try:
            time.sleep(seconds)
        finally:
            redis.decr(RUNNING_KEY)
        record(self.jid, [key, seconds], start=started, end=time.time(), pid=os.getpid())


class UntilExecutedJob(_TimedRun, Job):
    lock = "until_executed"


class UntilExecutingJob(_TimedRun, Job):
    lock = "until_executing"


class WhileExecutingJob(_TimedRun, Job):
    lock = "while_executing"


class UntilAndWhileExecutingJob(_TimedRun, Job):
    lock = "until_and_while_executing"


class UntilExpiredJob(_TimedRun, Job):
    lock = "until_expired"
    lock_ttl = timedelta(seconds=30)


class RaiseOnConflictJob(_TimedRun, Job):
    lock = "until_executed"
    on_conflict = "raise"


class RejectOnConflictJob(_TimedRun, Job):
    lock = "until_executed"
    on_conflict = "reject"


class ReplaceOnConflictJob(_TimedRun, Job):
    lock = "until_executed"
    on_conflict = "replace"

    def lock_args(self, key, seconds=0.0):
        return (key,)


class WhileExecutingLogJob(_TimedRun, Job):
    lock = "while_executing"
    on_conflict = "log"


class WhileExecutingRejectJob(_TimedRun, Job):
    lock = "while_executing"
    on_conflict = "reject"


class WhileExecutingRaiseJob(_TimedRun, Job):
    lock = "while_executing"
    on_conflict = "raise"

    def retry_in(self, count, exception):
        return 3600


class ReportJob(Job):
    """The issue's example: the lock covers (user_id, report_type), not ``note``."""

    lock = "until_executed"
    on_conflict = "log"
    lock_ttl = timedelta(hours=1)

    def lock_args(self, user_id, report_type, note=""):
        return (user_id, report_type)

    def perform(self, user_id, report_type, note=""):
        record(self.jid, [user_id, report_type, note])


class FlakyUniqueJob(Job):
    """until_executed; fails its first ``fail_times`` attempts (counted per jid), retrying at once."""

    lock = "until_executed"

    def perform(self, key, fail_times):
        attempt = get_redis().incr(f"test:attempts:{self.jid}")
        if attempt <= fail_times:
            raise JobFailure(f"attempt {attempt} of {fail_times} failing")
        record(self.jid, [key, fail_times], attempt=attempt)

    def retry_in(self, count, exception):
        return 0


# -- batches --------------------------------------------------------------------------------


class RecordingCallback:
    """Records every batch event it is called for in ``test:callbacks``."""

    def _record(self, event, status, options):
        get_redis().rpush(CALLBACKS_KEY, json.dumps({
            "event": event, "bid": status.bid, "options": options, "total": status.total,
            "pending": status.pending, "failures": status.failures, "pid": os.getpid(), "at": time.time(),
        }, default=repr))

    def on_success(self, status, options):
        self._record("success", status, options)

    def on_complete(self, status, options):
        self._record("complete", status, options)

    def on_death(self, status, options):
        self._record("death", status, options)


class BatchChildJob(Job):
    """Fails its first ``fail_times`` attempts (counted per jid), then records.  Retries at
    once (``retry_in`` 0) so tests need not wait for the backoff."""

    def perform(self, n, fail_times=0, seconds=0.0):
        if fail_times:
            attempt = get_redis().incr(f"test:attempts:{self.jid}")
            if attempt <= fail_times:
                raise JobFailure(f"child {n}: attempt {attempt} of {fail_times} failing")
        if seconds:
            time.sleep(seconds)
        record(self.jid, [n], bid=self.bid)

    def retry_in(self, count, exception):
        return 0


class DyingChildJob(Job):
    """``retry = 0``: its failure sends it straight to the dead set."""

    retry = 0

    def perform(self, n):
        raise JobFailure(f"child {n} dies")


class GrowingJob(Job):
    """Adds ``more`` children to its own batch from inside ``perform``."""

    def perform(self, more):
        with self.batch.jobs():
            BatchChildJob.perform_bulk([(f"added-{i}",) for i in range(more)])
        record(self.jid, [more], bid=self.bid)


class NestingJob(Job):
    """Creates a child batch of ``children`` jobs (its own batch is the parent)."""

    def perform(self, children):
        child = Batch(description="child")
        child.on("success", RecordingCallback, {"which": "child"})
        with child.jobs():
            BatchChildJob.perform_bulk([(f"nested-{i}",) for i in range(children)])
        record(self.jid, [children], bid=self.bid, child_bid=child.bid)


# The example, as written there (ChildJob records; the callback records).


class ChildJob(Job):
    def perform(self, user_id):
        record(self.jid, [user_id], bid=self.bid)


class NewsletterDoneCallback:
    def on_success(self, status, options):
        RecordingCallback()._record("success", status, options)

    def on_complete(self, status, options):
        RecordingCallback()._record("complete", status, options)


class ParentJob(Job):
    def perform(self, user_ids):
        batch = Batch(description="Newsletter")
        batch.on("success", NewsletterDoneCallback, {"user_ids": user_ids})
        batch.on("complete", NewsletterDoneCallback, {"user_ids": user_ids})
        with batch.jobs():
            for user_id in user_ids:
                ChildJob.perform_later(user_id)
