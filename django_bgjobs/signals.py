"""Signals sent through a job's life, ``sender`` being the Job class.

Receivers get ``payload`` (the dict), plus:

* ``job_enqueued``: ``scheduled_at`` (epoch seconds or None); sent by the client after the push.
* ``job_started``: ``job`` (the instance); sent before ``perform``.
* ``job_succeeded``: ``job``, ``result``, ``duration_s``.
* ``job_failed``: ``job``, ``exception``, ``duration_s``; sent for every failed attempt.
* ``job_retried``: ``exception``, ``retry_at`` (epoch seconds); the attempt went to the retry set.
* ``job_died``: ``exception``, ``reason``; the job went to the dead set (``sender`` is None when
  the payload named no registered class).  Sent by the worker after its dead-set write, and
  by ``django_bgjobs.api`` (so the admin too) when a job is killed by hand, as Sidekiq calls
  its death handlers; ``exception`` is then None.  ``failures.record_death`` listens to it.

The worker skips building a signal's arguments when nothing listens.
"""

from django.dispatch import Signal

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
