"""The Django app: imports every installed app's ``jobs.py`` and registers the system checks."""

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class BgJobsConfig(AppConfig):
    name = "django_bgjobs"
    verbose_name = "Background jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django_bgjobs import checks  # noqa: F401  (registers the checks)

        autodiscover_modules("jobs")
