"""The worker's Scheduler: recurring jobs enqueued exactly once per tick, missed ticks, sync."""

import json
import threading

import pytest
from django.test import override_settings

from django_bgjobs import keys
from django_bgjobs.worker.cron import Scheduler

NOOP = "tests.testapp.jobs.NoopJob"
T0 = 1_800_000_000.0  # a fixed clock, on a whole minute


def schedule_settings(**entries):
    return override_settings(BGJOBS={**_base(), "SCHEDULE": entries})


def _base():
    from django.conf import settings

    return {k: v for k, v in settings.BGJOBS.items() if k != "SCHEDULE_FILE"}


def queued(redis, queue="default"):
    return [json.loads(raw) for raw in redis.lrange(keys.queue(queue), 0, -1)]


def test_sync_loads_settings_and_starts_the_clock_at_now(redis):
    with schedule_settings(every_minute={"cron": "* * * * *", "class": NOOP}):
        Scheduler().sync(now=T0)
    assert json.loads(redis.hget("cron:schedules", "every_minute"))["cron"] == "* * * * *"
    assert float(redis.hget("cron:state:every_minute", "last_tick")) == T0


def test_each_tick_is_enqueued_once_when_due(redis):
    # Given a schedule every minute, loaded at T0
    with schedule_settings(every_minute={"cron": "* * * * *", "class": NOOP, "args": [7]}):
        scheduler = Scheduler()
        scheduler.sync(now=T0)
        # When the clock passes three ticks, checked twice each
        counts = [scheduler.enqueue_due(now=T0 + s) for s in (30, 60, 61, 120, 150, 180, 180)]
    # Then
    assert counts == [0, 1, 0, 1, 0, 1, 0]
    jobs = queued(redis)
    assert [j["args"] for j in jobs] == [[7]] * 3 and all(j["cron"] == "every_minute" for j in jobs)
    state = redis.hgetall("cron:state:every_minute")
    assert float(state["last_tick"]) == T0 + 180 and state["last_jid"] == jobs[0]["jid"]


def test_missed_ticks_are_skipped_without_catch_up(redis):
    with schedule_settings(every_minute={"cron": "* * * * *", "class": NOOP}):
        scheduler = Scheduler()
        scheduler.sync(now=T0)
        # When no worker ran for an hour (default grace 60 s)
        enqueued = scheduler.enqueue_due(now=T0 + 3600 + 30)
    # Then only the tick inside the grace window runs, not the backlog
    assert enqueued == 1
    assert len(queued(redis)) == 1


def test_last_missed_tick_is_enqueued_with_catch_up(redis):
    with schedule_settings(daily={"cron": "0 6 * * *", "class": NOOP, "catch_up": True, "timezone": "UTC"}):
        scheduler = Scheduler()
        scheduler.sync(now=T0)
        # When three days pass with no worker
        enqueued = scheduler.enqueue_due(now=T0 + 3 * 86400)
        again = scheduler.enqueue_due(now=T0 + 3 * 86400 + 1)
    # Then exactly one catch-up run, not three
    assert (enqueued, again) == (1, 0)


def test_disabled_schedule_enqueues_nothing(redis):
    with schedule_settings(off={"cron": "* * * * *", "class": NOOP, "enabled": False}):
        scheduler = Scheduler()
        scheduler.sync(now=T0)
        assert scheduler.enqueue_due(now=T0 + 120) == 0
    assert queued(redis) == []


