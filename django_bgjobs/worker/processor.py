"""Processor: one worker thread running jobs one after another.

Runs in a thread started by :class:`~django_bgjobs.worker.manager.Manager`.  Its duties:

1. Fetch a job (:class:`~django_bgjobs.worker.fetcher.Fetcher`: the job moves into the
   process's in-flight list atomically).
2. Parse it, look up its class in the registry, decode its arguments; a payload that
   can never run goes to the dead set with the reason, and the thread moves on.
3. Run ``perform`` through :mod:`django_bgjobs.execution`, with Django's database
   connections recycled before and after (``close_old_connections``), as a request would.
4. Acknowledge: on success remove it from the in-flight list (:meth:`Fetcher.ack`, in the
   same call as the next fetch); on failure hand it to
   :func:`django_bgjobs.retry.fail`, which writes the retry/dead entry and removes it
   from the in-flight list in one MULTI.  A job with a unique lock or in a batch
   (:mod:`~django_bgjobs.worker.hooks`) applies its lock rules before ``perform`` (it may be
   rescheduled instead), and its lock and batch writes join that MULTI (or, on success, a
   MULTI of its own with the in-flight removal).
5. Count processed and failed jobs in memory; the heartbeat adds them to Redis.

Redis errors never kill the thread: it waits with backoff and tries again, and an
acknowledgement is retried until it is written, so a finished job is not run twice
because of a blip.  :meth:`process_one` does one fetch-and-run and returns; the thread's
:meth:`run` loop is a thin wrapper so tests can drive one step at a time.
"""

import logging
import threading
import time

import redis
from django.db import close_old_connections

from django_bgjobs import conf, execution, keys, retry
from django_bgjobs.errors import InvalidPayloadError, Shutdown
from django_bgjobs.payload import loads, now_s
from django_bgjobs.worker import hooks
from django_bgjobs.worker.backoff import Reconnect

logger = logging.getLogger(__name__)


class Processor:
    def __init__(self, fetcher, slot=0, stop_event=None):
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
        max_wait_s = conf.get("RECONNECT_MAX_WAIT_S")
        # Fetch waits end early on quiet/stop; acknowledgement waits do not (they must land).
        self._reconnect = Reconnect(f"processor {slot} fetch", max_wait_s, self.stop_event)
        self._write_reconnect = Reconnect(f"processor {slot} acknowledgement", max_wait_s)

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
        ack_key = self.fetcher.inflight_key(queue)
        self.current = (queue, raw, now_s())
        job = payload = extras = None
        started = time.perf_counter()
        try:
            payload = loads(raw)
            extras = hooks.for_payload(payload)  # None unless it has a unique lock or a batch
            close_old_connections()
            job, args, kwargs = execution.instantiate(payload)
            if extras is not None and not extras.start(self.client, raw, ack_key, self.fetcher.identity):
                return  # its run lock is held: it moved to the schedule set
            # DEBUG, not INFO: one line per job (the "done"/"fail" one) is what operators read,
            # and a second formatted line per job cost a tenth of the worker's time (docs/performance.rst).
            logger.debug("start %s jid=%s queue=%s", payload["class"], payload.get("jid"), queue)
            if "crashes" in payload:  # in flight when a worker died: say this one runs it (lua/recover.lua)
                self._until_written(lambda: self.client.hset(keys.crashes(), f"{job.jid}:by", self.fetcher.identity))
            execution.run(job, args, kwargs, self.guard)
        except (Shutdown, KeyboardInterrupt):
            raise  # leave the job in the in-flight list: it is pushed back at shutdown
        except Exception as exc:
            self.failed += 1
            if self.abandoned:
                return
            if not isinstance(exc, InvalidPayloadError) or payload is not None:
                logger.info(
                    "fail %s jid=%s queue=%s %.3fs: %s: %s", (payload or {}).get("class"),
                    (payload or {}).get("jid"), queue, time.perf_counter() - started, type(exc).__name__, exc,
                )
            self._fail(raw, payload, exc, job, ack_key, queue, extras)
        else:
            if self.abandoned:
                return
            logger.info(
                "done %s jid=%s queue=%s %.3fs", payload["class"], payload.get("jid"), queue,
                time.perf_counter() - started,
            )
            if extras is not None:  # locks and batch bookkeeping go in the ack's own MULTI
                self._until_written(lambda: extras.ack(self.client, ack_key, raw))
                return
            # The ack goes with the next fetch call, which also takes this thread's next job.
            self.fetcher.ack(queue, raw, fetch_next=not self.stop_event.is_set())
            self._until_written(self.fetcher.write_acks)
        finally:
            self.processed += 1
            self.current = None
            close_old_connections()

    def _fail(self, raw, payload, exc, job, ack_key, queue, extras=None):
        """Hand a failed attempt to :func:`retry.fail`.

        A payload whose own fields break the retry rules (``"retry_count": "x"``,
        ``"retry": "abc"``) would make ``retry.fail`` raise, killing this thread and leaving
        the job in flight to do the same to the next worker; it is buried as unreadable instead.
        """
        write = self._until_written
        try:
            after = extras.after_failure if extras is not None else None
            return retry.fail(raw, payload, exc, job=job, ack_key=ack_key, queue=queue, run_write=write, after=after)
        except Exception as bug:
            if payload is None:
                raise
            logger.exception("cannot apply the retry rules to jid=%s; burying the payload", payload.get("jid"))
            reason = InvalidPayloadError(f"payload fields break the retry rules ({type(bug).__name__}: {bug})")
            return retry.fail(raw, None, reason, ack_key=ack_key, queue=queue, run_write=write)

    def _until_written(self, write):
        """Run a Redis write until it succeeds (or the process is stopping hard)."""
        while True:
            try:
                write()
            except redis.RedisError as exc:
                self._write_reconnect.failed(exc)
                if self._write_reconnect.errors > 1000:
                    logger.error("giving up an acknowledgement after 1000 attempts; the job may run again")
                    self._write_reconnect.errors = 0
                    return
            else:
                self._write_reconnect.ok()
                return
