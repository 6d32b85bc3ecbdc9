"""Every exception django-bgjobs raises, under one root: :class:`BgJobsError`.

Control-flow exceptions that user code raises inside ``perform`` are short
imperatives (:class:`Retry`, :class:`Discard`).  :class:`Shutdown` derives from
``BaseException`` so that a job's ``except Exception`` cannot swallow it.
"""

from django.core.exceptions import ImproperlyConfigured


class BgJobsError(Exception):
    """Root of every error django-bgjobs raises."""


class ConfigurationError(BgJobsError, ImproperlyConfigured):
    """The ``BGJOBS`` setting or a ``Job`` subclass is misconfigured."""


class SerializationError(BgJobsError, TypeError):
    """An argument cannot be stored as JSON; nothing was enqueued."""


class InvalidOptionError(BgJobsError, ValueError, TypeError):
    """An enqueue option is wrong: a queue name, ``retry``, ``timeout``, ``wait`` /
    ``wait_until`` or a ``perform_bulk`` item; nothing was enqueued.  Also a ``ValueError``
    and a ``TypeError``, the built-in errors such mistakes raise elsewhere."""


class EnqueueError(BgJobsError):
    """Redis refused or could not be reached while enqueueing.

    Nothing was enqueued, except in one case: the connection dropped after Redis took the
    jobs and before its reply arrived.  Enqueueing again may then enqueue twice (jobs run
    at least once anyway).
    """


class PayloadTooLargeError(BgJobsError, ValueError):
    """A job's payload is bigger than ``BGJOBS["MAX_PAYLOAD_BYTES"]``; nothing was enqueued."""


class JobTimeout(BgJobsError):
    """Raised inside a job's thread when it runs past its class's ``timeout``: a failure
    that retries like any other.  Raised by the worker's watchdog, never by user code."""

    def __init__(self, message="the job ran past its timeout"):
        super().__init__(message)


class PoisonJobError(BgJobsError):
    """The reason a job went to the dead set after its worker process died while running it
    ``BGJOBS["MAX_CRASHES"]`` times (sent with the ``job_died`` signal)."""


class UniqueJobError(BgJobsError):
    """A unique job (``lock`` set, ``on_conflict = "raise"``) was not enqueued, or not run,
    because another job holds the same lock.  ``holder_jid`` is that job's jid (None if unknown)."""

    def __init__(self, message, holder_jid=None, digest=None):
        super().__init__(message)
        self.holder_jid = holder_jid
        self.digest = digest


class UniqueJobRejected(UniqueJobError):
    """Internal: a ``while_executing`` job whose run lock is held, with ``on_conflict`` set
    to ``"reject"``.  The worker buries it in the dead set at once (no retry)."""


class UnknownJobError(BgJobsError):
    """A payload names a job class that is not registered."""


class InvalidPayloadError(BgJobsError):
    """A payload read from Redis is not a valid job (bad JSON, missing fields, bad args)."""


class Retry(BgJobsError):
    """Raise inside ``perform`` to retry the job, optionally after ``wait`` seconds."""

    def __init__(self, reason="", wait=None):
        super().__init__(reason or "retry requested")
        self.wait = wait


class Discard(BgJobsError):
    """Raise inside ``perform`` to drop the job without retry and without a dead entry."""


class Shutdown(BaseException):
    """Internal: the worker is shutting down hard. Not an ``Exception`` on purpose."""
