"""Processor: one worker thread running jobs one after another.

Runs in a thread started by :class:`~django_bgjobs.worker.manager.Manager`.  Its duties,
one job at a time (:meth:`Processor.process`):

1. Fetch a job (:class:`~django_bgjobs.worker.fetcher.Fetcher`: the job moves into the
   process's in-flight list atomically) and get its unit of work.
2. Make an :class:`~django_bgjobs.worker.attempt.Attempt` of it: parse the payload, look up
   its class, decode its arguments (a payload that can never run fails into the dead set
   with the reason, and the thread moves on).
3. Run it: ``job_started``, the server middleware chain (the built-in ones, ``conf.SERVER_BUILTINS``:
   expiry, unique locks, batches, metrics, timeout, perform callbacks; and the user's),
   ``perform``, then ``job_succeeded`` / ``job_failed``, with Django's database connections
   recycled before and after (``close_old_connections``), as a request would.  An ``async def
   perform`` is begun here and its coroutine handed to the process's event loop
   (:mod:`~django_bgjobs.worker.event_loop`, once one of its ``ASYNC_CONCURRENCY`` slots is
   free); the thread goes on to its next job and the loop's finisher thread ends it.
4. End it through the unit of work: acknowledged (with the next fetch, or in a MULTI with
   the features' end writes) or failed (``retry.fail``: the retry or dead entry, the removal
   from the in-flight list and the end writes in one MULTI).
5. Count processed and failed jobs in memory; the heartbeat adds them to Redis.

Redis errors never kill the thread: a fetch waits with backoff and tries again, and the end
of a job is retried until it is written, so a finished job is not run twice because of a
blip.  :meth:`process_one` does one fetch-and-run and returns; the thread's :meth:`run` loop
is a thin wrapper so tests can drive one step at a time.
"""

import contextvars
import inspect
import logging
import threading

import redis
from django.db import close_old_connections

from django_bgjobs import conf
from django_bgjobs.errors import Shutdown
from django_bgjobs.job_end import Outcome
from django_bgjobs.worker.attempt import Attempt
from django_bgjobs.worker.backoff import Reconnect

logger = logging.getLogger(__name__)


class Processor:
    def __init__(self, fetcher, slot=0, stop_event=None, event_loop=None, metrics=None):
        self.fetcher = fetcher
        self.slot = slot
        self.stop_event = stop_event or threading.Event()  # set: stop fetching (quiet or stop)
        self.processed = 0
        self.failed = 0
        self.attempt = None  # the Attempt running here, if any
        self.current = None  # (queue, raw, run_at) while a job runs; read by the heartbeat
        # Set at shutdown once this thread's job has been pushed back to its queue (abandon()):
        # the attempt still running here must then write nothing (no ack, no retry entry).
        self.abandoned = False
        self.thread = None
        self.guard = None  # a watchdog.Guard when a registered job sets `timeout` (set by the Launcher)
        self.event_loop = event_loop  # runs async jobs (worker/event_loop.py); None: async_to_sync here
        self.metrics = metrics  # the process's ExecutionMetrics (the metrics middleware records into it)
        # Fetch waits end early on quiet/stop; the writes that end a job do not (they must land).
        self._reconnect = Reconnect(f"processor {slot} fetch", conf.get("RECONNECT_MAX_WAIT_S"), self.stop_event)

    # -- thread wrapper ------------------------------------------------------------------

    def start(self):
        self.thread = threading.Thread(target=self.run, name=f"bgjobs-processor-{self.slot}", daemon=True)
        self.thread.start()

    def run(self):
        try:
            while not self.stop_event.is_set():
                self.process_one()
        except Shutdown:
            pass
        except BaseException:  # pragma: no cover - a bug in this module; keep the log
            logger.exception("processor %s stopped by an unexpected error", self.slot)
            raise

    def abandon(self):
        """Shutdown pushed this thread's job back (or the watchdog gave up on it): whatever the
        attempt still running here does, it writes nothing."""
        self.abandoned = True
        attempt = self.attempt
        if attempt is not None:
            attempt.abandoned = True

    # -- one step ------------------------------------------------------------------------

    def process_one(self, block=True):
        """Fetch one job and run it.  Returns True if a job was processed."""
        try:
            unit = self.fetcher.fetch(self.slot, block=block)
        except redis.RedisError as exc:
            self._reconnect.failed(exc)
            return False
        self._reconnect.ok()
        if unit is None:
            return False
        self.process(unit)
        return True

    def process(self, unit):
        """Run one fetched job and end it (see the module docstring)."""
        attempt = Attempt(unit, self.fetcher.identity, self.metrics, self.guard)
        self.attempt, self.current = attempt, attempt.current
        counted = False  # processed: it ran (or could never run), here
        try:
            close_old_connections()
            job = attempt.prepare()
            if job.is_async and self.event_loop is not None:
                counted = self._hand_over(attempt)
                return
            attempt.run()
        except (Shutdown, KeyboardInterrupt):
            raise  # leave the job in the in-flight list: it is pushed back at shutdown
        except BaseException as exc:  # SystemExit from a job too: a failure, and the thread lives on
            counted = attempt.outcome is not Outcome.RESCHEDULED  # put back by its run lock: not a failure
            self.failed += counted
            if not self.abandoned:
                attempt.failed(exc)
        else:
            counted = attempt.outcome is None
            if not self.abandoned:
                attempt.succeeded(fetch_next=not self.stop_event.is_set())
        finally:
            if counted:
                self.processed += 1
            self.attempt = self.current = None
            close_old_connections()

    def _hand_over(self, attempt):
        """Begin an async job here and hand its coroutine to the event loop.  Returns whether
        it counts as processed here: only when a sync middleware returned without calling on
        (and did not skip it, as the expiry does), so it ended here; False when the loop's
        finisher ends and counts it, or shutdown came first.  Raises when the chain raised
        here (a failure)."""
        loop = self.event_loop
        if not loop.wait_for_slot(self):
            return False  # abandoned at shutdown while every slot was busy: pushed back, never run
        # The job's own context: what job_started receivers and middleware set stays with this job.
        attempt.context = contextvars.copy_context()
        try:
            value = attempt.begin()
        except BaseException:
            loop.release_slot()
            raise
        if not inspect.isawaitable(value):  # a sync middleware returned without calling on
            loop.release_slot()
            failure = attempt.end_signal(result=value)
            if failure is not None:
                raise failure
            if not self.abandoned:
                attempt.succeeded(fetch_next=not self.stop_event.is_set())
            return attempt.outcome is None
        if not loop.submit(attempt, value):
            # Shutdown began first: never started, it stays in flight for the launcher to push back.
            close = getattr(value, "close", None)
            if close is not None:
                close()  # no "never awaited" warning
        return False
