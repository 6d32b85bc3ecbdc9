"""One attempt at a fetched job: the lifecycle a worker drives, and the seam server middleware
reach the worker through.

A :class:`~django_bgjobs.worker.processor.Processor` thread makes an :class:`Attempt` for each
:class:`~django_bgjobs.worker.fetcher.UnitOfWork` it fetches, then:

1. :meth:`Attempt.prepare`: parse the payload and make the job
   (:func:`django_bgjobs.execution.instantiate`); a payload that can never run raises, and
   the attempt fails (the dead set, with the reason).
2. :meth:`Attempt.run`: ``job_started``, the server middleware chain and ``perform``, then
   ``job_succeeded`` / ``job_failed`` (:func:`django_bgjobs.execution.run`).  An async job
   is begun in the processor thread instead (:meth:`Attempt.begin`: signal and the chain's
   sync middleware there) and its coroutine awaited on the event loop
   (``worker/event_loop.py``), whose finisher thread sends the end signal.
3. :meth:`Attempt.succeeded` or :meth:`Attempt.failed`, by whichever thread saw the end: the
   "done" / "fail" log line, then the unit of work's ``acknowledge`` or ``fail``, which write
   the end in one MULTI with the features' end writes (``job_end``).  (The async finisher
   writes several ends at once, and logs their lines once they are written: ``UnitOfWork.defer``.)

While the chain runs, :func:`django_bgjobs.execution.current_attempt` returns the attempt, so
a middleware can read the worker's state (``identity``, ``queue``, ``metrics``, ``guard``,
``abandoned``) and end the attempt without running ``perform``: :meth:`Attempt.skip`
(expired) or :meth:`Attempt.reschedule` (its run lock is held).
"""

import logging
import time

from django_bgjobs import execution
from django_bgjobs.errors import InvalidPayloadError
from django_bgjobs.job_end import Outcome
from django_bgjobs.payload import now_s, printable

logger = logging.getLogger(__name__)


class Attempt:
    """A fetched job from the moment it is taken until its end is written."""

    __slots__ = ("unit", "queue", "raw", "run_at", "started", "identity", "metrics", "guard", "payload", "job",
                 "args", "kwargs", "context", "abandoned", "outcome")

    def __init__(self, unit, identity, metrics=None, guard=None):
        self.unit = unit
        self.queue, self.raw = unit.queue, unit.raw
        self.run_at = now_s()
        self.started = time.perf_counter()
        #: The worker process's identity (its heartbeat hash is ``keys.process(identity)``).
        self.identity = identity
        #: The process's :class:`~django_bgjobs.worker.metrics.ExecutionMetrics`, or None.
        self.metrics = metrics
        #: The processor's watchdog :class:`~django_bgjobs.worker.watchdog.Guard`, or None.
        self.guard = guard
        self.payload = self.job = self.args = self.kwargs = None
        self.context = None  # an async job's contextvars.Context (worker/event_loop.py)
        #: Set at shutdown once the job has been pushed back to its queue (or given up on by
        #: the watchdog): the attempt still running must then write nothing.
        self.abandoned = False
        #: Set by a middleware that ended the attempt without running perform (skip, reschedule).
        self.outcome = None

    @property
    def current(self):
        """``(queue, raw, run_at)``: what the heartbeat reports for a running job."""
        return self.queue, self.raw, self.run_at

    # -- for server middleware (execution.current_attempt()) --------------------------------------

    def skip(self, outcome):
        """End this attempt without running ``perform``: it is acknowledged as ``outcome``
        (e.g. ``Outcome.EXPIRED``) when the chain returns, with that outcome's end writes,
        and counts as neither processed nor failed.  The middleware then returns without
        calling ``call_next``."""
        self.outcome = Outcome(outcome)

    def reschedule(self, at_s, payload):
        """Put the job back unrun in the schedule set, due at ``at_s``, as ``payload`` (a
        dict), now (one MULTI with its removal from the in-flight list).  The middleware then
        returns without calling ``call_next``; nothing more is written for this attempt."""
        self.unit.reschedule(at_s, payload)
        self.outcome = Outcome.RESCHEDULED

    # -- the lifecycle ---------------------------------------------------------------------------

    def prepare(self):
        """Parse the payload and make the job; return it.  Raises
        :class:`InvalidPayloadError` or :class:`UnknownJobError` for a payload that can never run."""
        self.payload = payload = self.unit.payload
        self.job, self.args, self.kwargs = execution.instantiate(payload)
        if "crashes" in payload:  # in flight when a worker died: say this one runs it (lua/recover.lua)
            self.unit.note_started(self.job.jid)
        return self.job

    def run(self):
        """Run the attempt of a plain job here (signals, server chain, ``perform``); return its result."""
        # DEBUG, not INFO: one line per job (the "done"/"fail" one) is what operators read,
        # and a second formatted line per job cost a tenth of the worker's time (docs/performance.rst).
        logger.debug("start %s jid=%s queue=%s", printable(self.payload["class"]), printable(self.job.jid), self.queue)
        return execution.run(self.job, self.args, self.kwargs, self)

    def begin(self):
        """Begin an async job's attempt in the calling thread, in ``self.context``
        (:func:`django_bgjobs.execution.begin`); return the coroutine to await, or what a
        middleware returned without calling on."""
        _, value = self.context.run(execution.begin, self.job, self)
        return value

    def end_signal(self, result=None, exception=None):
        """Send the end signal of a begun async attempt, in its context.  A receiver that
        raises makes the attempt fail with its error (returned), as in a thread."""
        try:
            self.context.run(execution.end, self.job, result=result, exception=exception)
        except Exception as exc:
            return exc
        return exception

    def succeeded(self, fetch_next=False):
        """End an attempt whose chain returned: acknowledge it as ``SUCCEEDED``, or as the
        middleware that ended it unrun said.  ``fetch_next``: the calling thread asks for its
        next job right after.  Returns True when it counts as processed (it ran)."""
        if self.outcome is Outcome.RESCHEDULED:
            return False  # written by reschedule()
        if self.outcome is not None:
            self.unit.acknowledge(self.outcome, fetch_next=fetch_next)
            return False
        self.unit.defer(logger.info, "done %s jid=%s queue=%s %.3fs", printable(self.payload["class"]),
                        printable(self.job.jid), self.queue, time.perf_counter() - self.started)
        self.unit.acknowledge(Outcome.SUCCEEDED, fetch_next=fetch_next)
        return True

    def failed(self, exc, patient=True):
        """End an attempt that raised ``exc`` (from ``perform``, a middleware, or before the
        job could be made): the unit of work's ``fail`` (retry rules, one MULTI); return its
        Outcome.  ``patient=False``: one write, a ``RedisError`` propagates."""
        payload = self.payload
        if not isinstance(exc, InvalidPayloadError) or payload is not None:
            self.unit.defer(
                logger.info, "fail %s jid=%s queue=%s %.3fs: %s: %s", printable((payload or {}).get("class")),
                printable((payload or {}).get("jid")), self.queue, time.perf_counter() - self.started,
                type(exc).__name__, exc,
            )
        if self.outcome is Outcome.RESCHEDULED:
            # Already back in the schedule set: a middleware outside the one that put it there
            # raised afterwards.  Writing a retry too would make two copies of the job.
            logger.error("jid=%s was rescheduled, then its attempt raised %r; it stays rescheduled",
                         printable((payload or {}).get("jid")), exc)
            return Outcome.RESCHEDULED
        return self.unit.fail(exc, self.job, patient=patient)
