"""What unique locks and batches add to a job's start and end in the worker.

Used by each :class:`~django_bgjobs.worker.processor.Processor` thread, for a payload that
carries ``lock_digest`` or ``bid`` (any other payload costs one :func:`for_payload` call
that looks up two dict keys and returns None).  Duties:

1. :meth:`JobHooks.start`, before ``perform``, in one Lua call (``lua/unique_start.lua``):
   free an ``until_executing`` lock, or take a ``while_executing`` run lock.  When the run
   lock is held by a live job the default is to move this job from the in-flight list to
   the schedule set, due in about ``UNIQUE_RESCHEDULE_S``, in the same atomic step: no
   thread waits.  Other strategies raise, and the job takes the failure path.
2. :meth:`JobHooks.ack` on success, and :meth:`JobHooks.after_failure` given to
   :func:`django_bgjobs.retry.fail`: queue the lock changes (``lua/unique_end.lua``) and
   the batch's record of the outcome (``lua/batch.lua``, which enqueues the batch's
   callbacks when this was its last job) in the MULTI that removes the job from the
   in-flight list or writes its retry or dead entry.  Either all of it happens or none:
   a worker killed before that MULTI leaves the job in flight, its locks held, its batch
   waiting; the job is pushed back, runs again, and its end does the bookkeeping once.
3. :func:`record_death`, called by the Launcher for a poison job ``lua/recover.lua`` buried:
   the same bookkeeping as a death, just after the burial.
"""

import logging
import random

from django_bgjobs import batches, conf, keys, registry, scripts
from django_bgjobs.errors import Discard, UniqueJobError, UniqueJobRejected, UnknownJobError
from django_bgjobs.payload import dumps, now_s
from django_bgjobs.retry import DEAD, DISCARDED, RETRIED
from django_bgjobs.unique import LockOptions

logger = logging.getLogger(__name__)

# A payload whose class is unknown here still has its locks released and batch told.
_DEFAULT_OPTIONS = {
    lock: LockOptions(lock, None, "reschedule", None, False)
    for lock in ("until_executing", "until_executed", "while_executing", "until_and_while_executing", "until_expired")
}
_RUN_LOCKS = {"while_executing": "run", "until_and_while_executing": "release_run"}


def for_payload(payload):
    """The :class:`JobHooks` of a parsed payload, or None when it has no lock and no batch."""
    if "lock_digest" not in payload and "bid" not in payload:
        return None
    return JobHooks(payload)


class JobHooks:
    def __init__(self, payload):
        self.payload = payload
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

    # -- start ------------------------------------------------------------------------------

    def start(self, client, raw, inflight_key, identity):
        """Apply the lock rules as the job starts.  True: run it.  False: it was rescheduled
        (it left the in-flight list).  Raises when the run lock is held and ``on_conflict``
        says so: ``Discard`` ("log"), ``UniqueJobRejected`` ("reject"), ``UniqueJobError``."""
        if self.lock == "until_executing":
            mode = "release"
        elif self.lock in _RUN_LOCKS:
            mode = _RUN_LOCKS[self.lock]
        else:
            return True
        now = now_s()
        strategy = self.options.server_conflict or "reschedule"
        later, at = "", ""
        if strategy == "reschedule":
            at = now + conf.get("UNIQUE_RESCHEDULE_S") * random.uniform(1.0, 1.5)
            later = dumps({**{k: v for k, v in self.payload.items() if k != "enqueued_at"}, "at": at})
        answer = scripts.run(
            "unique_start", [self.lock_key, self.run_key, inflight_key, keys.schedule()],
            [mode, self.jid, raw, keys.process(identity), self.options.ttl_ms(), self.payload.get("class"),
             repr(float(now)), later, repr(float(at)) if at else ""],
            client=client,
        )
        answer = answer.decode() if isinstance(answer, bytes) else answer
        if answer == "run":
            return True
        where = f"{self.payload.get('class')} jid={self.jid}"
        if answer == "rescheduled":
            logger.info("%s rescheduled in %.1fs: another job holds its %s run lock", where, at - now, self.lock)
            return False
        message = f"{where}: another job holds its {self.lock} run lock"
        if strategy == "log":
            raise Discard(message)
        if strategy == "reject":
            raise UniqueJobRejected(message)
        raise UniqueJobError(message)

    # -- end --------------------------------------------------------------------------------

    def ack(self, client, inflight_key, raw):
        """Acknowledge a job that succeeded: one MULTI with the in-flight removal."""
        pipe = client.pipeline(transaction=True)
        pipe.lrem(inflight_key, 1, raw)
        self._queue_end(pipe, "success", None, None)
        pipe.execute()

    def after_failure(self, pipe, outcome, payload, exc, retry_at):
        """For :func:`django_bgjobs.retry.fail`'s ``after``: queue the bookkeeping of a
        failure that was ``outcome`` (retried, dead, discarded)."""
        if outcome == DISCARDED and isinstance(exc, Discard):
            outcome = "success"  # dropped on purpose: done, as far as its batch and lock go
        self._queue_end(pipe, outcome, payload, retry_at)

    def _queue_end(self, pipe, outcome, payload, retry_at):
        """Queue the lock and batch writes of an end that was ``outcome`` ("success", or
        retry's RETRIED, DEAD, DISCARDED) on ``pipe``."""
        if self.lock is not None:
            self._queue_unlock(pipe, outcome, retry_at)
        if self.bid is not None and self.jid:
            if outcome == "success":
                op, extra = "success", [self.jid]
            else:  # a job dropped without succeeding counts as failed: the batch completes, never succeeds
                op, extra = ("dead" if outcome == DEAD else "failure"), [self.jid, _failure_info(payload or self.payload)]
            script_keys, args = batches.script_args(op, self.bid, extra)
            scripts.run("batch", script_keys, args, client=pipe)

    def _queue_unlock(self, pipe, outcome, retry_at):
        release, extend_ms = "0", 0
        if self.lock == "until_executed":
            if outcome == RETRIED:
                extend_ms = self.options.ttl_ms(retry_at - now_s() if retry_at else 0)
            else:
                release = "1"
        release_run = "1" if self.lock in _RUN_LOCKS else "0"
        if release == "0" and extend_ms == 0 and release_run == "0":
            return
        scripts.run("unique_end", [self.lock_key, self.run_key], [self.jid, release, extend_ms, release_run], client=pipe)


def record_death(client, payload):
    """For a job the worker moved to the dead set outside a Processor (a poison job buried by
    ``lua/recover.lua``): free its locks and record the death in its batch, in one MULTI.
    Runs after the burial, so a crash in between leaves the lock to its TTL and the batch
    waiting; both steps are by jid, so running them again changes nothing."""
    extras = for_payload(payload)
    if extras is None:
        return
    pipe = client.pipeline(transaction=True)
    extras._queue_end(pipe, DEAD, payload, None)
    pipe.execute()


def _failure_info(payload):
    return dumps({
        "class": payload.get("class"), "error_class": payload.get("error_class"),
        "error_message": (payload.get("error_message") or "")[:1000], "failed_at": payload.get("failed_at"),
        "retried_at": payload.get("retried_at"), "retry_count": payload.get("retry_count"),
    })
