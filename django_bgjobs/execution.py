"""Run one payload: the single code path shared by the worker, the inline backend and
the test helpers, so all three resolve classes, decode arguments and send signals alike.

1. :func:`instantiate` looks the payload's ``class`` up in the registry (never an
   import), decodes the arguments and checks they fit ``perform``'s signature.
   Problems with the payload itself raise :class:`InvalidPayloadError` or
   :class:`UnknownJobError`: the job can never succeed, so the worker buries it.
2. :func:`run` calls ``perform`` between the ``job_started`` and ``job_succeeded``
   / ``job_failed`` signals and returns its result; exceptions propagate to the caller
   (the worker's retry logic, or the code that called ``perform_now``).
"""

import inspect
import threading
import time
from functools import lru_cache

from django_bgjobs import registry, serialization, signals
from django_bgjobs.errors import InvalidPayloadError
from django_bgjobs.payload import new_jid, now_s


# The job whose perform runs in this thread (batches read it: a Batch made there is a child).
_running = threading.local()


def current_job():
    """The Job instance whose ``perform`` runs in this thread now, or None."""
    return getattr(_running, "job", None)


@lru_cache(maxsize=None)
def _signature(job_class):
    return inspect.signature(job_class.perform)


def instantiate(payload):
    """Return ``(job, args, kwargs)`` for a checked payload dict, ready for :func:`run`."""
    job_class = registry.get(payload["class"])
    try:
        args, kwargs = serialization.decode_args(payload["args"])
    except (ValueError, TypeError, KeyError, LookupError) as exc:
        raise InvalidPayloadError(f"arguments cannot be decoded: {exc}") from None
    job = job_class()
    try:
        _signature(job_class).bind(job, *args, **kwargs)
    except TypeError as exc:
        raise InvalidPayloadError(
            f"arguments do not fit {job_class.name}.perform{_signature(job_class)}: {exc}"
        ) from None
    job.jid = payload.get("jid")
    job.payload = payload
    return job, args, kwargs


def run(job, args, kwargs, guard=None):
    """Call ``job.perform(*args, **kwargs)`` with signals around it; return its result.

    ``guard(job, call)``, when given, runs ``call()`` (the worker's watchdog arms the job's
    ``timeout`` around ``perform`` with it, see ``worker/watchdog.py``)."""
    job_class = type(job)
    signals.send(signals.job_started, job_class, job=job, payload=job.payload)
    started = time.perf_counter()
    outer, _running.job = current_job(), job
    try:
        if job_class._has_perform_callbacks:
            call = lambda: _with_callbacks(job, args, kwargs)  # noqa: E731
        else:
            call = lambda: job.perform(*args, **kwargs)  # noqa: E731
        result = call() if guard is None else guard(job, call)
    except Exception as exc:
        signals.send(
            signals.job_failed, job_class, job=job, payload=job.payload, exception=exc,
            duration_s=time.perf_counter() - started,
        )
        raise
    finally:
        _running.job = outer
    signals.send(
        signals.job_succeeded, job_class, job=job, payload=job.payload, result=result,
        duration_s=time.perf_counter() - started,
    )
    return result


def _with_callbacks(job, args, kwargs):
    """``before_perform``, ``around_perform(perform)``, ``after_perform``, as ActiveJob runs them."""
    job.before_perform()
    result = job.around_perform(lambda: job.perform(*args, **kwargs))
    job.after_perform()
    return result


def perform_inline(payload):
    """Run a payload that was just enqueued, here and now (the ``inline`` backend, test helpers)."""
    job, args, kwargs = instantiate(payload)
    return run(job, args, kwargs)


def perform_now(job_class, args, kwargs):
    """``Job.perform_now``: run in this process without a JSON round trip or Redis."""
    job = job_class()
    job.jid = new_jid()
    job.payload = {
        "class": job_class.name, "args": list(args), "queue": job_class.queue, "jid": job.jid,
        "created_at": now_s(), "enqueued_at": now_s(),
    }
    return run(job, args, kwargs)
