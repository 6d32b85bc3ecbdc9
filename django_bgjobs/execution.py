"""Run one payload: the single code path shared by the worker, the inline backend and
the test helpers, so all three resolve classes, decode arguments and send signals alike.

1. :func:`instantiate` looks the payload's ``class`` up in the registry (never an
   import), decodes the arguments and checks they fit ``perform``'s signature.
   Problems with the payload itself raise :class:`InvalidPayloadError` or
   :class:`UnknownJobError`: the job can never succeed, so the worker buries it.
2. :func:`run` calls ``perform`` between the ``job_started`` and ``job_succeeded``
   / ``job_failed`` signals and returns its result; exceptions propagate to the caller
   (the worker's retry logic, or the code that called ``perform_now``).  An ``async def
   perform`` runs through :func:`acall` on an event loop (``async_to_sync`` here).
3. :func:`acall` is the coroutine that runs an async job's hooks and ``perform`` under its
   ``timeout``; the worker's event loop (``worker/event_loop.py``) awaits it directly, with
   the signals sent from its threads (:func:`started`, :func:`ended`), never from the loop.
"""

import asyncio
import contextvars
import inspect
import time
from functools import lru_cache

from asgiref.sync import async_to_sync, sync_to_async

from django_bgjobs import registry, serialization, signals
from django_bgjobs.errors import InvalidPayloadError, JobTimeout, Shutdown
from django_bgjobs.payload import new_jid, now_s


# The job whose perform runs in this thread or asyncio task (batches read it: a Batch made
# there is a child).  A context variable, so each coroutine on the event loop has its own.
_running = contextvars.ContextVar("django_bgjobs_running_job", default=None)


def current_job():
    """The Job instance whose ``perform`` runs in this thread (or asyncio task) now, or None."""
    return _running.get()


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
    ``timeout`` around ``perform`` with it, see ``worker/watchdog.py``).  An async job runs
    through :func:`acall`, which enforces its timeout itself."""
    job_class = type(job)
    started_at = started(job)
    token = _running.set(job)
    try:
        if job_class.is_async:
            result = async_to_sync(acall)(job, args, kwargs)
        else:
            if job_class._has_perform_callbacks:
                call = lambda: _with_callbacks(job, args, kwargs)  # noqa: E731
            else:
                call = lambda: job.perform(*args, **kwargs)  # noqa: E731
            result = call() if guard is None else guard(job, call)
            if result is not None and inspect.isawaitable(result):  # e.g. a decorator hid that perform is async def
                _close(result)
                raise TypeError(
                    f"{job_class.name}.perform returned an awaitable without being async def: declare it "
                    "async def (a decorator must keep it a coroutine function) so the worker awaits it"
                )
    except (KeyboardInterrupt, Shutdown):
        raise  # the worker stopping, not the job failing
    except BaseException as exc:
        ended(job, started_at, exception=exc)
        raise
    finally:
        _running.reset(token)
    ended(job, started_at, result=result)
    return result


def started(job):
    """Send ``job_started``; return the start time to give :func:`ended`."""
    signals.send(signals.job_started, type(job), job=job, payload=job.payload)
    return time.perf_counter()


def ended(job, started_at, result=None, exception=None):
    """Send ``job_failed`` when ``exception`` is given, else ``job_succeeded``."""
    duration_s = time.perf_counter() - started_at
    if exception is not None:
        signals.send(signals.job_failed, type(job), job=job, payload=job.payload, exception=exception,
                     duration_s=duration_s)
    else:
        signals.send(signals.job_succeeded, type(job), job=job, payload=job.payload, result=result,
                     duration_s=duration_s)


def _with_callbacks(job, args, kwargs):
    """``before_perform``, ``around_perform(perform)``, ``after_perform``, as ActiveJob runs them."""
    job.before_perform()
    result = job.around_perform(lambda: job.perform(*args, **kwargs))
    job.after_perform()
    return result


async def acall(job, args, kwargs):
    """Run an async job's hooks and ``perform`` (awaiting whichever are coroutines) within its
    ``timeout``; return ``perform``'s result.  Raises :class:`JobTimeout` past the timeout."""
    _running.set(job)  # this coroutine's own context (an asyncio task, or async_to_sync's)
    timeout_s = job.timeout
    try:
        async with asyncio.timeout(timeout_s) as deadline:
            if type(job)._has_perform_callbacks:
                await _maybe_await(job.before_perform())
                result = await _maybe_await(job.around_perform(lambda: job.perform(*args, **kwargs)))
                await _maybe_await(job.after_perform())
                return result
            return await job.perform(*args, **kwargs)
    except TimeoutError:
        if deadline.expired():
            raise JobTimeout(f"{type(job).name} ran past its timeout of {timeout_s:g}s") from None
        raise


def _close(awaitable):
    """Close a coroutine nobody will await (no "never awaited" warning)."""
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()


async def _maybe_await(value):
    return await value if inspect.isawaitable(value) else value


def perform_inline(payload):
    """Run a payload that was just enqueued, here and now (the ``inline`` backend, test helpers)."""
    job, args, kwargs = instantiate(payload)
    return run(job, args, kwargs)


def perform_now(job_class, args, kwargs):
    """``Job.perform_now``: run in this process without a JSON round trip or Redis."""
    return run(_job_for_now(job_class, args), args, kwargs)


async def aperform_now(job_class, args, kwargs):
    """``Job.aperform_now``: :func:`perform_now` for async code.  A plain job runs in Django's
    thread for sync code; an async one is awaited here, with only its signals sent from that
    thread (so the thread, which the ORM's async methods share, is not held for the whole job)."""
    job = _job_for_now(job_class, args)
    if not job_class.is_async:
        return await sync_to_async(run)(job, args, kwargs)
    started_at = await sync_to_async(started)(job)
    try:
        result = await acall(job, args, kwargs)
    except Exception as exc:
        await sync_to_async(ended)(job, started_at, exception=exc)
        raise
    await sync_to_async(ended)(job, started_at, result=result)
    return result


def _job_for_now(job_class, args):
    job = job_class()
    job.jid = new_jid()
    job.payload = {
        "class": job_class.name, "args": list(args), "queue": job_class.queue, "jid": job.jid,
        "created_at": now_s(), "enqueued_at": now_s(),
    }
    return job
