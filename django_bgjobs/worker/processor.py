"""Processor: one worker thread running jobs one after another.

Runs in a thread started by :class:`~django_bgjobs.worker.manager.Manager`.  Its duties:

1. Fetch a job (:class:`~django_bgjobs.worker.fetcher.Fetcher`: the job moves into the
   process's in-flight list atomically).
2. Parse it, look up its class in the registry, decode its arguments; a payload that
   can never run goes to the dead set with the reason, and the thread moves on.
3. Run ``perform`` through :mod:`django_bgjobs.execution`, with Django's database
   connections recycled before and after (``close_old_connections``), as a request would.
   An ``async def perform`` is handed to the process's event loop instead
   (:mod:`~django_bgjobs.worker.event_loop`, once one of its ``ASYNC_CONCURRENCY`` slots is
   free) and the thread goes on to its next job; the loop's finisher thread ends it.
4. Acknowledge (:class:`~django_bgjobs.worker.attempt.Ending`): on success remove it from
   the in-flight list (:meth:`Fetcher.ack`, in the same call as the next fetch); on failure
   hand it to :func:`django_bgjobs.retry.fail`, which writes the retry/dead entry and
   removes it from the in-flight list in one MULTI.  A job with a unique lock or in a batch
   (:mod:`~django_bgjobs.worker.hooks`) applies its lock rules before ``perform`` (it may be
   rescheduled instead), and its lock and batch writes join that MULTI (or, on success, a
   MULTI of its own with the in-flight removal).
5. Count processed and failed jobs in memory; the heartbeat adds them to Redis.

Redis errors never kill the thread: it waits with backoff and tries again, and an
acknowledgement is retried until it is written, so a finished job is not run twice
because of a blip.  :meth:`process_one` does one fetch-and-run and returns; the thread's
:meth:`run` loop is a thin wrapper so tests can drive one step at a time.
"""

import contextvars
import logging
import threading

import redis
from django.db import close_old_connections

from django_bgjobs import conf, execution, keys
from django_bgjobs.errors import InvalidPayloadError, Shutdown
from django_bgjobs.payload import loads, now_s
from django_bgjobs.worker import hooks
from django_bgjobs.worker.attempt import Attempt, Ending
from django_bgjobs.worker.backoff import Reconnect

logger = logging.getLogger(__name__)


class Processor:
    def __init__(self, fetcher, slot=0, stop_event=None, event_loop=None, metrics=None):
        self.fetcher = fetcher
        self.client = fetcher.client
        self.slot = slot
        self.stop_event = stop_event or threading.Event()  # set: stop fetching (quiet or stop)
        self.processed = 0
        self.failed = 0
        self.current = None  # (queue, raw, run_at) while a job runs; read by the heartbeat
        # Set at shutdown once this thread's job has been pushed back to its queue: the
        # attempt still running here must then write nothing (no ack, no retry entry).
        self.abandoned = False
        self.thread = None
        self.guard = None  # a watchdog.Guard when a registered job sets `timeout` (set by the Launcher)
        self.event_loop = event_loop  # runs async jobs (worker/event_loop.py); None: async_to_sync here
        # Fetch waits end early on quiet/stop; acknowledgement waits do not (they must land).
        self._reconnect = Reconnect(f"processor {slot} fetch", conf.get("RECONNECT_MAX_WAIT_S"), self.stop_event)
        self.ending = Ending(fetcher, f"processor {slot}", metrics)

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

    # -- one step ------------------------------------------------------------------------

    def process_one(self, block=True):
        """Fetch one job and run it.  Returns True if a job was processed."""
        try:
            fetched = self.fetcher.fetch(self.slot, block=block)
        except redis.RedisError as exc:
            self._reconnect.failed(exc)
            return False
        self._reconnect.ok()
        if fetched is None:
            return False
        queue, raw = fetched
        self.process(queue, raw)
        return True

    def process(self, queue, raw):
        """Run one fetched payload and acknowledge it (see the module docstring)."""
        attempt = Attempt(queue, raw, self.fetcher.inflight_key(queue))
        self.current = attempt.current
        ran = handed_off = False
        try:
            attempt.payload = payload = loads(raw)
            attempt.extras = extras = hooks.for_payload(payload)  # None unless it has a unique lock or a batch
            if "expiry" in payload and _expired(payload, attempt.run_at):
                self.ending.expired(attempt, fetch_next=not self.stop_event.is_set())
                return  # dropped unrun: neither processed nor failed
            close_old_connections()
            job, args, kwargs = attempt.job, attempt.args, attempt.kwargs = execution.instantiate(payload)
            if extras is not None and not extras.start(self.client, raw, attempt.ack_key, self.fetcher.identity):
                return  # its run lock is held: it moved to the schedule set
            ran = True
            # DEBUG, not INFO: one line per job (the "done"/"fail" one) is what operators read,
            # and a second formatted line per job cost a tenth of the worker's time (docs/performance.rst).
            logger.debug("start %s jid=%s queue=%s", payload["class"], payload.get("jid"), queue)
            if "crashes" in payload:  # in flight when a worker died: say this one runs it (lua/recover.lua)
                self.ending.until_written(
                    lambda: self.client.hset(keys.crashes(), f"{job.jid}:by", self.fetcher.identity)
                )
            if job.is_async and self.event_loop is not None:
                if not self.event_loop.wait_for_slot(self):
                    ran = False
                    return  # abandoned at shutdown while every slot was busy: pushed back, never run
                if "expiry" in payload and _expired(payload, now_s()):  # it may have waited for the slot
                    self.event_loop.release_slot()
                    ran = False
                    self.ending.expired(attempt)
                    return
                # The job's own context: what job_started receivers set stays with this job.
                attempt.context = contextvars.copy_context()
                try:
                    attempt.signalled_at = attempt.context.run(execution.started, job)
                except BaseException:
                    self.event_loop.release_slot()
                    raise
                handed_off = self.event_loop.submit(attempt)  # in its busy work before it leaves ours
                ran = handed_off  # False: shutdown began first; it stays in flight to be pushed back
                return
            execution.run(job, args, kwargs, self.guard)
        except (Shutdown, KeyboardInterrupt):
            raise  # leave the job in the in-flight list: it is pushed back at shutdown
        except BaseException as exc:  # SystemExit from a job too: a failure, and the thread lives on
            ran = True
            self.failed += 1
            if not self.abandoned:
                self.ending.failed(attempt, exc)
        else:
            if not self.abandoned:
                self.ending.succeeded(attempt, fetch_next=not self.stop_event.is_set())
        finally:
            if ran and not handed_off:
                self.processed += 1
            self.current = None
            close_old_connections()


def _expired(payload, now):
    """True when ``payload`` is due longer ago than its ``expires_in`` (its ``expiry`` has passed)."""
    expiry = payload["expiry"]
    if isinstance(expiry, bool) or not isinstance(expiry, (int, float)):
        raise InvalidPayloadError(f"expiry must be epoch seconds, not {expiry!r}")
    return now > expiry
