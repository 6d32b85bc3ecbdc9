"""Batches, the server side: the built-in server middleware :class:`BatchEnds`.

The client side (``Batch``, its jobs' ``bid``, the callbacks) is ``batches/client.py``.  A batch
learns how each of its jobs ended from :meth:`BatchEnds.end_writes`, the
:mod:`~django_bgjobs.job_end` seam: the Lua step that records the outcome
(``batches/batch.lua``, which enqueues the batch's callbacks when this was its last job) is
queued in the MULTI that ends the job, in a worker or through the API.  A worker killed
before that MULTI leaves the job in flight and its batch waiting; the job is pushed back,
runs again, and its end is counted once (by jid).

How outcomes count: ``SUCCEEDED`` and ``EXPIRED`` are successes, and so is a job dropped by
``Discard`` (on purpose: done, as far as its batch goes); ``DEAD`` and ``KILLED`` are deaths;
any other failure (``RETRIED``, another ``DISCARDED``, ``DELETED``) is a failure, so the batch
can complete but never succeed.  ``RESCHEDULED`` is no end.
"""

from django_bgjobs import batches, scripts
from django_bgjobs.errors import Discard
from django_bgjobs.job_end import Outcome
from django_bgjobs.payload import dumps, epoch_s

_SUCCESSES = frozenset({Outcome.SUCCEEDED, Outcome.EXPIRED})
_DEATHS = frozenset({Outcome.DEAD, Outcome.KILLED})


class BatchEnds:
    """Built-in server middleware: tells a job's batch how the job ended.  Its ``__call__``
    passes every attempt on; its work is :meth:`end_writes`."""

    #: The jobs :meth:`end_writes` has state about (the ``job_end`` seam's pre-check).
    end_writes_for = ("bid",)

    def __init__(self, call_next):
        self.call_next = call_next

    @classmethod
    def applies_to(cls, job_class):
        """Never in a job's chain: its work is the end writes, which ``job_end`` finds in the
        middleware list whatever the chain holds."""
        return False

    def __call__(self, job, payload):
        return self.call_next(job, payload)

    @staticmethod
    def heartbeat(client):
        """A worker duty at every heartbeat (``middleware.duties``): push the callbacks a
        process left in the outbox when it died between its end write and their push."""
        batches.push_fired_callbacks(client)

    @staticmethod
    def end_writes(pipe, end):
        """The :mod:`~django_bgjobs.job_end` seam: record ``end`` in the job's batch; the
        follow-up pushes the callbacks that this end fired."""
        payload = end.payload
        bid, jid = payload.get("bid"), payload.get("jid")
        if not isinstance(bid, str) or not bid or not jid or end.outcome == Outcome.RESCHEDULED:
            return
        if end.outcome in _SUCCESSES or (end.outcome == Outcome.DISCARDED and isinstance(end.exception, Discard)):
            op, extra = "success", [jid]
        else:
            op, extra = ("dead" if end.outcome in _DEATHS else "failure"), [jid, _failure_info(payload)]
        script_keys, args = batches.script_args(op, bid, extra)
        index = len(pipe)
        scripts.run("batches/batch", script_keys, args, client=pipe)
        return lambda client, results: _push_fired(client, results[index])


def _push_fired(client, fired):
    """Follow-up of an end write: when ``batches/batch.lua`` fired callbacks (it answered with the
    list of them), push them now (they wait in the outbox: every heartbeat pushes what a
    process that died here left)."""
    if fired:
        batches.push_fired_callbacks(client)


def _failure_info(payload):
    return dumps({
        "class": payload.get("class"), "error_class": payload.get("error_class"),
        "error_message": (payload.get("error_message") or "")[:1000],
        "failed_at": epoch_s(payload.get("failed_at")), "retried_at": epoch_s(payload.get("retried_at")),
        "retry_count": payload.get("retry_count"),
    })
