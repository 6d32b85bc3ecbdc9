"""Django ``@task`` functions for tests/test_tasks_backend.py.

``django_bgjobs`` imports this module at start-up (the app's ``tasks.py``), so each task is
validated by the ``RedisTaskBackend`` of ``tests/settings.py`` and registered, in the test
process and in worker subprocesses alike.  Tasks that leave a trace append to the same Redis
ledger as the test jobs (``tests.testapp.jobs.record``), which outlives the process.
"""

import asyncio
import sys

from django_bgjobs._tasks_compat import SOURCE
from tests.testapp.jobs import JobFailure, record

if SOURCE == "django.tasks":
    from django.tasks import task
else:
    from django_tasks import task


@task
def send_welcome(user_id):
    """The README's example: records its argument and returns a greeting."""
    record(None, [user_id], task="send_welcome")
    return f"welcome sent to user {user_id}"


@task()
def add(a, b=0):
    return a + b


@task(priority=10)
def urgent(label):
    record(None, [label], task="urgent")


@task()
def routine(label):
    record(None, [label], task="routine")


@task(queue_name="low")
def low_queue_task(label):
    record(None, [label], task="low_queue_task")


@task()
def fail(message="task failed"):
    raise JobFailure(message)


@task()
def exit_task():
    sys.exit(3)


@task()
def return_object():
    return object()


@task()
def return_tuple_and_keys():
    return {"pair": (1, 2), 3: "three"}


@task(takes_context=True)
def show_context(context, label):
    return {"id": context.task_result.id, "attempt": context.attempt, "label": label,
            "status": str(context.task_result.status)}


@task(takes_context=True)
def fail_twice(context):
    """Fails on its first two attempts, then returns the attempt number."""
    if context.attempt <= 2:
        raise JobFailure(f"attempt {context.attempt} fails")
    return context.attempt


@task()
async def async_double(value):
    await asyncio.sleep(0)
    return value * 2


@task()
async def async_nap(seconds):
    """Sleeps on the event loop; returns when it ran, to measure overlap."""
    import time

    started = time.time()
    await asyncio.sleep(seconds)
    return [started, time.time()]


@task()
async def async_fail(message="async task failed"):
    await asyncio.sleep(0)
    raise JobFailure(message)
