"""The test project's URLs plus a second, custom AdminSite at ``/ops/`` with the job pages on it."""

from django.contrib.admin import AdminSite
from django.urls import path

from django_bgjobs.admin import DashboardAdmin, FailedJobAdmin
from django_bgjobs.models import Dashboard, FailedJob
from tests.urls import urlpatterns as default_urlpatterns

ops_site = AdminSite(name="ops")
ops_site.register(Dashboard, DashboardAdmin)
ops_site.register(FailedJob, FailedJobAdmin)

urlpatterns = [*default_urlpatterns, path("ops/", ops_site.urls)]
