"""Watchdog: enforces ``Job.timeout`` inside one worker process.

One thread per worker process, started by the :class:`~django_bgjobs.worker.launcher.Launcher`
when a registered job sets ``timeout``.  Each :class:`~django_bgjobs.worker.processor.Processor`
has its own :class:`Guard`; the built-in server middleware ``execution.Timeout`` runs the
job's perform callbacks and ``perform`` through it (it reaches the guard as
``execution.current_attempt().guard``), and the guard arms the job's deadline and disarms it
when ``perform`` returns.  Every ``TICK_S`` the watchdog thread calls :meth:`Watchdog.check`:

1. A job past its ``timeout``: raise :class:`~django_bgjobs.errors.JobTimeout` inside its
   thread (``PyThreadState_SetAsyncExc``).  ``perform`` ends with that exception, which is a
   failure like any other: the job is retried (or goes to the dead set when out of retries).
2. A job still running ``BGJOBS["JOB_TIMEOUT_GRACE_S"]`` after that: the exception could not
   reach it.  ``on_stuck(guard)`` is called once; the launcher then, under ``--processes``,
   records the failure and stops the process so the supervisor forks a fresh one, and in a
   single process logs an error (it cannot end one thread of its own process).

The limit of step 1, which is CPython's: the exception is delivered when the thread next runs
Python bytecode.  A thread blocked in C code -- ``time.sleep``, a socket read without a
timeout, a long C extension call, a lock -- only sees it once that call returns.  And a job
that catches ``Exception`` around the interrupted code swallows it like any other.  Step 2 is
the backstop for both: only a process can be stopped from outside with certainty, so hard
limits need ``runjobs --processes``.  Give blocking calls their own timeouts regardless.

A :class:`Guard` makes sure the exception never lands outside ``perform``: the watchdog raises
only while the guard is armed, under the guard's lock, and a guard that finds it was raised
too late (``perform`` had just returned) clears the pending exception before its thread goes
on to acknowledge the job.
"""

import ctypes
import logging
import threading
import time

from django_bgjobs.errors import JobTimeout
from django_bgjobs.payload import printable

logger = logging.getLogger(__name__)

TICK_S = 0.1

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc


def raise_in_thread(thread_id, exc_type):
    """Make ``exc_type`` raise in thread ``thread_id`` at its next Python instruction
    (``None``: cancel one not delivered yet).  Returns the number of threads changed."""
    return _set_async_exc(ctypes.c_ulong(thread_id), ctypes.py_object(exc_type) if exc_type else None)


class Guard:
    """Arms ``job.timeout`` around ``perform`` for one processor thread (called by the
    built-in ``execution.Timeout`` middleware)."""

    def __init__(self, processor=None):
        self.processor = processor
        self.lock = threading.Lock()
        self.thread_id = None
        self.job = None
        self.timeout_s = None
        self.deadline = None  # time.monotonic() value while armed, else None
        self.raised = False
        self.stuck = False

    def __call__(self, job, call):
        timeout_s = job.timeout
        if not timeout_s:
            return call()
        with self.lock:
            self.thread_id = threading.get_ident()
            self.job, self.timeout_s = job, timeout_s
            self.raised = self.stuck = False
            self.deadline = time.monotonic() + timeout_s
        try:
            return call()
        except JobTimeout as exc:
            message = f"{type(job).name} ran past its timeout of {timeout_s:g}s"
            raise JobTimeout(message).with_traceback(exc.__traceback__) from None
        finally:
            self._disarm()

    def _disarm(self):
        while True:
            try:
                with self.lock:
                    self.deadline = None
                    raised = self.raised
                if raised:
                    raise_in_thread(self.thread_id, None)  # one raised as perform returned: too late
                return
            except JobTimeout:
                continue  # delivered in this very method: perform had finished, so it does not count


class Watchdog:
    """Checks the guards of one process's processors; see the module docstring."""

    def __init__(self, guards, grace_s, on_stuck=None, stop_event=None):
        self.guards = list(guards)
        self.grace_s = grace_s
        self.on_stuck = on_stuck
        self.stop_event = stop_event or threading.Event()
        self.thread = None

    def start(self):
        self.thread = threading.Thread(target=self.run, name="bgjobs-watchdog", daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop_event.wait(TICK_S):
            try:
                self.check()
            except Exception:  # pragma: no cover - a bug here must not end the watchdog
                logger.exception("watchdog check failed")

    def check(self, now=None):
        """One pass over the guards (the module docstring's steps 1 and 2); return the stuck ones."""
        now = time.monotonic() if now is None else now
        stuck = []
        for guard in self.guards:
            with guard.lock:
                if guard.deadline is None:
                    continue
                if not guard.raised and now >= guard.deadline:
                    guard.raised = True
                    raise_in_thread(guard.thread_id, JobTimeout)
                    logger.warning(
                        "%s jid=%s ran past its timeout of %gs; JobTimeout raised in its thread",
                        type(guard.job).name, printable(guard.job.jid), guard.timeout_s,
                    )
                elif guard.raised and not guard.stuck and now >= guard.deadline + self.grace_s:
                    guard.stuck = True
                    stuck.append(guard)
                    if self.on_stuck is not None:
                        # Still armed, so its thread has not acknowledged the job: decide now,
                        # under the lock, before it can.
                        self.on_stuck(guard)
        return stuck
