"""Job metrics: recorded by the threads that end jobs, written per minute by the heartbeat, read
by django_bgjobs.api.JobMetrics and the admin's Metrics page."""

import asyncio

import pytest
from django.urls import reverse

from django_bgjobs import Job, keys
from django_bgjobs.api import JobMetrics
from django_bgjobs.worker.launcher import Launcher
from django_bgjobs.worker.metrics import ExecutionMetrics
from tests.admin_support import operator_client, operator, push_at_once  # noqa: F401 - fixtures
from tests.helpers import run_queued, worker_manager
from tests.testapp import tasks
from tests.testapp.jobs import FailingJob, RecordJob, SlowJob

pytestmark = pytest.mark.django_db(transaction=True)

NOW_S = 1_700_000_000.5  # 2023-11-14 22:13:20.5 UTC


class AsyncMetricJob(Job):
    async def perform(self):
        await asyncio.sleep(0)


def test_a_heartbeat_writes_what_its_threads_ran_to_the_hash_of_its_minute(redis):
    launcher = Launcher(queues=["default"], concurrency=1, schedule=False)
    RecordJob.perform_bulk([("a",), ("b",), ("c",)])
    FailingJob.perform_later("boom")
    SlowJob.perform_bulk([(0.05,), (0.05,)])
    while launcher.manager.processors[0].process_one(block=False):
        pass
    redis.lpush(f"{launcher.identity}-signals", "TSTP")

    commands = launcher.beat(now=NOW_S)

    assert commands == ["TSTP"]  # read from its place in the MULTI, whatever the metrics add
    fields = redis.hgetall("j|20231114|22:13")
    assert fields[f"{RecordJob.name}|p"] == "3" and f"{RecordJob.name}|f" not in fields
    assert fields[f"{FailingJob.name}|p"] == "1" and fields[f"{FailingJob.name}|f"] == "1"
    assert 100 <= int(fields[f"{SlowJob.name}|ms"]) < 1000  # two runs of 50 ms
    assert 0 < redis.ttl("j|20231114|22:13") <= 8 * 3600
    launcher.beat(now=NOW_S + 1)  # nothing new: nothing added twice
    assert redis.hget("j|20231114|22:13", f"{RecordJob.name}|p") == "3"


def test_async_jobs_are_recorded_by_the_event_loops_finisher(redis):
    with worker_manager("test-host:1:metrics") as manager:
        AsyncMetricJob.perform_bulk([()] * 4)
        run_queued(manager)
        taken = manager.metrics.take()
    assert taken[AsyncMetricJob.name][:2] == [4, 0]


def test_django_tasks_are_counted_under_their_own_paths(redis):
    with worker_manager("test-host:1:metrics") as manager:
        tasks.add.enqueue(1, 2)
        tasks.async_double.enqueue(2)
        run_queued(manager)
        taken = manager.metrics.take()
    assert set(taken) == {"tests.testapp.tasks.add", "tests.testapp.tasks.async_double"}


def test_fractions_of_a_millisecond_are_carried_to_the_next_write():
    metrics = ExecutionMetrics()
    for _ in range(3):
        metrics.record("Fast", 0.0004)  # 0.4 ms each

    first = metrics.take()
    metrics.record("Fast", 0.0004)
    second = metrics.take()
    metrics.record("Fast", 0.0005)
    third = metrics.take()

    assert first == {"Fast": [3, 0, 1]}  # 1.2 ms: 1 written, 0.2 carried
    assert second == {"Fast": [1, 0, 0]}  # 0.6 ms: carried
    assert third == {"Fast": [1, 0, 1]}  # 1.1 ms


def test_metrics_a_failed_write_took_are_put_back_for_the_next_one():
    metrics = ExecutionMetrics()
    metrics.record("A", 0.5)
    taken = metrics.take()
    metrics.record("A", 0.25, failed=True)

    metrics.put_back(taken)

    assert metrics.take() == {"A": [2, 1, 750.0]}
    assert metrics.take() == {}


def write_minute(redis, minute_s, **classes):
    for name, (p, f, ms) in classes.items():
        redis.hset(keys.metrics(minute_s), mapping={f"{name}|p": p, f"{name}|f": f, f"{name}|ms": ms})


def test_job_metrics_add_up_the_minutes_of_the_window_busiest_class_first(redis):
    write_minute(redis, NOW_S, Mail=(10, 1, 500), Report=(2, 0, 4000))
    write_minute(redis, NOW_S - 60, Mail=(5, 0, 250))
    write_minute(redis, NOW_S - 3 * 3600, Mail=(1000, 0, 1))  # outside an hour's window

    rows = JobMetrics(minutes=60, now=NOW_S).classes()

    assert [(r.name, r.processed, r.failed, r.total_ms) for r in rows] == [("Report", 2, 0, 4000), ("Mail", 15, 1, 750)]
    assert rows[1].avg_ms == 50.0
    series = JobMetrics(minutes=3, now=NOW_S).series("Mail")
    assert [point[1:] for point in series] == [(0, 0, 0), (5, 0, 250), (10, 1, 500)]
    mail = next(r for r in JobMetrics(minutes=480, now=NOW_S).classes() if r.name == "Mail")
    assert mail.processed == 1015  # eight hours take in the older minute too


@pytest.mark.parametrize("minutes", [0, 481, "60", 1.5])
def test_job_metrics_refuse_a_window_they_do_not_keep(minutes):
    with pytest.raises(ValueError, match="minutes must be"):
        JobMetrics(minutes=minutes)


def test_metrics_page_lists_each_class_with_its_runs_failures_and_times(operator_client, redis):
    write_minute(redis, __import__("time").time(), **{"app.jobs.SendMail": (1200, 3, 60_000)})

    page = operator_client.get(reverse("admin:django_bgjobs_metrics")).content.decode()
    eight_hours = operator_client.get(reverse("admin:django_bgjobs_metrics") + "?minutes=480")
    odd = operator_client.get(reverse("admin:django_bgjobs_metrics") + "?minutes=abc")

    assert "app.jobs.SendMail" in page and "1,200" in page and ">60<" in page and "50.0" in page
    assert eight_hours.context["minutes"] == 480 and odd.context["minutes"] == 60


def test_metrics_page_says_how_it_fills_when_nothing_ran(operator_client):
    page = operator_client.get(reverse("admin:django_bgjobs_metrics")).content.decode()
    assert "No jobs ran in the last 60 minutes." in page
