"""ActiveJob-style declarations on a ``Job``: ``retry_on`` and ``discard_on``.

::

    from django_bgjobs import Job, RetryOn

    class SyncJob(Job):
        retry_on = [RetryOn(NetworkError, wait=5, attempts=3), RetryOn(RateLimited, wait="polynomially_longer")]
        discard_on = [ObjectDoesNotExist]

A matching ``discard_on`` drops the job (no retry, no dead entry).  A matching
``retry_on`` retries after ``wait`` until the job has been attempted ``attempts`` times
in all (ActiveJob's meaning, first run included), then sends it to the dead set
(``retries_exhausted`` is called); it governs alone, whatever the job's ``retry``.
Exceptions that match neither follow ``retry_in`` and ``retry`` as usual.  The first
matching declaration wins, ``discard_on`` before ``retry_on``.

The per-job perform callbacks ``before_perform``, ``around_perform`` and ``after_perform``
are plain methods on ``Job``, run as ActiveJob runs them by :func:`run_perform` (and
:func:`arun_perform` for an ``async def perform``): in a worker, the inline backend and the
test helpers through the built-in server middleware :class:`PerformCallbacks` (the innermost
one, so a user's middleware wraps them); by ``perform_now`` directly, without the server
chain.  ``before_enqueue`` and ``after_enqueue`` are run by the client.  This module tells
which classes override them, so jobs without callbacks pay nothing.
"""

import datetime
import inspect

from django_bgjobs.payload import MAX_OPTION_SECONDS, is_duration, seconds_of, short_repr

POLYNOMIALLY_LONGER = "polynomially_longer"
PERFORM_HOOKS = ("before_perform", "around_perform", "after_perform")
ENQUEUE_HOOKS = ("before_enqueue", "after_enqueue")


class RetryOn:
    """Retry on ``exceptions`` after ``wait`` (seconds, a timedelta, ``"polynomially_longer"``
    or a callable of the attempt count), for at most ``attempts`` attempts in all."""

    def __init__(self, *exceptions, wait=3, attempts=5):
        if not exceptions or not all(isinstance(e, type) and issubclass(e, BaseException) for e in exceptions):
            raise ValueError("RetryOn needs one or more exception classes")
        if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1:
            raise ValueError(f"RetryOn attempts must be a whole number >= 1, not {attempts!r}")
        if not (callable(wait) or wait == POLYNOMIALLY_LONGER
                or (is_duration(wait) and 0 <= seconds_of(wait) <= MAX_OPTION_SECONDS)):  # not nan, inf, 10**400
            raise ValueError(f"RetryOn wait must be seconds >= 0 (at most 100 years), a timedelta, a callable or "
                             f"'polynomially_longer', not {short_repr(wait)}")
        self.exceptions = exceptions
        self.wait = wait
        self.attempts = attempts

    def delay_s(self, executions):
        """Seconds to wait after the ``executions``-th attempt failed."""
        if self.wait == POLYNOMIALLY_LONGER:
            return float(executions**4 + 2)  # ActiveJob's formula, without its jitter
        wait = self.wait(executions) if callable(self.wait) else self.wait
        return wait.total_seconds() if isinstance(wait, datetime.timedelta) else float(wait)

    def __repr__(self):
        names = ", ".join(e.__name__ for e in self.exceptions)
        return f"RetryOn({names}, wait={self.wait!r}, attempts={self.attempts})"


def check(cls, where):
    """Raise ``ValueError`` unless the class's ``retry_on`` / ``discard_on`` are well formed."""
    retry_on, discard_on = cls.retry_on, cls.discard_on
    if isinstance(retry_on, RetryOn) or not isinstance(retry_on, (list, tuple)):
        raise ValueError(f"{where}.retry_on must be a list of RetryOn(...), not {retry_on!r}")
    for item in retry_on:
        if not isinstance(item, RetryOn):
            raise ValueError(f"{where}.retry_on holds {item!r}; use RetryOn(ExceptionClass, wait=..., attempts=...)")
    if isinstance(discard_on, type) or not isinstance(discard_on, (list, tuple)):
        raise ValueError(f"{where}.discard_on must be a list of exception classes, not {discard_on!r}")
    for item in discard_on:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise ValueError(f"{where}.discard_on holds {item!r}, which is not an exception class")


def check_hooks(cls, where, base):
    """Raise ``ValueError`` when a perform hook cannot run with the class's ``perform``: a
    sync job's hooks must be plain methods (a coroutine nobody awaits would silently not
    run), and an async job's ``around_perform`` must be ``async def`` (a plain one would time
    only the creation of the coroutine, not its run)."""
    for name in PERFORM_HOOKS:
        hook = getattr(cls, name)
        if getattr(base, name) is hook:
            continue
        is_async = inspect.iscoroutinefunction(inspect.unwrap(hook))
        if is_async and not cls.is_async:
            raise ValueError(f"{where}.{name} is async def but perform is not: make both async or neither")
        if name == "around_perform" and cls.is_async and not is_async:
            raise ValueError(
                f"{where}.around_perform must be async def (and 'return await perform()') because perform is async"
            )


def overrides(cls, names, base):
    """True if ``cls`` (a subclass of ``base``) defines any of ``names`` itself or through a
    base class other than ``base``."""
    return any(name in klass.__dict__ for klass in cls.__mro__[:cls.__mro__.index(base)] for name in names)


def rescue(job_class, count, exc):
    """What the class's declarations say about a failure: None (no declaration matches),
    ``"discard"``, ``"kill"`` (attempts used up) or seconds to wait.  ``count`` is the
    payload's ``retry_count`` after this failure (0 after the first)."""
    if job_class is None:
        return None
    for exceptions in job_class.discard_on:
        if isinstance(exc, exceptions):
            return "discard"
    executions = count + 1
    for declaration in job_class.retry_on:
        if isinstance(exc, declaration.exceptions):
            if executions >= declaration.attempts:
                return "kill"
            return max(0.0, declaration.delay_s(executions))
    return None


def run_perform(job, perform):
    """``before_perform``, ``around_perform(perform)``, ``after_perform``, as ActiveJob runs
    them; return ``perform``'s result as ``around_perform`` passes it on.  ``after_perform``
    is skipped when ``perform`` raises."""
    job.before_perform()
    result = job.around_perform(perform)
    job.after_perform()
    return result


async def arun_perform(job, perform):
    """:func:`run_perform` for an async job: each callback awaited when it is a coroutine
    (``around_perform`` is ``async def`` there, and awaits ``perform()``)."""
    await _maybe_await(job.before_perform())
    result = await _maybe_await(job.around_perform(perform))
    await _maybe_await(job.after_perform())
    return result


async def _maybe_await(value):
    return await value if inspect.isawaitable(value) else value


class PerformCallbacks:
    """Built-in server middleware, the innermost: the job's ActiveJob-style perform callbacks
    around the rest of the chain and ``perform``.  For an async job it returns the coroutine
    that runs them (a sync middleware around an async job, see ``docs/middleware.rst``)."""

    def __init__(self, call_next):
        self.call_next = call_next

    @classmethod
    def applies_to(cls, job_class):
        """Only around the jobs of a class that defines a perform callback."""
        return job_class._has_perform_callbacks

    def __call__(self, job, payload):
        if not job._has_perform_callbacks:
            return self.call_next(job, payload)
        perform = lambda: self.call_next(job, payload)  # noqa: E731
        if job.is_async:
            return arun_perform(job, perform)
        return run_perform(job, perform)
