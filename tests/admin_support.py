"""Shared by the admin tests: users with and without the app's permissions, clients, and
helpers that fill Redis the way the client and the worker do.

Test modules import the fixtures they use (``from tests.admin_support import ...``).
"""

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from django_bgjobs.payload import dumps
from tests.helpers import register_process  # noqa: F401 - the admin tests import it from here

ADMIN = "/admin/django_bgjobs/dashboard/"
ALL_PERMISSIONS = [
    "view_dashboard", "change_dashboard", "view_failedjob", "change_failedjob", "delete_failedjob",
    "view_schedule", "add_schedule", "change_schedule", "delete_schedule",
]

#: Every read-only page, as (url name, args), for the permission and "reads never write" tests.
PAGES = [
    ("admin:django_bgjobs_dashboard_changelist", []),
    ("admin:django_bgjobs_processes", []),
    ("admin:django_bgjobs_queues", []),
    ("admin:django_bgjobs_queue", ["default"]),
    ("admin:django_bgjobs_queue_clear", ["default"]),
    ("admin:django_bgjobs_scheduled", []),
    ("admin:django_bgjobs_retries", []),
    ("admin:django_bgjobs_dead", []),
    ("admin:django_bgjobs_dead_all", ["retry"]),
    ("admin:django_bgjobs_retries_all", ["kill"]),
    ("admin:django_bgjobs_scheduled_all", ["add_to_queue"]),
    ("admin:django_bgjobs_batches", []),
    ("admin:django_bgjobs_locks", []),
    ("admin:django_bgjobs_recurring", []),
    ("admin:django_bgjobs_metrics", []),
]


def make_staff(username, codenames=()):
    user = User.objects.create_user(username, f"{username}@example.com", "pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="django_bgjobs", codename__in=codenames)
    )
    return user


def client_for(user, **kwargs):
    client = Client(**kwargs)
    client.force_login(user)
    return client


@pytest.fixture(autouse=True)
def push_at_once(settings):
    """``perform_later`` pushes at once: these tests run inside a transaction that never commits."""
    settings.BGJOBS = {**settings.BGJOBS, "DEFER_ON_COMMIT": False}


@pytest.fixture
def operator(db):
    """Staff with every permission of the app (not a superuser)."""
    return make_staff("operator", ALL_PERMISSIONS)


@pytest.fixture
def operator_client(operator):
    return client_for(operator)


@pytest.fixture
def viewer_client(db):
    """Staff who may look (``view_dashboard``) but not act."""
    return client_for(make_staff("viewer", ["view_dashboard", "view_failedjob"]))


@pytest.fixture
def staff_client(db):
    """Staff without any of the app's permissions."""
    return client_for(make_staff("nobody"))


def payload(n, **fields):
    """A payload like the client writes; its jid ends with ``n``."""
    item = {
        "class": "tests.testapp.jobs.RecordJob", "args": [n], "retry": True, "queue": "default",
        "jid": f"{n:024x}", "created_at": 1_700_000_000.0, "enqueued_at": 1_700_000_000.0,
    }
    item.update(fields)
    return item


def failed_payload(n, **fields):
    """A payload as the worker leaves it after a failure."""
    return payload(n, retry_count=2, failed_at=1_700_000_000.0, error_class="tests.testapp.jobs.JobFailure",
                   error_message=f"failure number {n}", error_backtrace=["Traceback...", f"JobFailure: {n}"],
                   **fields)


def fill_set(redis, key, count, base_score=1_700_000_000, make=failed_payload, **fields):
    """``count`` entries scored ``base_score + n``, in batches (fast enough for 100,000)."""
    for start in range(0, count, 10_000):
        redis.zadd(key, {dumps(make(n, **fields)): base_score + n for n in range(start, min(start + 10_000, count))})


def jids_on_page(response):
    """The jids of the entries a list page shows, in order."""
    return [entry.jid for entry in response.context["entries"]]


def messages_of(response):
    return [str(message) for message in response.context["messages"]] if response.context else []
