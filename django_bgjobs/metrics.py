"""Job metrics, the recording side: the built-in server middleware :class:`RecordMetrics`.

For each attempt that runs in a worker it records the job's class (``Job.display_name``),
how long the rest of the chain and ``perform`` took, and whether it raised, into the worker
process's :class:`~django_bgjobs.worker.metrics.ExecutionMetrics` (``attempt.metrics``,
through :func:`django_bgjobs.execution.current_attempt`).  The heartbeat writes what was
recorded to the hash of the current minute; ``django_bgjobs.api.JobMetrics`` and the
admin's Metrics page read it.

An attempt ended before it reaches this middleware (expired, rescheduled because its run
lock was held, a payload that cannot run) is not counted, nor is one abandoned at shutdown
(it runs again elsewhere).  Outside a worker (the ``inline`` backend, the test helpers)
nothing is recorded.  A plain job is timed from its fetch, as before; an async job from when
the event loop starts its coroutine until it finishes (its wait for a slot left out).
"""

import inspect
import time

from django_bgjobs import execution
from django_bgjobs.errors import Shutdown


class RecordMetrics:
    """Built-in server middleware: runs, failures and milliseconds per job class."""

    def __init__(self, call_next):
        self.call_next = call_next

    def __call__(self, job, payload):
        attempt = execution.current_attempt()
        if attempt is None or attempt.metrics is None:
            return self.call_next(job, payload)
        if job.is_async:
            result = self.call_next(job, payload)
            return _timed(result, attempt, job, payload) if inspect.isawaitable(result) else result
        # A plain job is timed from its fetch (attempt.started), as the "done" log line is.
        try:
            result = self.call_next(job, payload)
        except (Shutdown, KeyboardInterrupt):
            raise  # the worker stopping: the job is pushed back, it did not fail
        except BaseException:
            _record(attempt, job, payload, attempt.started, failed=True)
            raise
        if not attempt.abandoned:
            attempt.metrics.record(type(job).display_name(payload), time.perf_counter() - attempt.started)
        return result


async def _timed(awaitable, attempt, job, payload):
    started = time.perf_counter()
    try:
        result = await awaitable
    except BaseException:
        _record(attempt, job, payload, started, failed=True)
        raise
    _record(attempt, job, payload, started, failed=False)
    return result


def _record(attempt, job, payload, started, failed):
    if not attempt.abandoned:
        attempt.metrics.record(type(job).display_name(payload), time.perf_counter() - started, failed=failed)
