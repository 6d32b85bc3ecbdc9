"""Signals sent through a job's life, ``sender`` being the Job class.

Receivers get ``payload`` (the dict), plus:

* ``job_enqueued``: ``scheduled_at`` (epoch seconds or None); sent by the client after the push.
* ``job_started``: ``job`` (the instance); sent by the built-in server middleware
  ``execution.Started``, inside the built-ins that may end an attempt unrun (a job past its
  ``expires_in``, one put back because its run lock is held), which therefore sends no signal.
* ``job_succeeded``: ``job``, ``result``, ``duration_s``; sent when the chain returned.
* ``job_failed``: ``job``, ``exception``, ``duration_s``; sent for every failed attempt,
  whether ``perform`` or a server middleware raised (after a ``job_started`` of its own when a
  middleware outside ``Started`` raised).  Each ``job_started`` is followed by exactly one of
  ``job_succeeded`` / ``job_failed``.
* ``job_retried``: ``exception``, ``retry_at`` (epoch seconds); the attempt went to the retry set.
* ``job_died``: ``exception``, ``reason``; the job went to the dead set (``sender`` is None when
  the payload named no registered class).  Sent by the worker after its dead-set write, and
  by ``django_bgjobs.api`` (so the admin too) when a job is killed by hand, as Sidekiq calls
  its death handlers; ``exception`` is then None.  ``failures.record_death`` listens to it.

The worker skips building a signal's arguments when nothing listens.
"""

import logging

from django.dispatch import Signal

from django_bgjobs.payload import printable

logger = logging.getLogger(__name__)

job_enqueued = Signal()
job_started = Signal()
job_succeeded = Signal()
job_failed = Signal()
job_retried = Signal()
job_died = Signal()


def send(signal, sender, **kwargs):
    """Send ``signal`` if anyone listens (cheap no-op otherwise)."""
    if signal.has_listeners(sender):
        signal.send(sender=sender, **kwargs)


def notify(signal, sender, **kwargs):
    """Send ``signal`` about a change already written to Redis (``job_retried``, ``job_died``):
    a receiver's error is logged, not raised, since the change cannot be undone and the
    worker thread sending it must go on."""
    if not signal.has_listeners(sender):
        return
    for receiver, result in signal.send_robust(sender=sender, **kwargs):
        if isinstance(result, Exception):
            payload = kwargs.get("payload") or {}
            logger.error("signal receiver %r raised %r for jid=%s", receiver, result, printable(payload.get("jid")),
                         exc_info=result)
