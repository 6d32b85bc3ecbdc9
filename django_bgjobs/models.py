"""The app's models: :class:`FailedJob` (a row per job that reached the dead set) and
:class:`Dashboard` (no table: the admin pages' place in the admin index and their permissions).

Rows of :class:`FailedJob` are written by :mod:`django_bgjobs.failures`, a receiver of
``signals.job_died``, so the worker and the monitoring API never import this module.
"""

from django.db import models
from django.utils import timezone


class FailedJob(models.Model):
    """A job that went to the dead set: its payload and last error, kept after Redis forgets it.

    The dead set holds at most ``BGJOBS["DEAD_MAX_JOBS"]`` jobs for ``DEAD_TIMEOUT_S``; these
    rows are the longer-lived, searchable record, pruned after ``FAILED_JOBS_RETENTION_S``.
    """

    jid = models.CharField("job id", max_length=64, db_index=True)
    job_class = models.CharField("class", max_length=255, db_index=True)
    queue = models.CharField(max_length=128, db_index=True)
    args = models.JSONField(default=list, blank=True, help_text="The arguments as stored in the payload.")
    payload = models.JSONField(
        default=dict, blank=True, help_text="The whole payload as it was written to the dead set."
    )
    error_class = models.CharField(max_length=255, blank=True, db_index=True)
    error_message = models.TextField(blank=True)
    backtrace = models.TextField(blank=True)
    retry_count = models.IntegerField(
        null=True, blank=True, help_text="As in the payload: 0 when it died on its first failure, empty when it never failed."
    )
    reason = models.TextField(blank=True, help_text="Why it went to the dead set.")
    first_enqueued_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(default=timezone.now, db_index=True, help_text="When it went to the dead set.")
    retried_at = models.DateTimeField(null=True, blank=True, help_text="When it was enqueued again from the admin.")
    resolved_at = models.DateTimeField(null=True, blank=True, help_text="When an operator marked it resolved.")

    class Meta:
        ordering = ["-failed_at", "-id"]
        verbose_name = "failed job"
        verbose_name_plural = "failed jobs"

    def __str__(self):
        return f"{self.job_class} {self.jid}"

    @property
    def status(self):
        """``"retried"``, ``"resolved"`` or ``"open"``."""
        if self.retried_at:
            return "retried"
        if self.resolved_at:
            return "resolved"
        return "open"


class Dashboard(models.Model):
    """No table.  Registered in the admin so the job pages appear under "Background jobs".

    Its permissions guard those pages: ``view_dashboard`` to look, ``change_dashboard`` to
    act (retry, delete, kill, clear, pause, quiet, stop).
    """

    class Meta:
        managed = False
        default_permissions = ("view", "change")
        verbose_name = "dashboard"
        verbose_name_plural = "dashboard"
