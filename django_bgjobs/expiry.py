"""Expiring jobs (Sidekiq Pro's ``expires_in``): the built-in server middleware :class:`Expiry`.

The client side stamps ``expiry`` (epoch seconds: when the job is due plus its
``expires_in``) on the payload.  This middleware, the outermost built-in, checks it once
per attempt, as the attempt starts -- for an async job, after it waited for one of the
event loop's slots -- and drops a job whose ``expiry`` has passed, unrun: the attempt ends
as ``EXPIRED`` (its enqueue lock is freed, except an ``until_expired`` one, and its batch
counts it as a success), and it counts as neither processed nor failed.  A payload whose
``expiry`` is not a number raises :class:`~django_bgjobs.errors.InvalidPayloadError`: the
dead set, with the reason.
"""

import logging

from django_bgjobs import execution
from django_bgjobs.errors import InvalidPayloadError
from django_bgjobs.job_end import Outcome
from django_bgjobs.payload import now_s, printable

logger = logging.getLogger(__name__)


class Expiry:
    """Built-in server middleware: drop a job due longer ago than its ``expires_in``."""

    def __init__(self, call_next):
        self.call_next = call_next

    def __call__(self, job, payload):
        if "expiry" not in payload:
            return self.call_next(job, payload)
        late_s = now_s() - expiry_s(payload)
        if late_s <= 0:
            return self.call_next(job, payload)
        logger.info(
            "expired %s jid=%s queue=%s: not started within its expires_in (%.1fs late); dropped",
            printable(payload.get("class")), printable(payload.get("jid")), printable(payload.get("queue")), late_s,
        )
        attempt = execution.current_attempt()
        if attempt is not None:
            attempt.skip(Outcome.EXPIRED)
        return None


def expiry_s(payload):
    """The payload's ``expiry`` in epoch seconds; :class:`InvalidPayloadError` when it is not a number."""
    expiry = payload["expiry"]
    if isinstance(expiry, bool) or not isinstance(expiry, (int, float)):
        raise InvalidPayloadError(f"expiry must be epoch seconds, not {expiry!r}")
    return expiry
