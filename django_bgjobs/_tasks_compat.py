"""One set of names for Django's Tasks framework, wherever it comes from.

Django 6.0 ships it as ``django.tasks``; on Django 5.2 the ``django-tasks`` backport
provides the same API as ``django_tasks``, with a few renames (``InvalidTaskError`` for
``InvalidTask``, its helpers in ``django_tasks.utils`` instead of ``django.utils.json``).
``django_bgjobs.tasks`` imports everything from here, so it has one code path.

Django's own package wins when both are installed: ``settings.TASKS`` is read by both
frameworks, and a project on Django 6 writes ``from django.tasks import task``.
"""

try:
    from django.tasks import (
        DEFAULT_TASK_BACKEND_ALIAS,
        TaskContext,
        TaskResult,
        TaskResultStatus,
        task_backends,
    )
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import TaskError
    from django.tasks.exceptions import InvalidTask, InvalidTaskBackend, TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json

    SOURCE = "django.tasks"
except ImportError:
    try:
        from django_tasks import (
            DEFAULT_TASK_BACKEND_ALIAS,
            TaskContext,
            TaskResult,
            TaskResultStatus,
            task_backends,
        )
        from django_tasks.backends.base import BaseTaskBackend
        from django_tasks.base import TaskError
        from django_tasks.exceptions import InvalidTaskBackendError as InvalidTaskBackend
        from django_tasks.exceptions import InvalidTaskError as InvalidTask
        from django_tasks.exceptions import TaskResultDoesNotExist
        from django_tasks.signals import task_enqueued, task_finished, task_started
        from django_tasks.utils import normalize_json
    except ImportError as exc:
        raise ImportError(
            "django_bgjobs.tasks needs Django's Tasks framework: Django 6.0 or later has it as "
            "django.tasks; on Django 5.2 install the django-tasks backport "
            "(pip install 'django-bgjobs[tasks]') and add 'django_tasks' to INSTALLED_APPS."
        ) from exc

    SOURCE = "django_tasks"

__all__ = [
    "DEFAULT_TASK_BACKEND_ALIAS", "SOURCE", "BaseTaskBackend", "InvalidTask", "InvalidTaskBackend", "TaskContext",
    "TaskError", "TaskResult", "TaskResultDoesNotExist", "TaskResultStatus", "normalize_json", "task_backends",
    "task_enqueued", "task_finished", "task_started",
]
