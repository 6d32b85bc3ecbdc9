"""What a job's end does to its unique lock and its batch, wherever the job ends.

A job ends in one of these ways, each with its bookkeeping (the lock writes are
``lua/unique_end.lua``, compare-and-delete by jid; the batch ones ``lua/batch.lua``):

* in a worker (``worker/hooks.py`` queues :meth:`JobEnd.queue_end` in the MULTI that
  acknowledges the job or writes its retry or dead entry): ``SUCCEEDED``, or
  :mod:`~django_bgjobs.retry`'s ``RETRIED``, ``DEAD``, ``DISCARDED``;
* buried as a poison job by ``lua/recover.lua``: ``DEAD`` (:func:`record`, just after);
* dropped unrun by a worker because it was due longer ago than its ``expires_in``:
  ``EXPIRED`` (its enqueue lock is freed, and its batch counts it as a success, as Sidekiq
  Pro's expiring jobs do);
* by hand, through :mod:`django_bgjobs.api` (so the admin too), before it ran or while it
  waited for a retry: ``KILLED`` (moved to the dead set: its batch records a death) or
  ``DELETED`` (removed: its batch records a failure, so it can complete but never succeed).
  Either frees its enqueue lock (``until_expired`` ones excepted: they always run their
  time), so an equal job can be enqueued again at once, as sidekiq-unique-jobs does when a
  job is deleted through Sidekiq's API.

Client-side code: the API and the worker both use it, and it opens no connection of its own.
"""

from django_bgjobs import batches, keys, registry, scripts
from django_bgjobs.errors import UnknownJobError
from django_bgjobs.payload import dumps, now_s
from django_bgjobs.retry import DEAD, RETRIED
from django_bgjobs.unique import LockOptions

SUCCEEDED = "success"
EXPIRED = "expired"
KILLED = "killed"
DELETED = "deleted"
_NEVER_RAN = (EXPIRED, KILLED, DELETED)  # ended before it ran (or between its retries)

# A payload whose class is unknown here still has its locks released and batch told.
_DEFAULT_OPTIONS = {
    lock: LockOptions(lock, None, "reschedule", None, False)
    for lock in ("until_executing", "until_executed", "while_executing", "until_and_while_executing", "until_expired")
}
#: The lock types with a run lock, and how ``lua/unique_start.lua`` treats each as a job starts.
RUN_LOCKS = {"while_executing": "run", "until_and_while_executing": "release_run"}


class JobEnd:
    """The lock and batch of one parsed payload (see the module docstring)."""

    def __init__(self, payload):
        self.payload = payload
        self._fired_at = None  # the position of lua/batch.lua's answer in the last pipe queued on
        self.jid = payload.get("jid")
        self.bid = payload.get("bid") if isinstance(payload.get("bid"), str) else None
        digest = payload.get("lock_digest")
        self.lock = payload.get("lock") if isinstance(digest, str) else None
        self.options = None
        if self.lock is not None:
            try:
                self.options = registry.get(payload["class"])._lock_options
            except UnknownJobError:
                pass
            if self.options is None or self.options.lock != self.lock:
                self.options = _DEFAULT_OPTIONS.get(self.lock)
            if self.options is None:  # an unknown lock type: leave its lock to its TTL
                self.lock = None
            else:
                self.lock_key = keys.unique_lock(digest)
                self.run_key = keys.unique_run_lock(digest)

    def queue_end(self, pipe, outcome, payload=None, retry_at=None):
        """Queue on ``pipe`` the lock and batch writes of an end that was ``outcome``;
        ``payload`` is the updated copy (with its error) when there is one."""
        if self.lock is not None:
            self._queue_unlock(pipe, outcome, retry_at)
        if self.bid is not None and self.jid:
            if outcome in (SUCCEEDED, EXPIRED):
                op, extra = "success", [self.jid]
            else:  # a job dropped without succeeding counts as failed: the batch completes, never succeeds
                dead = outcome in (DEAD, KILLED)
                op, extra = ("dead" if dead else "failure"), [self.jid, _failure_info(payload or self.payload)]
            script_keys, args = batches.script_args(op, self.bid, extra)
            self._fired_at = len(pipe)
            scripts.run("batch", script_keys, args, client=pipe)

    def push_fired_callbacks(self, client, results=None):
        """Once the write :meth:`queue_end` joined has run: push the batch callbacks it fired
        (``lua/batch.lua`` leaves them in an outbox; :func:`batches.push_fired_callbacks` pushes
        them through the one push).  ``results``: that write's results, to skip the look at the
        outbox when nothing fired."""
        if self.bid is None:
            return
        if results is not None and self._fired_at is not None and not results[self._fired_at]:
            return
        batches.push_fired_callbacks(client)

    def _queue_unlock(self, pipe, outcome, retry_at):
        release, extend_ms = "0", 0
        if outcome in _NEVER_RAN:
            release = "0" if self.lock == "until_expired" else "1"
        elif self.lock == "until_executed":
            if outcome == RETRIED:
                extend_ms = self.options.ttl_ms(retry_at - now_s() if retry_at else 0)
            else:
                release = "1"
        release_run = "1" if self.lock in RUN_LOCKS else "0"
        if release == "0" and extend_ms == 0 and release_run == "0":
            return
        scripts.run("unique_end", [self.lock_key, self.run_key], [self.jid, release, extend_ms, release_run], client=pipe)


def record(client, payloads, outcome):
    """Write the ends of ``payloads`` (parsed dicts) that have a lock or a batch, all in one
    MULTI; return how many had any.  By jid, so writing an end twice changes nothing."""
    ends = [JobEnd(payload) for payload in payloads if "lock_digest" in payload or "bid" in payload]
    if ends:
        pipe = client.pipeline(transaction=True)
        for end in ends:
            end.queue_end(pipe, outcome)
        results = pipe.execute()
        for end in ends:
            end.push_fired_callbacks(client, results)
    return len(ends)


def _failure_info(payload):
    return dumps({
        "class": payload.get("class"), "error_class": payload.get("error_class"),
        "error_message": (payload.get("error_message") or "")[:1000], "failed_at": payload.get("failed_at"),
        "retried_at": payload.get("retried_at"), "retry_count": payload.get("retry_count"),
    })
