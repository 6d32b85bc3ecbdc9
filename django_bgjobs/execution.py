"""Run one attempt of a job: the single code path shared by the worker, the inline backend and
the test helpers, so all three resolve classes, decode arguments, run the server middleware
and send signals alike.

1. :func:`instantiate` looks the payload's ``class`` up in the registry (never an import),
   decodes the arguments and checks they fit ``perform``'s signature (:func:`check_arguments`,
   which ``perform_later`` runs too).  Problems with the
   payload itself raise :class:`InvalidPayloadError` or :class:`UnknownJobError`: the job
   can never succeed, so the worker buries it.
2. :func:`run` sends ``job_started``, calls the server middleware chain
   (``middleware.chain(SERVER, call_perform)``, :mod:`django_bgjobs.middleware`), whose
   innermost call is ``perform``, then sends ``job_succeeded`` or ``job_failed``; exceptions,
   whether from ``perform`` or from a middleware, propagate to the caller (the worker's retry
   rules, or the code that enqueued an inline job).  An ``async def perform`` goes through
   the chain built for async jobs (``call_async_perform`` returns the coroutine) and is
   awaited on an event loop (``async_to_sync`` here).
3. :func:`begin` is the first half of :func:`run` for an async job in a worker: signal and
   chain in the processor thread, the coroutine awaited on the worker's event loop
   (``worker/event_loop.py``), :func:`ended` sent from its finisher thread, never the loop.
4. ``perform_now`` / ``aperform_now`` (:func:`perform_now`, :func:`aperform_now`) run the
   job's own perform callbacks and ``perform`` with the signals, and no server middleware:
   Sidekiq runs server middleware in the server only, and ActiveJob's ``perform_now`` runs
   the perform callbacks.  An async job's ``timeout`` applies there too.

Two context variables tell code running inside an attempt where it is: :func:`current_job`
(the Job instance, e.g. for batches: a Batch made there is a child) and ``current_attempt()``
(the worker's state for server middleware: what it gives is listed where it is defined).

:class:`Timeout`, a built-in server middleware, enforces ``Job.timeout`` around the perform
callbacks and ``perform``.
"""

import asyncio
import contextvars
import inspect
import time
from functools import lru_cache

from asgiref.sync import async_to_sync, sync_to_async

from django_bgjobs import callbacks, middleware, registry, signals
from django_bgjobs.errors import InvalidPayloadError, JobTimeout, Shutdown
from django_bgjobs.payload import new_jid, now_s, timestamp

# The job whose attempt runs in this thread or asyncio task.  Context variables, so each
# coroutine on the event loop has its own.
_running = contextvars.ContextVar("django_bgjobs_running_job", default=None)
_attempt = contextvars.ContextVar("django_bgjobs_attempt", default=None)


def current_job():
    """The Job instance whose ``perform`` runs in this thread (or asyncio task) now, or None."""
    return _running.get()


#: ``current_attempt()``: the worker's attempt at the job whose server middleware runs in this
#: thread (or asyncio task) now, or None outside a worker (inline backend, test helpers,
#: ``perform_now``).  (The context variable's own ``get``: the metrics middleware asks for
#: every job.)
#:
#: The seam through which built-in and user server middleware reach the worker, rather than
#: through parameters of ``process`` or ``fail`` (``worker/attempt.py``'s ``Attempt``)::
#:
#:     attempt.identity            # the worker process's identity (its heartbeat: keys.process)
#:     attempt.queue               # the queue it was fetched from
#:     attempt.metrics             # the process's ExecutionMetrics (.record(name, duration_s, failed))
#:     attempt.guard               # the processor's watchdog Guard (plain jobs), or None
#:     attempt.abandoned           # True once shutdown pushed the job back: write nothing
#:     attempt.skip(outcome)       # end the attempt unrun with that Outcome (e.g. EXPIRED);
#:                                 # return without calling call_next
#:     attempt.reschedule(at_s, payload)   # put the job back unrun in the schedule set, due
#:                                 # at_s, as payload (a dict); return without calling call_next
current_attempt = _attempt.get


@lru_cache(maxsize=None)
def _signature(job_class):
    return inspect.signature(job_class.perform)


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


@lru_cache(maxsize=None)
def _positional_range(job_class):
    """``(fewest, most)`` positional arguments ``perform`` takes after ``self``, when its
    signature has nothing else (no ``*args``, ``**kwargs`` or keyword-only parameters); None
    otherwise.  Checking a count against it is what ``Signature.bind`` would conclude for
    positional arguments alone, at a fraction of its cost (the worker checks every payload)."""
    parameters = list(_signature(job_class).parameters.values())[1:]
    if any(parameter.kind not in _POSITIONAL for parameter in parameters):
        return None
    required = sum(parameter.default is inspect.Parameter.empty for parameter in parameters)
    return required, len(parameters)


