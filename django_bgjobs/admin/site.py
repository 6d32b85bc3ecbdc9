"""``DashboardAdmin``: mounts the job pages inside the Django admin.

The ``Dashboard`` model has no table; registering it gives the pages a link under
"Background jobs" on the admin index and the two permissions that guard them.  Its
changelist URL is the dashboard; :meth:`DashboardAdmin.page_urls` lists the others.
"""

from django.contrib import admin
from django.urls import path

from django_bgjobs.admin.batches import BatchesPage, BatchPage
from django_bgjobs.admin.metrics import MetricsPage
from django_bgjobs.admin.dashboard import DashboardPage
from django_bgjobs.admin.locks import UniqueLocksPage
from django_bgjobs.admin.processes import ProcessesPage
from django_bgjobs.admin.queues import ClearQueuePage, QueueJobPage, QueuePage, QueuesPage
from django_bgjobs.admin.recurring import RecurringPage
from django_bgjobs.admin.sets import SET_KINDS, SetBulkPage, SetJobPage, SetPage


class DashboardAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def page_urls(self):
        """``(route, view, url name)`` of every page, routes relative to ``dashboard/``."""
        def page(view_class, **kwargs):
            return view_class.as_view(model_admin=self, **kwargs)

        urls = [
            ("", page(DashboardPage), "django_bgjobs_dashboard_changelist"),
            ("processes/", page(ProcessesPage), "django_bgjobs_processes"),
            ("queues/", page(QueuesPage), "django_bgjobs_queues"),
            ("queues/<str:queue>/", page(QueuePage), "django_bgjobs_queue"),
            ("queues/<str:queue>/clear/", page(ClearQueuePage), "django_bgjobs_queue_clear"),
            ("queues/<str:queue>/jobs/<str:jid>/", page(QueueJobPage), "django_bgjobs_queue_job"),
        ]
        urls += [
            ("batches/", page(BatchesPage), "django_bgjobs_batches"),
            ("batches/<str:bid>/", page(BatchPage), "django_bgjobs_batch"),
            ("locks/", page(UniqueLocksPage), "django_bgjobs_locks"),
            ("recurring/", page(RecurringPage), "django_bgjobs_recurring"),
            ("metrics/", page(MetricsPage), "django_bgjobs_metrics"),
        ]
        for slug, kind in SET_KINDS.items():
            urls += [
                (f"{slug}/", page(SetPage, kind=kind), f"django_bgjobs_{slug}"),
                (f"{slug}/jobs/<str:jid>/", page(SetJobPage, kind=kind), f"django_bgjobs_{slug}_job"),
                (f"{slug}/all/<str:action>/", page(SetBulkPage, kind=kind), f"django_bgjobs_{slug}_all"),
            ]
        return urls

    def get_urls(self):
        return [path(route, self.admin_site.admin_view(view), name=name) for route, view, name in self.page_urls()]
