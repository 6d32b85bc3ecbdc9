"""The test settings on PostgreSQL at 127.0.0.1:5432 (user ``postgres``, trust auth).

pytest-django creates and drops ``test_bgjobs_tests``.  A worker subprocess
started by ``tests.helpers.start_worker`` gets ``BGJOBS_TEST_DB_NAME`` set to
that test database's name, so jobs it runs see what the test committed.
"""

import os

from tests.settings import *  # noqa: F403

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("BGJOBS_TEST_DB_NAME", "bgjobs_tests"),
        "USER": os.environ.get("BGJOBS_TEST_PG_USER", "postgres"),
        "PASSWORD": os.environ.get("BGJOBS_TEST_PG_PASSWORD", ""),
        "HOST": os.environ.get("BGJOBS_TEST_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("BGJOBS_TEST_PG_PORT", "5432"),
    }
}