def check_arguments(job_class, args, kwargs):
    """Raise ``TypeError`` naming the job and the parameter unless ``args`` and ``kwargs`` fit
    ``perform``'s signature; nothing when the class sets ``bind_arguments = False``.

    The one check of arguments, made where a payload is built (``client.build_payloads``: the
    mistake raises at ``perform_later``, nothing written) and again where one is run
    (:func:`instantiate`: a payload from elsewhere).  A count within :func:`_positional_range`
    needs no ``Signature.bind``, so the common case costs two cached look-ups."""
    if not job_class.bind_arguments:
        return
    fits = _positional_range(job_class)
    if kwargs or fits is None or not fits[0] <= len(args) <= fits[1]:
        signature = _signature(job_class)
        try:
            signature.bind(None, *args, **kwargs)  # None stands for self
        except TypeError as exc:
            raise TypeError(f"arguments do not fit {job_class.name}.perform{signature}: {exc}") from None


def instantiate(payload):
    """Return ``(job, args, kwargs)`` for a checked payload dict, ready for :func:`run`."""
    try:
        job_class, args, kwargs = registry.get(payload["class"]).resolve(payload)
    except (ValueError, TypeError, KeyError, LookupError) as exc:
        raise InvalidPayloadError(f"arguments cannot be decoded: {exc}") from None
    try:
        check_arguments(job_class, args, kwargs)
    except TypeError as exc:
        raise InvalidPayloadError(str(exc)) from None
    job = job_class()
    job.jid = payload.get("jid")
    job.payload = payload
    job._perform_args = (args, kwargs)
    return job, args, kwargs


# -- the server chain's endpoints ---------------------------------------------------------------


def call_perform(job, payload):
    """The endpoint of the server chain for plain jobs: ``perform`` with the decoded arguments."""
    args, kwargs = job._perform_args
    result = job.perform(*args, **kwargs)
    if result is not None and inspect.isawaitable(result):  # e.g. a decorator hid that perform is async def
        _close(result)
        raise TypeError(
            f"{type(job).name}.perform returned an awaitable without being async def: declare it "
            "async def (a decorator must keep it a coroutine function) so the worker awaits it"
        )
    return result


def call_async_perform(job, payload):
    """The endpoint of the server chain for async jobs: returns ``perform``'s coroutine."""
    args, kwargs = job._perform_args
    return job.perform(*args, **kwargs)


def server_chain(job):
    """The server middleware chain for ``job``'s class (built once per process and class)."""
    if job.is_async:
        return middleware.chain(middleware.SERVER, call_async_perform, True, type(job))
    return middleware.chain(middleware.SERVER, call_perform, False, type(job))


# -- one attempt ------------------------------------------------------------------------------


def run(job, args, kwargs, attempt=None):
    """Run one attempt of ``job`` through the server chain with its signals; return its result.

    ``attempt``: the worker's (:func:`current_attempt` inside), None elsewhere.  An async job
    is awaited here, on an event loop of its own (``async_to_sync``).  ``job_started`` is sent
    by the built-in :class:`Started` inside the chain, so an attempt that a built-in outside it
    ends unrun (expired, put back because its run lock is held) sends no signal at all."""
    job._perform_args = (args, kwargs)
    job._started_at = None
    running, in_attempt = _running.set(job), _attempt.set(attempt)
    try:
        result = server_chain(job)(job, job.payload)
        if job.is_async and inspect.isawaitable(result):
            result = async_to_sync(_await)(result)
    except (KeyboardInterrupt, Shutdown):
        raise  # the worker stopping, not the job failing
    except BaseException as exc:
        end(job, exception=exc)
        raise
    finally:
        _attempt.reset(in_attempt)
        _running.reset(running)
    end(job, result=result)
    return result


def begin(job, attempt):
    """Start an async job's attempt in a worker: call the server chain here (its sync
    middleware, :class:`Started` among them, run in this thread); return ``(started_at,
    value)``, ``value`` being the coroutine to await on the event loop, or what a middleware
    returned without calling on (``started_at`` is None when no ``job_started`` was sent: it
    ended unrun).  Sends ``job_failed`` and raises when the chain raises here.

    The caller runs it in the job's own ``contextvars.Context`` (the task runs in a copy), so
    :func:`current_job` and :func:`current_attempt` are set for the rest of the attempt."""
    _running.set(job)
    _attempt.set(attempt)
    job._started_at = None
    try:
        value = server_chain(job)(job, job.payload)
        return job._started_at, value
    except (KeyboardInterrupt, Shutdown):
        raise
    except BaseException as exc:
        end(job, exception=exc)
        raise


def end(job, result=None, exception=None):
    """Send the end signal of an attempt: ``job_failed`` when ``exception`` is given (after
    ``job_started``, when a middleware outside :class:`Started` failed the job before it was
    sent: signals always pair), else ``job_succeeded`` -- unless no ``job_started`` was sent
    (a middleware ended the attempt unrun), then nothing."""
    if job._started_at is None:
        if exception is None:
            return
        job._started_at = started(job)
    ended(job, job._started_at, result=result, exception=exception)


