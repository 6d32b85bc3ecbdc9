"""How a job ends: the one :class:`Outcome` enum, and the seam through which features add
their own writes to the MULTI that ends a job.

A job ends in one of the :class:`Outcome` ways, whoever ends it:

* a worker (``worker/fetcher.py``'s unit of work): ``SUCCEEDED``, ``EXPIRED`` (dropped unrun,
  due longer ago than its ``expires_in``), ``RESCHEDULED`` (put back unrun, for later), or,
  after a failure (:func:`django_bgjobs.retry.fail`), ``RETRIED``, ``DEAD`` or ``DISCARDED``;
* a worker burying a poison job (``lua/recover.lua``): ``DEAD``, written by :func:`record`
  just after;
* an operator, through :mod:`django_bgjobs.api` (so the admin too), before it ran or while it
  waited for a retry: ``KILLED`` (moved to the dead set) or ``DELETED`` (removed).

**End writes.**  A feature that keeps state about a job (a unique lock, a batch's counts)
must change it in the same MULTI as the write that ends the job (the removal from the
in-flight list, the retry or dead entry, the API's move), so a crash at any instant leaves
the two in step.  It does so by giving its server middleware class (``BGJOBS["SERVER_MIDDLEWARE"]``
or :data:`conf.SERVER_BUILTINS <django_bgjobs.conf.SERVER_BUILTINS>`) a static method::

    end_writes_for = ("my_field",)   # optional: the payload fields of the jobs it has state about

    @staticmethod
    def end_writes(pipe, end):   # end: an End (outcome, payload, retry_at, exception)
        if "my_field" in end.payload:
            pipe.hincrby(...)     # queued on the MULTI; nothing is executed here

``end_writes`` may return a *follow-up*, ``follow_up(client, results)``, called once that
MULTI is written, with its results (``results[i]`` answers the command it queued when
``len(pipe)`` was ``i``): batches push the callbacks their Lua step fired this way.  A
follow-up that raises is logged; the end stays written.

:func:`queue_writes` calls every such method, in the order of the server chain, for every
end; each must return at once for a payload it has nothing to do with.  ``end_writes_for``
lets a worker skip the MULTI altogether for a job none of them has state about
(:func:`concerns`): such a job -- most -- is acknowledged with the next fetch call, the hot
path of ``docs/performance.rst``.  A class that names no fields is asked about every job.
Writes are by jid (compare-and-delete, set members), so writing an end twice changes nothing.

Client-side code: the API and the worker both use it; it opens no connection of its own and
imports no feature (it finds them through the middleware list).
"""

import enum
import logging
import threading
from dataclasses import dataclass

from django.core.signals import setting_changed
from django.dispatch import receiver

from django_bgjobs import middleware

logger = logging.getLogger(__name__)


class Outcome(enum.StrEnum):
    """How one attempt, or a job, ended.  One name each, used by the worker, ``retry``, the
    API, the end writes and the signals alike."""

    #: ``perform`` returned.
    SUCCEEDED = "succeeded"
    #: It failed and waits in the retry set.
    RETRIED = "retried"
    #: It failed for good (out of retries, ``retry_in`` said "kill", a payload that can never
    #: run, a poison job) and is in the dead set.
    DEAD = "dead"
    #: It failed and was dropped on purpose: ``Discard`` raised, ``discard_on``, ``retry_in``
    #: said "discard", or ``retry = False``.  No dead entry.
    DISCARDED = "discarded"
    #: Dropped unrun by a worker: due longer ago than its ``expires_in`` (Sidekiq Pro's
    #: expiring jobs; its batch counts it as a success).
    EXPIRED = "expired"
    #: Put back unrun in the schedule set by a worker, to start later (its run lock was held).
    #: The job has not ended: no end writes.
    RESCHEDULED = "rescheduled"
    #: Moved to the dead set by hand (the API) before it ran or between its retries.
    KILLED = "killed"
    #: Removed by hand (the API) before it ran or between its retries.
    DELETED = "deleted"


#: The outcomes of a job removed before it ran (or between two attempts).
NEVER_RAN = frozenset({Outcome.EXPIRED, Outcome.KILLED, Outcome.DELETED})


@dataclass(frozen=True, slots=True)
class End:
    """One end of a job, as the end writes see it."""

    outcome: Outcome
    #: The payload dict as it ends: after a failure, the updated copy with its error fields.
    payload: dict
    #: Epoch seconds when it is due again (``RETRIED`` only), else None.
    retry_at: float | None = None
    #: The exception that ended the attempt (failures only), else None.
    exception: BaseException | None = None


_lock = threading.Lock()
_found = None  # (end_writes functions, the payload fields they are for or None: every payload)


def _seam():
    """``(end_writes functions in chain order, their fields or None)``, found once per process
    in the server middleware list (cleared when ``BGJOBS`` changes)."""
    global _found
    found = _found
    if found is None:
        with _lock:
            found = _found
            if found is None:
                classes = [middleware.load(path, middleware.SERVER) for path in middleware.order(middleware.SERVER)]
                writing = [cls for cls in classes if getattr(cls, "end_writes", None) is not None]
                fields = set()
                for cls in writing:
                    named = getattr(cls, "end_writes_for", None)
                    if named is None:
                        fields = None
                        break
                    fields.update(named)
                found = _found = (tuple(cls.end_writes for cls in writing),
                                  None if fields is None else frozenset(fields))
    return found


def concerns(payload):
    """False when no end writer can have anything to write for ``payload`` (none of the
    fields their ``end_writes_for`` name is in it): its end needs no MULTI."""
    fields = (_found or _seam())[1]
    return fields is None or not fields.isdisjoint(payload)


def queue_writes(pipe, end):
    """Queue on ``pipe`` every feature's writes for ``end`` (see the module docstring); return
    the follow-ups they asked for, for :func:`run_follow_ups` once the MULTI is written."""
    follow_ups = []
    for write in (_found or _seam())[0]:
        follow_up = write(pipe, end)
        if follow_up is not None:
            follow_ups.append(follow_up)
    return follow_ups


def run_follow_ups(client, follow_ups, results):
    """Call each follow-up with ``client`` and the results of the MULTI it joined.  One that
    raises is logged, never raised: the job's end is written already."""
    for follow_up in follow_ups or ():
        try:
            follow_up(client, results)
        except Exception:
            logger.exception("a follow-up of a job's end failed (the end itself is written)")


def record(client, payloads, outcome):
    """Write the ends of ``payloads`` (parsed dicts, removed from Redis already) in one MULTI;
    return how many queued any write.  For the API's hand-removals and a worker's poison
    burials, which happen outside the MULTI of a unit of work."""
    pipe = client.pipeline(transaction=True)
    count = 0
    follow_ups = []
    for payload in payloads:
        before = len(pipe)
        follow_ups += queue_writes(pipe, End(outcome, payload))
        count += len(pipe) > before
    if len(pipe):
        run_follow_ups(client, follow_ups, pipe.execute())
    return count


@receiver(setting_changed)
def _reset(setting, **kwargs):
    global _found
    if setting == "BGJOBS":
        with _lock:
            _found = None
