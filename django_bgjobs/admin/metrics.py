"""Metrics: per job class, runs, failures and time spent over the last hour or eight hours.

Read through :class:`django_bgjobs.api.JobMetrics`; nothing here writes.
"""

from django_bgjobs.admin.base import JobsPage
from django_bgjobs.api import JobMetrics

#: The windows offered, in minutes, and their labels.
PERIODS = {60: "1 hour", 8 * 60: "8 hours"}


class MetricsPage(JobsPage):
    template_name = "admin/django_bgjobs/metrics.html"
    title = "Metrics"
    nav = "metrics"

    def get(self, request):
        try:
            minutes = int(request.GET.get("minutes", 60))
        except ValueError:
            minutes = 60
        if minutes not in PERIODS:
            minutes = 60
        rows = JobMetrics(minutes=minutes).classes()
        return self.render(request, {
            "rows": rows, "minutes": minutes, "periods": PERIODS.items(),
            "total_processed": sum(row.processed for row in rows), "total_failed": sum(row.failed for row in rows),
        })
