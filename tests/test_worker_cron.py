"""The worker's Scheduler: recurring jobs enqueued exactly once per tick, missed ticks, sync."""

import json
import threading

import pytest
from django.test import override_settings

from django_bgjobs import keys, signals
from django_bgjobs.cron.server import Scheduler

NOOP = "tests.testapp.jobs.NoopJob"
UNTIL_EXECUTED = "tests.testapp.unique_batch_jobs.UntilExecutedJob"
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


def race(count, seconds):
    """``count`` schedulers (as in as many workers) check the same ``seconds`` after T0 at once,
    every half second."""
    Scheduler().sync(now=T0)
    schedulers = [Scheduler() for _ in range(count)]
    barrier = threading.Barrier(count)

    def run(scheduler):
        barrier.wait()
        for step in range(1, 2 * seconds + 1):
            scheduler.enqueue_due(now=T0 + step * 0.5)

    threads = [threading.Thread(target=run, args=(s,)) for s in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def test_racing_schedulers_enqueue_each_tick_exactly_once(redis):
    # Given 3 schedulers (as in 3 workers) over a schedule firing every second
    with schedule_settings(every_second={"cron": "* * * * * *", "class": NOOP}):
        # When they all check the same 20 seconds at once
        race(3, 20)
    # Then each of the 20 ticks is in the queue exactly once
    assert len(queued(redis)) == 20


def test_recurring_job_with_an_until_executed_lock_is_queued_once_while_the_first_one_waits(redis, caplog):
    # Given a schedule every minute of a job whose class sets lock = "until_executed"
    with schedule_settings(locked={"cron": "* * * * *", "class": UNTIL_EXECUTED, "args": ["report"]}):
        scheduler = Scheduler()
        scheduler.sync(now=T0)

        # When two ticks pass while the first job still waits in its queue
        counts = [scheduler.enqueue_due(now=T0 + 60), scheduler.enqueue_due(now=T0 + 120)]
        again = scheduler.enqueue_due(now=T0 + 121)

    # Then one job, holding the one lock; the second tick is used up (logged), not offered again
    assert (counts, again) == ([1, 0], 0)
    [job] = queued(redis)
    assert job["lock"] == "until_executed" and job["cron_at"] == T0 + 60
    assert redis.keys("unique:*") == [keys.unique_lock(job["lock_digest"])]
    assert redis.hget(keys.unique_lock(job["lock_digest"]), "jid") == job["jid"]
    assert float(redis.hget("cron:state:locked", "last_tick")) == T0 + 120
    assert redis.hget("cron:state:locked", "last_jid") == job["jid"]
    assert f"jid={job['jid']} holds the lock" in caplog.text


def test_racing_schedulers_over_a_locked_job_queue_it_once_and_use_up_every_tick(redis):
    # Given 3 schedulers over a schedule firing every second, of a job with a lock
    with schedule_settings(locked={"cron": "* * * * * *", "class": UNTIL_EXECUTED, "args": ["race"]}):
        # When they check the same 10 seconds at once
        race(3, 10)

    # Then the first tick's job is the only one, with its lock, and every tick is taken
    [job] = queued(redis)
    assert job["cron_at"] == T0 + 1
    assert redis.keys("unique:*") == [keys.unique_lock(job["lock_digest"])]
    assert float(redis.hget("cron:state:locked", "last_tick")) == T0 + 10


def test_a_recurring_tick_sends_job_enqueued_once_its_job_is_written(redis):
    seen = []

    def receiver(sender, payload, **kwargs):
        seen.append((sender.name, payload["jid"], bool(redis.lrange(keys.queue("default"), 0, -1))))

    signals.job_enqueued.connect(receiver)
    try:
        with schedule_settings(every_minute={"cron": "* * * * *", "class": NOOP}):
            scheduler = Scheduler()
            scheduler.sync(now=T0)
            scheduler.enqueue_due(now=T0 + 60)
    finally:
        signals.job_enqueued.disconnect(receiver)

    [job] = queued(redis)
    assert seen == [(NOOP, job["jid"], True)]


def test_a_recurring_tick_over_max_payload_bytes_writes_nothing_and_keeps_the_tick(redis, caplog):
    with schedule_settings(big={"cron": "* * * * *", "class": NOOP, "args": ["x" * 2000]}):
        from django.conf import settings

        with override_settings(BGJOBS={**settings.BGJOBS, "MAX_PAYLOAD_BYTES": 1000}):
            scheduler = Scheduler()
            scheduler.sync(now=T0)
            assert scheduler.enqueue_due(now=T0 + 60) == 0

    assert queued(redis) == []
    assert float(redis.hget("cron:state:big", "last_tick")) == T0
    assert "MAX_PAYLOAD_BYTES" in caplog.text


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
