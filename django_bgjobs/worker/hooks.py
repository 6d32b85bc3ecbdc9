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
   the batch's record of the outcome (``lua/batch.lua``, which records the batch's
   callbacks in its outbox when this was its last job; they are pushed right after the
   MULTI) in the MULTI that removes the job from the in-flight list or writes its retry or
   dead entry.  Either all of it happens or none:
   a worker killed before that MULTI leaves the job in flight, its locks held, its batch
   waiting; the job is pushed back, runs again, and its end does the bookkeeping once.
3. :func:`record_death`, called by the Launcher for a poison job ``lua/recover.lua`` buried:
   the same bookkeeping as a death, just after the burial.
"""

import logging
import random

from django_bgjobs import conf, job_end, keys, scripts
from django_bgjobs.errors import Discard, UniqueJobError, UniqueJobRejected
from django_bgjobs.job_end import RUN_LOCKS, SUCCEEDED, JobEnd
from django_bgjobs.payload import dumps, now_s
from django_bgjobs.retry import DEAD, DISCARDED

logger = logging.getLogger(__name__)

def for_payload(payload):
    """The :class:`JobHooks` of a parsed payload, or None when it has no lock and no batch."""
    if "lock_digest" not in payload and "bid" not in payload:
        return None
    return JobHooks(payload)


class JobHooks(JobEnd):
    """A job's lock and batch as the worker runs it: :meth:`start`, then its end
    (:class:`~django_bgjobs.job_end.JobEnd`) in the MULTI that acknowledges it or writes its
    retry or dead entry."""

    # -- start ------------------------------------------------------------------------------

    def start(self, client, raw, inflight_key, identity):
        """Apply the lock rules as the job starts.  True: run it.  False: it was rescheduled
        (it left the in-flight list).  Raises when the run lock is held and ``on_conflict``
        says so: ``Discard`` ("log"), ``UniqueJobRejected`` ("reject"), ``UniqueJobError``."""
        if self.lock == "until_executing":
            mode = "release"
        elif self.lock in RUN_LOCKS:
            mode = RUN_LOCKS[self.lock]
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

    def ack(self, client, inflight_key, raw, outcome=SUCCEEDED):
        """Acknowledge a job that succeeded (or expired unrun): one MULTI with the in-flight removal."""
        pipe = client.pipeline(transaction=True)
        pipe.lrem(inflight_key, 1, raw)
        self.queue_end(pipe, outcome)
        self.push_fired_callbacks(client, pipe.execute())

    def after_failure(self, pipe, outcome, payload, exc, retry_at):
        """For :func:`django_bgjobs.retry.fail`'s ``after``: queue the bookkeeping of a
        failure that was ``outcome`` (retried, dead, discarded)."""
        if outcome == DISCARDED and isinstance(exc, Discard):
            outcome = SUCCEEDED  # dropped on purpose: done, as far as its batch and lock go
        self.queue_end(pipe, outcome, payload, retry_at)


def record_death(client, payload):
    """For a job the worker moved to the dead set outside a Processor (a poison job buried by
    ``lua/recover.lua``): free its locks and record the death in its batch, in one MULTI.
    Runs after the burial, so a crash in between leaves the lock to its TTL and the batch
    waiting; both steps are by jid, so running them again changes nothing."""
    job_end.record(client, [payload], DEAD)
