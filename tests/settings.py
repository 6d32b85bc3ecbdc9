"""Django settings for the test suite (SQLite; ``settings_postgres`` switches to PostgreSQL).

The Redis URL comes from ``BGJOBS_TEST_REDIS_URL``, which ``tests/conftest.py``
sets to a throwaway ``redis-server`` it starts on a free loopback port.  When
the variable is unset the URL points at port 1, where nothing listens, so a
mistake fails loudly instead of touching a real Redis.  Intervals are shrunk so
the worker's loops turn over fast enough for tests that wait on them.

Worker subprocesses started by ``tests.helpers.start_worker`` import this same
module; they get ``BGJOBS_TEST_SUBPROCESS=1`` so their ``django_bgjobs`` logs go
to stderr (and so into the worker's log file).
"""

import json
import os
from importlib.util import find_spec
from pathlib import Path

import django

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = "django-bgjobs-tests-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_bgjobs",
    "tests.testapp",
]
# Django's Tasks framework: built in from Django 6.0; on 5.2 the django-tasks backport (the test extra).
if not find_spec("django.tasks") and find_spec("django_tasks"):
    INSTALLED_APPS.append("django_tasks")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "tests.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# In memory, so no file is left behind; the catch is that a worker subprocess
# cannot see rows a test wrote.  End-to-end tests whose jobs read the database
# need ``tests.settings_postgres``.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": ":memory:",
    }
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "/static/"
# Django 6.1 replaced EMAIL_BACKEND (deprecated there) with MAILERS.
if django.VERSION >= (6, 1):
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
else:
    EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

BGJOBS = {
    "REDIS_URL": os.environ.get("BGJOBS_TEST_REDIS_URL", "redis://127.0.0.1:1/0"),
    "QUEUES": ["critical", "default", "low"],
    "HEARTBEAT_INTERVAL_S": 0.2,
    "HEARTBEAT_TTL_S": 2,
    "POLL_INTERVAL_S": 0.05,
    "FETCH_TIMEOUT_S": 0.2,
    "SHUTDOWN_TIMEOUT_S": 5,
    # Worker subprocesses of the recurring-job tests read their schedule from this file.
    "SCHEDULE_FILE": os.environ.get("BGJOBS_TEST_SCHEDULE_FILE") or None,
    # A while_executing job whose run lock is held comes back this soon (5 s in production).
    "UNIQUE_RESCHEDULE_S": 0.1,
}
# A worker subprocess of tests/test_middleware.py is started with a broken middleware path.
if os.environ.get("BGJOBS_TEST_SIDEKIQ_VERSION"):  # the Ruby interop tests' workers
    BGJOBS["SIDEKIQ_VERSION"] = int(os.environ["BGJOBS_TEST_SIDEKIQ_VERSION"])
if os.environ.get("BGJOBS_TEST_SERVER_MIDDLEWARE"):
    BGJOBS["SERVER_MIDDLEWARE"] = os.environ["BGJOBS_TEST_SERVER_MIDDLEWARE"].split(",")

# Subprocess tests (e.g. tests/test_checks.py) add or change BGJOBS keys with a JSON object.
if os.environ.get("BGJOBS_TEST_EXTRA_SETTINGS"):
    BGJOBS.update(json.loads(os.environ["BGJOBS_TEST_EXTRA_SETTINGS"]))

# tests/testapp/tasks.py defines the tasks these run (tests/test_tasks_backend.py).
TASKS = {
    "default": {
        "BACKEND": "django_bgjobs.tasks.RedisTaskBackend",
        "QUEUES": ["critical", "default", "low"],  # all served by BGJOBS["QUEUES"]: no W020
    },
}

_IN_SUBPROCESS = os.environ.get("BGJOBS_TEST_SUBPROCESS") == "1"

# In the pytest process records propagate to pytest's own log capture (so
# caplog sees them and failures show them); in a worker subprocess they go to
# stderr, which start_worker sends to the worker's log file.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(process)d %(threadName)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "loggers": {
        "django_bgjobs": {
            "level": "INFO",
            "handlers": ["stderr"] if _IN_SUBPROCESS else [],
        },
    },
}
