"""django_bgjobs.api.CronSet: what the admin's "Recurring jobs" page shows and does."""

import json

from django.test import override_settings

from django_bgjobs.api import CronSet
from django_bgjobs.cron.server import Scheduler

NOOP = "tests.testapp.jobs.NoopJob"
T0 = 1_800_000_000.0


def loaded(**entries):
    from django.conf import settings

    base = {k: v for k, v in settings.BGJOBS.items() if k != "SCHEDULE_FILE"}
    return override_settings(BGJOBS={**base, "SCHEDULE": entries})


def test_entries_list_definition_state_description_and_next_run(redis):
    with loaded(report={"cron": "0 6 * * *", "class": NOOP, "timezone": "UTC"}, every={"cron": "* * * * *", "class": NOOP}):
        scheduler = Scheduler()
        scheduler.sync(now=T0)
        scheduler.enqueue_due(now=T0 + 60)
        entries = {entry.name: entry for entry in CronSet()}
    assert sorted(entries) == ["every", "report"]
    assert entries["report"].description == "At 06:00"
    assert entries["report"].next_run(now=T0) % 86400 == 6 * 3600
    assert entries["every"].last_jid and entries["every"].last_tick == T0 + 60
    assert len(CronSet()) == 2


def test_disable_from_the_api_stops_the_scheduler_until_enabled(redis):
    with loaded(every={"cron": "* * * * *", "class": NOOP}):
        scheduler = Scheduler()
        scheduler.sync(now=T0)
        # When disabled: no run, even after a worker restart re-syncs the definition
        CronSet().get("every").disable()
        Scheduler().sync(now=T0 + 30)
        assert scheduler.enqueue_due(now=T0 + 60) == 0
        assert CronSet().get("every").enabled is False
        # When enabled again
        CronSet().get("every").enable()
        assert scheduler.enqueue_due(now=T0 + 120) == 1


def test_enqueue_now_pushes_one_run_and_records_it(redis):
    with loaded(cleanup={"cron": "0 2 * * 0", "class": "tests.testapp.jobs.RecordJob", "queue": "low", "args": [30]}):
        Scheduler().sync(now=T0)
        jid = CronSet().get("cleanup").enqueue_now()
    (raw,) = redis.lrange("queue:low", 0, -1)
    assert json.loads(raw)["args"] == [30] and json.loads(raw)["jid"] == jid
    assert CronSet().get("cleanup").last_jid == jid


def test_get_unknown_name_is_none(redis):
    assert CronSet().get("nope") is None
