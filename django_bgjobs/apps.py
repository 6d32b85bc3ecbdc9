"""The Django app: imports every installed app's ``jobs.py`` and the modules of
``BGJOBS["JOB_MODULES"]``, registers the system checks and
connects the receiver that records dead jobs as ``FailedJob`` rows (``failures.py``).

When Django's Tasks framework is installed it also imports ``django_bgjobs.tasks`` (so a
worker knows ``TaskJob``) and, if ``TASKS`` uses its ``RedisTaskBackend``, every installed
app's ``tasks.py`` (so a worker knows every ``@task``)."""

from importlib.util import find_spec

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class BgJobsConfig(AppConfig):
    name = "django_bgjobs"
    verbose_name = "Background jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django_bgjobs import activejob, checks  # noqa: F401  (the ActiveJob wrappers; the checks)
        from django_bgjobs import failures, signals

        signals.job_died.connect(failures.record_death, dispatch_uid="django_bgjobs.failures.record_death")

        autodiscover_modules("jobs")
        from django_bgjobs import registry

        registry.import_job_modules()
        if find_spec("django.tasks") or find_spec("django_tasks"):
            from django_bgjobs import tasks

            tasks.autodiscover()
