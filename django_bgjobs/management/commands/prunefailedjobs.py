"""``manage.py prunefailedjobs``: delete ``FailedJob`` rows older than the retention.

Workers already prune about once an hour when a job dies; run this from cron when
jobs rarely die, or to apply a shorter retention once (``--days``).
"""

from django.core.management.base import BaseCommand, CommandError

from django_bgjobs import conf, failures

DAY_S = 24 * 60 * 60


class Command(BaseCommand):
    help = "Delete failed-job records older than BGJOBS['FAILED_JOBS_RETENTION_S'] (or --days)."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=float, help="delete rows that failed more than this many days ago")

    def handle(self, *args, days=None, **options):
        if days is not None and days < 0:
            raise CommandError("--days must not be negative")
        retention_s = days * DAY_S if days is not None else conf.get("FAILED_JOBS_RETENTION_S")
        if retention_s is None:
            self.stdout.write("FAILED_JOBS_RETENTION_S is None: failed jobs are kept for ever; nothing deleted.")
            return
        deleted = failures.prune(retention_s=retention_s)
        self.stdout.write(f"Deleted {deleted} failed-job record(s) older than {retention_s / DAY_S:g} day(s).")
