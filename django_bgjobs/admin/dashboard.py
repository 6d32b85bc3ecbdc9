"""The dashboard: totals, 30 days of history as an SVG chart, queues, sets and busy workers."""

from django_bgjobs.admin.base import JobsPage
from django_bgjobs.admin.chart import history_chart
from django_bgjobs.api import ProcessSet, Queue, Stats

HISTORY_DAYS = 30


class DashboardPage(JobsPage):
    template_name = "admin/django_bgjobs/dashboard.html"
    title = "Dashboard"
    nav = "dashboard"

    def get(self, request):
        stats = Stats()
        queues = []
        served = ProcessSet().served_queues()
        for name, size in stats.queues.items():
            queue = Queue(name)
            queues.append({"name": name, "size": size, "latency": queue.latency(), "paused": queue.paused,
                           "unserved": name not in served})
        return self.render(request, {
            "stats": stats,
            "queues": queues,
            "chart": history_chart(Stats.history(days=HISTORY_DAYS)),
            "history_days": HISTORY_DAYS,
        })
