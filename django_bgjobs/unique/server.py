"""Unique jobs, the server side: the built-in server middleware :class:`LockRules`.

The client side (lock options, digest, the enqueue that takes the lock) is ``unique/client.py``.
A payload carries ``lock`` and ``lock_digest``; every other payload costs this middleware
one dict look-up per attempt.  Duties, in a worker:

1. As the job starts (:meth:`LockRules.__call__`, in one Lua call, ``unique/start.lua``):
   free an ``until_executing`` lock, or take a ``while_executing`` run lock.  When the run
   lock is held by a live job the default is to put the job back in the schedule set, due
   in about ``UNIQUE_RESCHEDULE_S``, through its unit of work (``attempt.reschedule``): no
   thread waits.  Other strategies raise, and the job takes the failure path.
2. As the job ends (:meth:`LockRules.end_writes`, the :mod:`~django_bgjobs.job_end` seam):
   queue the lock changes (``unique/end.lua``, compare-and-delete by jid) in the MULTI
   that ends the job, so a worker killed before it leaves the job in flight with its locks
   held: it is pushed back, runs again, and its end frees them once.  The API's
   hand-removals (``KILLED``, ``DELETED``) go through the same method.

Outside a worker (the ``inline`` backend, the test helpers) there is no attempt, and the
middleware leaves locks alone, as the client side does there.
"""

import logging
import random

from django_bgjobs import conf, execution, keys, registry, scripts
from django_bgjobs.errors import Discard, UniqueJobError, UniqueJobRejected, UnknownJobError
from django_bgjobs.job_end import NEVER_RAN, Outcome
from django_bgjobs.payload import now_s, printable
from django_bgjobs.unique.client import LockOptions

logger = logging.getLogger(__name__)

#: The lock types with a run lock, and how ``unique/start.lua`` treats each as a job starts.
RUN_LOCKS = {"while_executing": "run", "until_and_while_executing": "release_run"}

# A payload whose class is unknown here still has its locks released.
_DEFAULT_OPTIONS = {
    lock: LockOptions(lock, None, "reschedule", None, False)
    for lock in ("until_executing", "until_executed", "while_executing", "until_and_while_executing", "until_expired")
}


class JobLock:
    """The lock of one parsed payload: its type, options and keys (None: it has none)."""

    __slots__ = ("lock", "jid", "klass", "options", "lock_key", "run_key")

    @classmethod
    def of(cls, payload):
        """The :class:`JobLock` of ``payload``, or None when it has no (known) lock."""
        digest = payload.get("lock_digest")
        if not isinstance(digest, str):
            return None
        lock = payload.get("lock")
        options = None
        try:
            options = registry.get(payload["class"])._lock_options
        except (UnknownJobError, KeyError):
            pass
        if options is None or options.lock != lock:
            options = _DEFAULT_OPTIONS.get(lock)
        if options is None:  # an unknown lock type: leave its lock to its TTL
            return None
        return cls(lock, payload.get("jid"), payload.get("class"), options, digest)

    def __init__(self, lock, jid, klass, options, digest):
        self.lock, self.jid, self.klass, self.options = lock, jid, klass, options
        self.lock_key = keys.unique_lock(digest)
        self.run_key = keys.unique_run_lock(digest)

    def start(self, identity, now):
        """Run ``unique/start.lua``; return "run" or "busy" (the run lock is held)."""
        mode = "release" if self.lock == "until_executing" else RUN_LOCKS.get(self.lock)
        if mode is None:
            return "run"
        answer = scripts.run(
            "unique/start", [self.lock_key, self.run_key],
            [mode, self.jid, keys.process(identity), self.options.ttl_ms(), self.klass, repr(float(now))],
        )
        return answer.decode() if isinstance(answer, bytes) else answer

    def queue_end(self, pipe, outcome, retry_at):
        """Queue on ``pipe`` the lock changes of an end that was ``outcome``."""
        release, extend_ms = "0", 0
        if outcome in NEVER_RAN:
            release = "0" if self.lock == "until_expired" else "1"
        elif self.lock == "until_executed":
            if outcome == Outcome.RETRIED:
                extend_ms = self.options.ttl_ms(retry_at - now_s() if retry_at else 0)
            else:
                release = "1"
        release_run = "1" if self.lock in RUN_LOCKS else "0"
        if release == "0" and extend_ms == 0 and release_run == "0":
            return
        scripts.run("unique/end", [self.lock_key, self.run_key], [self.jid, release, extend_ms, release_run],
                    client=pipe)


class LockRules:
    """Built-in server middleware: a unique job's lock rules at its start and its end."""

    #: The jobs :meth:`end_writes` has state about (the ``job_end`` seam's pre-check).
    end_writes_for = ("lock_digest",)

    def __init__(self, call_next):
        self.call_next = call_next

    @classmethod
    def applies_to(cls, job_class):
        """Only around the jobs of a class with a ``lock`` (the end writes, found through
        ``job_end``, still free the lock a payload carries whatever its class says now)."""
        return job_class._lock_options is not None

    def __call__(self, job, payload):
        if "lock_digest" not in payload:
            return self.call_next(job, payload)
        attempt = execution.current_attempt()
        lock = JobLock.of(payload) if attempt is not None else None
        if lock is None:
            return self.call_next(job, payload)
        now = now_s()
        if lock.start(attempt.identity, now) == "run":
            return self.call_next(job, payload)
        where = f"{printable(payload.get('class'))} jid={printable(lock.jid)}"
        strategy = lock.options.server_conflict or "reschedule"
        if strategy == "reschedule":
            at_s = now + conf.get("UNIQUE_RESCHEDULE_S") * random.uniform(1.0, 1.5)
            attempt.reschedule(at_s, payload)
            logger.info("%s rescheduled in %.1fs: another job holds its %s run lock", where, at_s - now, lock.lock)
            return None
        message = f"{where}: another job holds its {lock.lock} run lock"
        if strategy == "log":
            raise Discard(message)
        if strategy == "reject":
            raise UniqueJobRejected(message)
        raise UniqueJobError(message)

    @staticmethod
    def end_writes(pipe, end):
        """The :mod:`~django_bgjobs.job_end` seam: free or extend the job's locks as it ends."""
        if end.outcome == Outcome.RESCHEDULED or "lock_digest" not in end.payload:
            return
        lock = JobLock.of(end.payload)
        if lock is not None:
            lock.queue_end(pipe, end.outcome, end.retry_at)
