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


class EnqueueError(BgJobsError):
    """Redis refused or could not be reached while enqueueing; nothing was enqueued."""


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
