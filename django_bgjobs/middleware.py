"""Middleware: the one way users and features plug into the enqueue and the run of a job.

Two chains, each built once per process in Django's own shape (``cls(call_next)``, then
one call per payload or per attempt), as Sidekiq's client and server middleware are:

* **client**: ``__call__(payload)`` for every payload about to be written to Redis, however
  it got there (``perform_later``, ``perform_bulk`` once per payload, recurring ticks, batch
  callbacks, ``django.tasks``, the API's ``Queue.push``).  It may change the dict and must
  return ``call_next(payload)``; returning None instead stops the push of that payload, and
  nothing of it is written.  Never run when the API moves an entry that is already in Redis.
* **server**: ``__call__(job, payload)`` around every attempt; ``call_next(job, payload)``
  runs the inner middleware and ``perform``.  Its exceptions are the job's failure.  A sync
  ``__call__`` wraps every job: for an async job ``call_next`` returns the coroutine, which
  it must return (code after the call runs before the job does).  An ``async def __call__``
  wraps async jobs only, and awaits ``call_next``.

The order is one list per side: the built-in middleware (:data:`conf.CLIENT_BUILTINS`,
:data:`conf.SERVER_BUILTINS`) and the user's ``BGJOBS["CLIENT_MIDDLEWARE"]`` /
``["SERVER_MIDDLEWARE"]``, outermost first.  The user's list comes first (around the
built-ins); a built-in that the user's list names runs at that place instead, so a
middleware can be put between two built-ins.  :func:`order` gives the result.

The server chain is built once per job class: a middleware class may define a classmethod
``applies_to(job_class)``, and is left out of the chain of the classes for which it returns
False (the built-ins do, so a job that uses none of their features pays nothing for them).

A path that cannot be imported, or a class that does not take ``call_next``, is the system
check error ``django_bgjobs.E060`` (``runjobs`` then refuses to start); the chain raises
:class:`~django_bgjobs.errors.ConfigurationError` with the same message when it is built.
"""

import inspect
import threading

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from django_bgjobs import conf
from django_bgjobs.errors import ConfigurationError

CLIENT, SERVER = "CLIENT_MIDDLEWARE", "SERVER_MIDDLEWARE"

_lock = threading.Lock()
_built = {}


def builtins(side):
    """The built-in middleware paths of ``side`` (``CLIENT`` or ``SERVER``), outermost first."""
    return list(conf.CLIENT_BUILTINS if side == CLIENT else conf.SERVER_BUILTINS)


def order(side):
    """Every middleware path of ``side`` in the order it runs, outermost first."""
    configured = conf.get(side)
    if isinstance(configured, str) or not isinstance(configured, (list, tuple)):
        raise ConfigurationError(f"BGJOBS[{side!r}] must be a list of dotted paths, not {configured!r}")
    named = list(configured)
    return named + [path for path in builtins(side) if path not in named]


def load(path, side):
    """Import the middleware class at ``path`` and check it takes ``call_next``; return it."""
    where = f"BGJOBS[{side!r}] entry {path!r}"
    if not isinstance(path, str):
        raise ConfigurationError(f"{where} is not a dotted path string")
    try:
        factory = import_string(path)
    except ImportError as exc:
        raise ConfigurationError(f"{where} cannot be imported: {exc}") from None
    if not callable(factory):
        raise ConfigurationError(f"{where} is not a class or a callable")
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return factory  # a builtin we cannot look into: trust it
    try:
        signature.bind(lambda *a: None)
    except TypeError:
        raise ConfigurationError(
            f"{where} cannot be built as {path}(call_next): its signature is {signature}"
        ) from None
    if isinstance(factory, type):
        call = _instance_call(factory)
        if call is None:
            raise ConfigurationError(f"{where} defines no __call__ method")
        arguments = ("self", "payload") if side == CLIENT else ("self", "job", "payload")
        try:
            inspect.signature(call).bind(*arguments)
        except (TypeError, ValueError):
            shape = "__call__(self, payload)" if side == CLIENT else "__call__(self, job, payload)"
            raise ConfigurationError(
                f"{where}: its __call__{inspect.signature(call)} does not take what {side} passes: {shape}"
            ) from None
    return factory


def problems(side):
    """Error messages for the middleware of ``side`` (empty when all of it loads)."""
    try:
        paths = order(side)
    except ConfigurationError as exc:
        return [str(exc)]
    found = []
    for path in paths:
        try:
            load(path, side)
        except ConfigurationError as exc:
            found.append(str(exc))
    return found


def duties(name):
    """The static methods called ``name`` of the server middleware classes, in chain order:
    what features ask the worker to run besides wrapping attempts (``"heartbeat"``: called
    with the Redis client at every heartbeat).  Found through the middleware list, so the
    worker imports no feature."""
    found = []
    for path in order(SERVER):
        duty = getattr(load(path, SERVER), name, None)
        if duty is not None:
            found.append(duty)
    return found


def build(side, endpoint, for_async=False, job_class=None):
    """Wrap ``endpoint`` in the middleware of ``side``; return the outermost callable.

    ``for_async`` (server side): the chain for async jobs, where ``endpoint`` returns a
    coroutine and ``async def __call__`` middleware take part, innermost, after every sync one
    (so the sync ones run in the worker's thread, not on its event loop); otherwise they are
    left out.
    ``job_class`` (server side): the chain for that class's jobs, without the middleware whose
    ``applies_to(job_class)`` is False (a built-in that has nothing to do for the class:
    its jobs do not pay for it).
    """
    factories = [load(path, side) for path in order(side)]
    if for_async:
        # ``async def`` middleware innermost, in their own order: every sync one (the built-ins'
        # Redis calls, job_started's receivers) then runs in the processor thread, never on the loop.
        factories = [f for f in factories if not _is_async(f)] + [f for f in factories if _is_async(f)]
    handler = endpoint
    for factory in reversed(factories):
        if not for_async and _is_async(factory):
            continue
        applies_to = getattr(factory, "applies_to", None)
        if job_class is not None and applies_to is not None and not applies_to(job_class):
            continue
        handler = factory(_awaitable(handler) if _is_async(factory) else handler)
    return handler


def _awaitable(handler):
    """``handler`` for an ``async def __call__`` middleware to await: a sync middleware inside
    it may return a plain value instead of the job's coroutine (it ended the attempt unrun:
    an expired job, a held run lock)."""
    if inspect.iscoroutinefunction(handler) or _is_async(type(handler)):
        return handler

    async def call_next(job, payload):
        value = handler(job, payload)
        return await value if inspect.isawaitable(value) else value

    return call_next


def chain(side, endpoint, for_async=False, job_class=None):
    """:func:`build`, cached per process (cleared when ``BGJOBS`` changes, by :func:`reset`)."""
    key = (side, endpoint, for_async, job_class)
    built = _built.get(key)
    if built is None:
        with _lock:
            built = _built.get(key)
            if built is None:
                built = _built[key] = build(side, endpoint, for_async, job_class)
    return built


def reset():
    """Forget the chains built so far."""
    with _lock:
        _built.clear()


@receiver(setting_changed)
def _reset(setting, **kwargs):
    if setting == "BGJOBS":
        reset()


def _instance_call(cls):
    """The ``__call__`` that instances of ``cls`` have (None when they are not callable)."""
    return next((vars(klass)["__call__"] for klass in cls.__mro__ if "__call__" in vars(klass)), None)


def _is_async(factory):
    """True for a middleware class whose ``__call__`` is ``async def`` (it wraps async jobs only)."""
    return isinstance(factory, type) and inspect.iscoroutinefunction(_instance_call(factory))