class Started:
    """Built-in server middleware: sends ``job_started``.  Inside the built-ins that may end an
    attempt without running it (expiry, unique locks), so such an attempt sends no signal;
    ``job_succeeded`` / ``job_failed`` follow when the chain returns or raises."""

    def __init__(self, call_next):
        self.call_next = call_next

    def __call__(self, job, payload):
        job._started_at = started(job)
        return self.call_next(job, payload)


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


async def _await(awaitable):
    return await awaitable


def _close(awaitable):
    """Close a coroutine nobody will await (no "never awaited" warning)."""
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()


# -- the job's timeout ------------------------------------------------------------------------


class Timeout:
    """Built-in server middleware: ``Job.timeout`` around the rest of the chain (the perform
    callbacks and ``perform``).

    * An async job: ``asyncio.timeout`` around its coroutine, wherever it runs;
      :class:`JobTimeout` past it.
    * A plain job in a worker: the processor's watchdog guard (``attempt.guard``,
      ``worker/watchdog.py``) arms the deadline, and ``JobTimeout`` is raised in its thread.
      Armed here, inside the other built-ins, so it never lands in their Redis writes.
    * A plain job elsewhere (inline backend, test helpers): no limit; a thread cannot be
      interrupted safely from inside its own process.
    """

    def __init__(self, call_next):
        self.call_next = call_next

    @classmethod
    def applies_to(cls, job_class):
        """Only around the jobs of a class with a ``timeout``."""
        return bool(job_class.timeout)

    def __call__(self, job, payload):
        timeout_s = job.timeout
        if not timeout_s:
            return self.call_next(job, payload)
        if job.is_async:
            value = self.call_next(job, payload)
            return within_timeout(value, job, timeout_s) if inspect.isawaitable(value) else value
        attempt = _attempt.get()
        guard = attempt.guard if attempt is not None else None
        if guard is None:
            return self.call_next(job, payload)
        return guard(job, lambda: self.call_next(job, payload))


async def within_timeout(awaitable, job, timeout_s):
    """Await ``awaitable`` for at most ``timeout_s``; :class:`JobTimeout` past it (a
    ``TimeoutError`` the job raised itself passes through as it is)."""
    try:
        async with asyncio.timeout(timeout_s) as deadline:
            return await awaitable
    except TimeoutError:
        if deadline.expired():
            raise JobTimeout(f"{type(job).name} ran past its timeout of {timeout_s:g}s") from None
        raise


# -- perform_now: the job's own callbacks, no server chain -----------------------------------


def perform_inline(payload):
    """Run a payload that was just enqueued, here and now, as a worker would (server chain
    included): the ``inline`` backend and the test helpers."""
    job, args, kwargs = instantiate(payload)
    return run(job, args, kwargs)


def perform_now(job_class, args, kwargs):
    """``Job.perform_now``: run in this process without a JSON round trip, Redis or server
    middleware; the job's perform callbacks and signals run."""
    job = _job_for_now(job_class, args, kwargs)
    started_at = started(job)
    token = _running.set(job)
    try:
        if job_class.is_async:
            result = async_to_sync(acall)(job, args, kwargs)
        elif job_class._has_perform_callbacks:
            result = callbacks.run_perform(job, lambda: call_perform(job, job.payload))
        else:
            result = call_perform(job, job.payload)
    except (KeyboardInterrupt, Shutdown):
        raise
    except BaseException as exc:
        ended(job, started_at, exception=exc)
        raise
    finally:
        _running.reset(token)
    ended(job, started_at, result=result)
    return result


async def acall(job, args, kwargs):
    """Run an async job's own perform callbacks and ``perform`` within its ``timeout`` (no
    server middleware: :func:`perform_now`, :func:`aperform_now`); return ``perform``'s result."""
    _running.set(job)  # this coroutine's own context (an asyncio task, or async_to_sync's)
    job._perform_args = (args, kwargs)
    if type(job)._has_perform_callbacks:
        work = callbacks.arun_perform(job, lambda: call_async_perform(job, job.payload))
    else:
        work = call_async_perform(job, job.payload)
    return await within_timeout(work, job, job.timeout)


async def aperform_now(job_class, args, kwargs):
    """``Job.aperform_now``: :func:`perform_now` for async code.  A plain job runs in Django's
    thread for sync code; an async one is awaited here, with only its signals sent from that
    thread (so the thread, which the ORM's async methods share, is not held for the whole job)."""
    if not job_class.is_async:
        return await sync_to_async(perform_now)(job_class, args, kwargs)
    job = _job_for_now(job_class, args, kwargs)
    started_at = await sync_to_async(started)(job)
    try:
        result = await acall(job, args, kwargs)
    except Exception as exc:
        await sync_to_async(ended)(job, started_at, exception=exc)
        raise
    await sync_to_async(ended)(job, started_at, result=result)
    return result


def _job_for_now(job_class, args, kwargs):
    job = job_class()
    job.jid = new_jid()
    job._perform_args = (args, kwargs)
    job.payload = {
        "class": job_class.name, "args": list(args), "queue": job_class.queue, "jid": job.jid,
        "created_at": timestamp(now_s()), "enqueued_at": timestamp(now_s()),
    }
    return job
