"""Django settings for the django-bgjobs benchmark worker and client.

As small as a real project can be: the app, a database (a SQLite file that ``run.py``
migrates; the worker recycles connections around every job, as in production), Redis from
``BENCH_REDIS_URL``.
``runjobs`` logs at INFO, one line per finished job, as it does by default.
"""

import os

SECRET_KEY = "django-bgjobs-benchmark-not-secret"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["django_bgjobs", "bgjobs_bench"]
# run.py makes a migrated SQLite file for the run (the worker reads recurring jobs from it).
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ.get("BENCH_DB", ":memory:")}}
BGJOBS = {"REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:1/0")}
if os.environ.get("BENCH_PREFETCH"):  # for trying other values by hand; run.py leaves the default
    BGJOBS["PREFETCH"] = int(os.environ["BENCH_PREFETCH"])
