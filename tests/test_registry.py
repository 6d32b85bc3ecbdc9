"""django_bgjobs.registry: what a worker knows, how it learns it, and what it says when it does not."""

import json
import subprocess
import sys

import pytest
from django.conf import settings
from django.test import override_settings

from django_bgjobs import Job, registry
from django_bgjobs.checks import check_job_modules
from django_bgjobs.errors import UnknownJobError
from tests.helpers import REPO_ROOT, subprocess_env

LISTED = "tests.testapp.listed_jobs.ListedJob"


def bgjobs(**changes):
    return override_settings(BGJOBS={**settings.BGJOBS, **changes})


def run_django(code, extra_settings=None):
    """Run ``code`` after ``django.setup()`` in a fresh Python with the test settings."""
    env = {"BGJOBS_TEST_EXTRA_SETTINGS": json.dumps(extra_settings)} if extra_settings else {}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + code], cwd=REPO_ROOT, capture_output=True,
        text=True, timeout=60, env=subprocess_env(env),
    )


def test_unknown_job_error_says_how_to_make_the_class_known_to_the_worker():
    with pytest.raises(UnknownJobError) as raised:
        registry.get("billing.services.InvoiceJob")

    assert str(raised.value) == (
        "no registered Job is named 'billing.services.InvoiceJob': define it in an installed app's jobs.py, "
        "or list its module in BGJOBS['JOB_MODULES'], and restart the worker"
    )


def test_a_module_in_job_modules_is_imported_at_startup_so_a_worker_knows_its_jobs():
    code = f"from django_bgjobs import registry\nprint({LISTED!r} in registry.all_jobs())"

    # When: a process starts without and with the module listed
    without = run_django(code)
    listed = run_django(code, {"JOB_MODULES": ["tests.testapp.listed_jobs"]})

    # Then
    assert (without.stdout.strip(), listed.stdout.strip()) == ("False", "True"), (without.stderr, listed.stderr)


def test_startup_fails_naming_the_entry_when_a_job_module_cannot_be_imported():
    result = run_django("print('started')", {"JOB_MODULES": ["billing.missing_jobs"]})

    assert result.returncode != 0
    assert "started" not in result.stdout
    assert ("BGJOBS['JOB_MODULES'] names 'billing.missing_jobs', which cannot be imported: "
            "No module named 'billing'") in result.stderr


@pytest.mark.parametrize("value", ["tests.testapp.listed_jobs", [42], None])
def test_e006_when_job_modules_is_not_a_list_of_module_paths(value):
    with bgjobs(JOB_MODULES=value):
        messages = [m for m in check_job_modules() if m.id == "django_bgjobs.E006"]

    assert len(messages) == 1
    assert messages[0].msg == f"BGJOBS['JOB_MODULES'] is {value!r}."


def test_w003_names_a_job_imported_after_startup_and_not_one_from_a_jobs_module():
    # Given: a class created after Django started (as one in a view's module would be)
    class InvoiceJob(Job):
        name = "tests.test_registry.InvoiceJob"

        def perform(self):
            return None

    # When
    messages = {m.msg.split()[1]: m for m in check_job_modules() if m.id == "django_bgjobs.W003"}

    # Then
    warning = messages["tests.test_registry.InvoiceJob"]
    assert warning.msg == (
        "Job tests.test_registry.InvoiceJob (module tests.test_registry) is imported after start-up, so a worker "
        "does not know it: its jobs would die with 'no registered Job is named ...'."
    )
    assert warning.hint == (
        "Move it to an installed app's jobs.py, or add 'tests.test_registry' to BGJOBS['JOB_MODULES']."
    )
    assert "tests.testapp.jobs.RecordJob" not in messages  # imported at start-up, from tests/testapp/jobs.py
