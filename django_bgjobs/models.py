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
        null=True, blank=True,
        help_text="As in the payload: 0 when it died on its first failure, empty when it never failed.",
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


class Schedule(models.Model):
    """A recurring job defined in the database, edited in the admin.

    Saving or deleting a row updates Redis at once (``schedules.sync_row``), so running
    workers follow the change without a restart.  A row and a ``BGJOBS["SCHEDULE"]`` or
    ``SCHEDULE_FILE`` entry of the same name: the row wins.
    """

    name = models.CharField(max_length=200, unique=True)
    cron = models.CharField(
        max_length=200, help_text="Five fields (minute hour day month weekday), an optional sixth for seconds, "
                                  "or an alias such as @daily."
    )
    job_class = models.CharField("job", max_length=255, help_text="A registered Job: its dotted path or its name.")
    queue = models.CharField(max_length=128, blank=True, help_text="Empty: the job's own queue.")
    args = models.JSONField(default=list, blank=True, help_text='A JSON list, e.g. [30, "weekly"].')
    kwargs = models.JSONField(default=dict, blank=True, help_text="A JSON object of keyword arguments.")
    enabled = models.BooleanField(default=True)
    timezone = models.CharField(max_length=64, blank=True, help_text="Empty: settings.TIME_ZONE.")
    catch_up = models.BooleanField(
        default=False, help_text="After downtime, run the last missed tick once (else skip missed ticks)."
    )
    description = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "recurring job"
        verbose_name_plural = "recurring jobs (database)"

    def __str__(self):
        return self.name

    @classmethod
    def from_db(cls, db, field_names, values, **kwargs):  # Django 6.x adds fetch_mode=
        row = super().from_db(db, field_names, values, **kwargs)
        row._loaded_name = row.name  # to remove the old Redis entry when the name changes
        return row

    def to_schedule(self):
        """This row as a checked :class:`django_bgjobs.cron.definitions.CronDefinition`."""
        from django_bgjobs.cron.definitions import CronDefinition

        return CronDefinition.from_definition(self.name, {
            "cron": self.cron, "class": self.job_class, "queue": self.queue or None, "args": self.args,
            "kwargs": self.kwargs, "enabled": self.enabled, "timezone": self.timezone,
            "catch_up": self.catch_up, "description": self.description,
        }, "database")

    def clean(self):
        from django.core.exceptions import ValidationError

        from django_bgjobs.cron.definitions import ScheduleError

        if not isinstance(self.args, list):
            raise ValidationError({"args": "Give a JSON list."})
        if not isinstance(self.kwargs, dict):
            raise ValidationError({"kwargs": "Give a JSON object."})
        try:
            self.to_schedule()
        except ScheduleError as exc:
            raise ValidationError(str(exc).split(": ", 1)[-1]) from None


def _schedule_saved(sender, instance, **kwargs):
    from django.db import transaction

    from django_bgjobs.cron.definitions import sync_row

    transaction.on_commit(lambda: sync_row(instance), using=kwargs.get("using"))


def _schedule_deleted(sender, instance, **kwargs):
    from django.db import transaction

    from django_bgjobs.cron.definitions import sync_row

    transaction.on_commit(lambda: sync_row(instance, deleted=True), using=kwargs.get("using"))


models.signals.post_save.connect(_schedule_saved, sender=Schedule, dispatch_uid="django_bgjobs.schedule_saved")
models.signals.post_delete.connect(_schedule_deleted, sender=Schedule, dispatch_uid="django_bgjobs.schedule_deleted")
