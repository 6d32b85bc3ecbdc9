"""django-bgjobs: Sidekiq-style background jobs for Django, on Redis.

Import the public names from here::

    from django_bgjobs import Job, Retry, Discard
    from django_bgjobs import Batch, UniqueJobError
"""

# The feature packages first: importing one adds its checks to every Job subclass made after
# (job.class_checks), and batches makes a Job subclass itself.
from django_bgjobs import unique  # noqa: F401  (isort: skip)
from django_bgjobs.batches import Batch, BatchStatus
from django_bgjobs.errors import (
    BgJobsError,
    ConfigurationError,
    Discard,
    EnqueueError,
    InvalidOptionError,
    InvalidPayloadError,
    JobTimeout,
    PayloadTooLargeError,
    PoisonJobError,
    Retry,
    SerializationError,
    UniqueJobError,
    UnknownJobError,
)
from django_bgjobs.callbacks import RetryOn
from django_bgjobs.job import ConfiguredJob, EnqueuedJob, Job


def _installed_version():
    """The installed distribution's version (pyproject's ``version``), or ``0+unknown`` when the
    package is imported from a directory that was never installed."""
    from importlib import metadata

    try:
        return metadata.version("django-bgjobs")
    except metadata.PackageNotFoundError:
        return "0+unknown"


__all__ = [
    "Batch", "BatchStatus", "BgJobsError", "ConfigurationError", "ConfiguredJob", "Discard", "EnqueueError",
    "EnqueuedJob", "InvalidOptionError", "InvalidPayloadError", "Job", "JobTimeout", "PayloadTooLargeError", "PoisonJobError", "Retry", "RetryOn",
    "SerializationError", "UniqueJobError", "UnknownJobError",
]
__version__ = _installed_version()
