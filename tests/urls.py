"""URLs for the test project: the Django admin, where django_bgjobs mounts its pages."""

from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
]
