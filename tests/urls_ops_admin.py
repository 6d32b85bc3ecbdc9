"""The test project's URLs plus a second, custom AdminSite at ``/ops/`` with the job pages on it."""

from django.contrib.admin import AdminSite
from django.urls import path

from django_bgjobs.admin import DashboardAdmin, FailedJobAdmin, ScheduleAdmin
from django_bgjobs.models import Dashboard, FailedJob, Schedule
from tests.urls import urlpatterns as default_urlpatterns

ops_site = AdminSite(name="ops")
ops_site.register(Dashboard, DashboardAdmin)
ops_site.register(FailedJob, FailedJobAdmin)
ops_site.register(Schedule, ScheduleAdmin)

urlpatterns = [*default_urlpatterns, path("ops/", ops_site.urls)]
