"""Failure records: a :class:`~django_bgjobs.models.FailedJob` row for every job that reaches the dead set.

Duties, run in whichever thread sent ``signals.job_died`` (a worker's processor thread
after its dead-set write, or a web request that killed a job through the admin or
``django_bgjobs.api``):

1. :func:`record_death` writes one row, in its own transaction, whatever the job's
   ``retries_exhausted`` hook did.  A database error is logged and swallowed: the job
   is already safe in the dead set, and a broken database must never stop a worker.
2. About once an hour per process, it also deletes rows older than
   ``BGJOBS["FAILED_JOBS_RETENTION_S"]`` (:func:`prune`), so the table stays bounded
   without a cron; ``manage.py prunefailedjobs`` does the same on demand, and the job
   :class:`PruneFailedJobs` on a schedule (``"cron": "@daily"`` in ``BGJOBS["SCHEDULE"]``).

The receiver is connected in ``apps.py`` so the worker and the monitoring API stay free
of model imports.  ``BGJOBS["RECORD_FAILED_JOBS"] = False`` turns it off.
"""

import datetime
import json
import logging
import threading
import time

from django.db import DatabaseError, connections, router, transaction
from django.utils import timezone

from django_bgjobs import conf
from django_bgjobs.job import Job
from django_bgjobs.payload import backtrace_lines, epoch_s, printable

logger = logging.getLogger(__name__)

PRUNE_INTERVAL_S = 60 * 60
_MAX_FIELD_CHARS = {"jid": 64, "job_class": 255, "queue": 128, "error_class": 255}

_prune_lock = threading.Lock()
_last_prune = None  # time.monotonic() of this process's last automatic prune


def record_death(sender, payload, exception=None, reason="", **kwargs):
    """``job_died`` receiver: write a :class:`FailedJob` row for ``payload``; never raises."""
    if not conf.get("RECORD_FAILED_JOBS"):
        return
    from django_bgjobs.models import FailedJob

    try:
        row = FailedJob(**row_fields(payload, exception, reason))
        _write(FailedJob, lambda alias: row.save(using=alias, force_insert=True))
    except Exception:  # noqa: BLE001 - the dead-set entry is what counts; keep the worker alive
        logger.exception(
            "could not record the failed job %s jid=%s in the database (is `manage.py migrate` done?)",
            printable((payload or {}).get("class")), printable((payload or {}).get("jid")),
        )
        return
    prune_if_due()


def row_fields(payload, exception=None, reason=""):
    """The :class:`FailedJob` field values for a dead ``payload`` (the dict written to the dead set)."""
    payload = payload if isinstance(payload, dict) else {}
    error_class = payload.get("error_class")
    error_message = payload.get("error_message")
    if error_class is None and exception is not None:
        error_class = type(exception).__name__
        error_message = str(exception)
    backtrace = "\n".join(backtrace_lines(payload.get("error_backtrace")))
    retry_count = payload.get("retry_count")
    fields = {
        "jid": _text(payload.get("jid")),
        "job_class": _text(payload.get("class")),
        "queue": _text(payload.get("queue")) or "default",
        "args": payload.get("args") if isinstance(payload.get("args"), list) else [],
        "payload": json.loads(json.dumps(payload, default=str)),
        "error_class": _text(error_class),
        "error_message": _text(error_message),
        "backtrace": backtrace,
        "retry_count": retry_count if isinstance(retry_count, int) and not isinstance(retry_count, bool) else None,
        "reason": _text(reason or payload.get("dead_reason")),
        "first_enqueued_at": _datetime(payload.get("created_at") or payload.get("enqueued_at")),
        "failed_at": timezone.now(),
    }
    for name, limit in _MAX_FIELD_CHARS.items():
        fields[name] = fields[name][:limit]
    return fields


def prune(now=None, retention_s=None):
    """Delete rows that failed more than ``retention_s`` (default: the setting) ago; return how many.

    A retention of None keeps every row.
    """
    from django_bgjobs.models import FailedJob

    retention_s = conf.get("FAILED_JOBS_RETENTION_S") if retention_s is None else retention_s
    if retention_s is None:
        return 0
    cutoff = (now or timezone.now()) - datetime.timedelta(seconds=retention_s)
    alias = router.db_for_write(FailedJob)
    with transaction.atomic(using=alias):
        deleted, _ = FailedJob.objects.using(alias).filter(failed_at__lt=cutoff).delete()
    return deleted


def prune_if_due():
    """Run :func:`prune` when this process has not in the last hour; errors are logged."""
    global _last_prune
    with _prune_lock:
        now = time.monotonic()
        if _last_prune is not None and now - _last_prune < PRUNE_INTERVAL_S:
            return
        _last_prune = now
    try:
        deleted = prune()
    except Exception:  # noqa: BLE001 - pruning is housekeeping; the next death tries again
        logger.exception("could not prune old failed-job rows")
        return
    if deleted:
        logger.info("pruned %d failed-job rows older than the retention", deleted)


class PruneFailedJobs(Job):
    """Deletes ``FailedJob`` rows older than the retention (or than ``days``), as a recurring job."""

    name = "django_bgjobs.PruneFailedJobs"
    retry = 3
    schedulable = False  # internal: BGJOBS["SCHEDULE"] may still name it (docs/admin.rst)

    def perform(self, days=None):
        deleted = prune(retention_s=None if days is None else days * 24 * 60 * 60)
        logger.info("pruned %d failed-job rows", deleted)
        return deleted


def _write(model, save):
    """Run ``save(alias)`` in its own transaction; once more on a fresh connection if that one was broken."""
    alias = router.db_for_write(model)
    try:
        with transaction.atomic(using=alias):
            save(alias)
    except DatabaseError:
        connection = connections[alias]
        if connection.in_atomic_block:
            raise  # inside the caller's transaction: reconnecting is not ours to do
        # A worker's connection can go stale between jobs (database restarted): retry on a new one.
        connection.close_if_unusable_or_obsolete()
        with transaction.atomic(using=alias):
            save(alias)


def _text(value):
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _datetime(value):
    """A payload timestamp (epoch seconds, or milliseconds) as an aware datetime, or None."""
    seconds = epoch_s(value)
    if seconds is None:
        return None
    try:
        return datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
