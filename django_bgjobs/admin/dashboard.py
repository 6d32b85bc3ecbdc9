"""The dashboard: totals, 30 days of history as an SVG chart, queues, sets and busy workers."""

from django_bgjobs.admin.base import JobsPage
from django_bgjobs.admin.chart import history_chart
from django_bgjobs.admin.queues import queue_row
from django_bgjobs.api import ProcessSet, Queue, Stats

HISTORY_DAYS = 30


class DashboardPage(JobsPage):
    template_name = "admin/django_bgjobs/dashboard.html"
    title = "Dashboard"
    nav = "dashboard"

    def get(self, request):
        stats = Stats()
        served = ProcessSet().served_queues()
        queues = [queue_row(Queue(name), size, served) for name, size in stats.queues.items()]
        return self.render(request, {
            "stats": stats,
            "queues": queues,
            "chart": history_chart(Stats.history(days=HISTORY_DAYS)),
            "history_days": HISTORY_DAYS,
        })
