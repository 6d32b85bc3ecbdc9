"""The Django admin for django-bgjobs, registered on ``django.contrib.admin.site``.

* :mod:`~django_bgjobs.admin.site`: ``DashboardAdmin`` mounts the job pages (dashboard,
  processes, queues, scheduled, retries, dead) under the table-less ``Dashboard`` model.
* :mod:`~django_bgjobs.admin.failed_jobs`: ``FailedJobAdmin``, the failure records.
* :mod:`~django_bgjobs.admin.schedules`: ``ScheduleAdmin``, recurring jobs defined in the database.
* :mod:`~django_bgjobs.admin.base`: what every page shares, and how to add one.

The pages call ``django_bgjobs.api`` and nothing else in Redis; this package never
imports the worker.  On a custom ``AdminSite``, register the same three ModelAdmins there.
"""

from django.contrib import admin

from django_bgjobs.admin.failed_jobs import FailedJobAdmin
from django_bgjobs.admin.schedules import ScheduleAdmin
from django_bgjobs.admin.site import DashboardAdmin
from django_bgjobs.models import Dashboard, FailedJob, Schedule

admin.site.register(Dashboard, DashboardAdmin)
admin.site.register(FailedJob, FailedJobAdmin)
admin.site.register(Schedule, ScheduleAdmin)

__all__ = ["DashboardAdmin", "FailedJobAdmin", "ScheduleAdmin"]