def test_racing_schedulers_enqueue_each_tick_exactly_once(redis):
    # Given 3 schedulers (as in 3 workers) over a schedule firing every second
    with schedule_settings(every_second={"cron": "* * * * * *", "class": NOOP}):
        Scheduler().sync(now=T0)
        schedulers = [Scheduler() for _ in range(3)]
        barrier = threading.Barrier(3)

        def run(scheduler):
            barrier.wait()
            for step in range(1, 41):
                scheduler.enqueue_due(now=T0 + step * 0.5)

        # When they all check the same 20 seconds at once
        threads = [threading.Thread(target=run, args=(s,)) for s in schedulers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    # Then each of the 20 ticks is in the queue exactly once
    assert len(queued(redis)) == 20


def test_sync_removes_entries_that_left_the_settings(redis):
    with schedule_settings(a={"cron": "@hourly", "class": NOOP}, b={"cron": "@hourly", "class": NOOP}):
        Scheduler().sync(now=T0)
    with schedule_settings(a={"cron": "@hourly", "class": NOOP}):
        Scheduler().sync(now=T0)
    assert sorted(redis.hkeys("cron:schedules")) == ["a"]


def test_broken_schedule_is_logged_and_the_others_still_run(redis, caplog):
    with schedule_settings(good={"cron": "* * * * *", "class": NOOP}):
        scheduler = Scheduler()
        scheduler.sync(now=T0)
        # Given a definition in Redis whose class no longer exists (deployed away)
        bad = json.loads(redis.hget("cron:schedules", "good"))
        bad.update(name="gone", job_name="app.jobs.Removed")
        redis.hset("cron:schedules", "gone", json.dumps(bad))
        redis.hset("cron:state:gone", "last_tick", T0)
        # When
        enqueued = scheduler.enqueue_due(now=T0 + 60)
    # Then
    assert enqueued == 1
    assert "recurring job gone skipped" in caplog.text


def test_invalid_settings_entry_is_not_loaded_and_logged(redis, caplog):
    with schedule_settings(bad={"cron": "99 * * * *", "class": NOOP}, good={"cron": "@hourly", "class": NOOP}):
        Scheduler().sync(now=T0)
    assert redis.hkeys("cron:schedules") == ["good"]
    assert "invalid cron" in caplog.text


@pytest.mark.slow
def test_three_workers_enqueue_each_tick_of_an_every_second_schedule_once(redis, tmp_path):
    from tests.helpers import start_worker, stop_worker, wait_until

    # Given a YAML schedule firing every second, read by three worker processes
    path = tmp_path / "schedule.yml"
    path.write_text("every_second:\n  cron: '* * * * * *'\n  class: tests.testapp.jobs.NoopJob\n  queue: low\n")
    env = {"BGJOBS_TEST_SCHEDULE_FILE": str(path)}
    # Workers serve only "critical", so the enqueued ticks stay in "low" to be counted.
    workers = [start_worker("-c", "1", "-q", "critical", env=env) for _ in range(3)]
    try:
        wait_until(lambda: redis.hget("cron:state:every_second", "last_jid"), timeout=20)
        first = float(redis.hget("cron:state:every_second", "last_tick"))
        # When they run side by side for 10 seconds
        wait_until(lambda: float(redis.hget("cron:state:every_second", "last_tick")) >= first + 10, timeout=30)
    finally:
        codes = [stop_worker(w) for w in workers]
    # Then every tick from the first to the last is there exactly once
    jobs = queued(redis, "low")
    ticks = sorted(j["cron_at"] for j in jobs)
    expected = int(round(ticks[-1] - ticks[0])) + 1
    print(f"exactly-once: 3 workers, ticks expected={expected} enqueued={len(jobs)} unique={len(set(ticks))}")
    assert codes == [0, 0, 0]
    assert len(jobs) == expected == len(set(ticks))
    assert ticks[-1] >= first + 10


@pytest.mark.django_db  # Django 6's own checks may query the database
def test_system_check_reports_invalid_cron_and_unknown_class(tmp_path):
    from django.core.checks import run_checks

    path = tmp_path / "schedule.yml"
    path.write_text("daily:\n  cron: '0 6 * * *'\n  class: reports.jobs.Missing\n")
    with override_settings(BGJOBS={**_base(), "SCHEDULE": {"bad": {"cron": "0 25 * * *", "class": NOOP}},
                                   "SCHEDULE_FILE": str(path)}):
        found = [m for m in run_checks() if m.id == "django_bgjobs.E010"]
    messages = sorted(m.msg for m in found)
    assert len(found) == 2
    assert "invalid cron" in messages[0] or "invalid cron" in messages[1]
    assert any("reports.jobs.Missing" in m and "not a registered Job" in m for m in messages)
