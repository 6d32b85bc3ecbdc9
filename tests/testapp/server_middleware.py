"""Server middleware for ``tests/test_middleware_server.py``: each notes what it sees in
:data:`SEEN` (one process: the tests drive processors and the event loop in-process)."""

import inspect
import threading

from django_bgjobs import execution
from django_bgjobs.connection import get_redis

#: ``(middleware, event, detail...)`` in the order they happened.
SEEN = []
_lock = threading.Lock()


class MiddlewareFailure(Exception):
    """What :class:`Exploding` raises: a middleware's own error, not the job's."""


def note(*event):
    with _lock:
        SEEN.append(event)


class Recording:
    """A sync middleware: notes the job and payload before, then the result (or the error)
    after.  Around an async job ``call_next`` gives back the coroutine, which it returns."""

    label = "recording"

    def __init__(self, call_next):
        self.call_next = call_next

    def __call__(self, job, payload):
        note(self.label, "before", type(job).__name__, payload["jid"], job.jid == payload["jid"])
        try:
            result = self.call_next(job, payload)
        except Exception as exc:
            note(self.label, "raised", type(exc).__name__, str(exc))
            raise
        note(self.label, "after", "a coroutine" if inspect.iscoroutine(result) else result)
        return result


class Outer(Recording):
    label = "outer"


class Inner(Recording):
    label = "inner"


class AsyncRecording:
    """An ``async def __call__`` middleware: wraps async jobs only, and awaits the rest."""

    def __init__(self, call_next):
        self.call_next = call_next

    async def __call__(self, job, payload):
        note("async", "before", type(job).__name__, payload["jid"])
        try:
            result = await self.call_next(job, payload)
        except Exception as exc:
            note("async", "raised", type(exc).__name__, str(exc))
            raise
        note("async", "after", result)
        return result


class Exploding:
    """Raises its own error, without calling on, for a job whose first argument is "explode"."""

    def __init__(self, call_next):
        self.call_next = call_next

    def __call__(self, job, payload):
        if payload.get("args")[:1] == ["explode"]:
            raise MiddlewareFailure("the tenant service is down")
        return self.call_next(job, payload)


class LockProbe:
    """Notes who holds the job's run lock when it is reached: placed inside the built-in
    ``LockRules`` it sees the job's own jid, outside it no holder yet."""

    def __init__(self, call_next):
        self.call_next = call_next

    def __call__(self, job, payload):
        from django_bgjobs import keys

        holder = None
        if "lock_digest" in payload:
            holder = get_redis().hget(keys.unique_run_lock(payload["lock_digest"]), "jid")
        note("probe", payload["jid"], holder.decode() if isinstance(holder, bytes) else holder,
             execution.current_attempt() is not None)
        return self.call_next(job, payload)


class EndLedger:
    """Passes every attempt on; its ``end_writes`` (the ``job_end`` seam) notes each end of
    every job in ``test:ends``, inside the MULTI that ends the job."""

    def __init__(self, call_next):
        self.call_next = call_next

    def __call__(self, job, payload):
        return self.call_next(job, payload)

    @staticmethod
    def end_writes(pipe, end):
        pipe.rpush("test:ends", f"{end.outcome}:{end.payload.get('jid')}")
