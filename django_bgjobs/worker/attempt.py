"""One attempt at a fetched job, and the writes that end it.

An :class:`Attempt` is made by a :class:`~django_bgjobs.worker.processor.Processor` thread
for each job it fetches and carries what the end of the attempt needs.  The thread that
ends it -- the processor itself for a plain job, the event loop's finisher thread for an
``async def perform`` (``worker/event_loop.py``) -- calls :class:`Ending`:

* :meth:`Ending.succeeded`: the "done" log line, then the acknowledgement: the job leaves
  the in-flight list with the next ``fetch.lua`` call (:meth:`Fetcher.ack`), or in a MULTI
  with its lock and batch bookkeeping when it has any.
* :meth:`Ending.failed`: the "fail" log line, then :func:`django_bgjobs.retry.fail`, which
  writes the retry or dead entry and removes the job from the in-flight list in one MULTI.

Every write is retried until Redis takes it (:meth:`Ending.until_written`), so a finished
job is not run twice because of a blip.
"""

import logging
import time

import redis

from django_bgjobs import conf, retry
from django_bgjobs.errors import InvalidPayloadError
from django_bgjobs.job_end import EXPIRED, SUCCEEDED
from django_bgjobs.payload import now_s
from django_bgjobs.worker.backoff import Reconnect

logger = logging.getLogger(__name__)


class Attempt:
    """A fetched job from the moment it is taken until its end is written."""

    __slots__ = ("queue", "raw", "ack_key", "run_at", "started", "payload", "extras", "job", "args", "kwargs",
                 "signalled_at", "context", "abandoned")

    def __init__(self, queue, raw, ack_key):
        self.queue, self.raw, self.ack_key = queue, raw, ack_key
        self.run_at = now_s()
        self.started = time.perf_counter()
        self.payload = self.extras = self.job = self.args = self.kwargs = None
        self.signalled_at = None  # execution.started()'s value once job_started was sent
        self.context = None  # an async job's contextvars.Context (worker/event_loop.py)
        #: Set at shutdown once the job has been pushed back to its queue: the attempt still
        #: running must then write nothing (no ack, no retry entry).
        self.abandoned = False

    @property
    def current(self):
        """``(queue, raw, run_at)``: what the heartbeat reports for a running job."""
        return self.queue, self.raw, self.run_at


class Ending:
    """Writes the end of attempts for one thread (see the module docstring)."""

    def __init__(self, fetcher, who, metrics=None):
        self.fetcher = fetcher
        self.client = fetcher.client
        self.metrics = metrics  # a worker.metrics.ExecutionMetrics, or None
        self._reconnect = Reconnect(f"{who} acknowledgement", conf.get("RECONNECT_MAX_WAIT_S"))

    def succeeded(self, attempt, fetch_next=False):
        """Acknowledge a job whose ``perform`` returned.  ``fetch_next``: the calling thread
        asks for its next job right after, so the call that writes the ack takes it."""
        payload = attempt.payload
        duration_s = time.perf_counter() - attempt.started
        logger.info("done %s jid=%s queue=%s %.3fs", payload["class"], payload.get("jid"), attempt.queue, duration_s)
        if self.metrics is not None:
            self.metrics.record(_metric_name(attempt), duration_s)
        self._ack(attempt, fetch_next, SUCCEEDED)

    def expired(self, attempt, fetch_next=False):
        """Drop a job due longer ago than its ``expires_in``, unrun (Sidekiq Pro's expiring jobs)."""
        payload = attempt.payload
        logger.info(
            "expired %s jid=%s queue=%s: not started within its expires_in (%.1fs late); dropped",
            payload["class"], payload.get("jid"), attempt.queue, now_s() - payload["expiry"],
        )
        self._ack(attempt, fetch_next, EXPIRED)

    def _ack(self, attempt, fetch_next, outcome):
        if attempt.extras is not None:  # locks and batch bookkeeping go in the ack's own MULTI
            self.until_written(lambda: attempt.extras.ack(self.client, attempt.ack_key, attempt.raw, outcome))
            return
        self.fetcher.ack(attempt.queue, attempt.raw, fetch_next=fetch_next)
        self.until_written(self.fetcher.write_acks)

    def failed(self, attempt, exc):
        """Hand a failed attempt to :func:`retry.fail`.

        A payload whose own fields break the retry rules (``"retry_count": "x"``,
        ``"retry": "abc"``) would make ``retry.fail`` raise, killing the thread and leaving
        the job in flight to do the same to the next worker; it is buried as unreadable instead.
        """
        raw, payload, extras = attempt.raw, attempt.payload, attempt.extras
        duration_s = time.perf_counter() - attempt.started
        if not isinstance(exc, InvalidPayloadError) or payload is not None:
            logger.info(
                "fail %s jid=%s queue=%s %.3fs: %s: %s", (payload or {}).get("class"), (payload or {}).get("jid"),
                attempt.queue, duration_s, type(exc).__name__, exc,
            )
        if self.metrics is not None and isinstance((payload or {}).get("class"), str):
            self.metrics.record(_metric_name(attempt), duration_s, failed=True)
        where = {"ack_key": attempt.ack_key, "queue": attempt.queue, "run_write": self.until_written}
        try:
            after = extras.after_failure if extras is not None else None
            outcome = retry.fail(raw, payload, exc, job=attempt.job, after=after, **where)
            if extras is not None:
                extras.push_fired_callbacks(self.client)  # its batch may have ended with it
            return outcome
        except Exception as bug:
            if payload is None:
                raise
            logger.exception("cannot apply the retry rules to jid=%s; burying the payload", payload.get("jid"))
            reason = InvalidPayloadError(f"payload fields break the retry rules ({type(bug).__name__}: {bug})")
            return retry.fail(raw, None, reason, **where)

    def until_written(self, write):
        """Run a Redis write until it succeeds (giving up, with an error logged, after 1000 tries)."""
        while True:
            try:
                write()
            except redis.RedisError as exc:
                self._reconnect.failed(exc)
                if self._reconnect.errors > 1000:
                    logger.error("giving up an acknowledgement after 1000 attempts; the job may run again")
                    self._reconnect.errors = 0
                    return
            else:
                self._reconnect.ok()
                return


def _metric_name(attempt):
    """What the job metrics count ``attempt`` under (``Job.display_name``; the payload's
    ``class`` when the class could not be looked up)."""
    if attempt.job is None:
        return attempt.payload["class"]
    return type(attempt.job).display_name(attempt.payload)
