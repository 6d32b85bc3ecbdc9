"""Recurring jobs stored as Schedule rows: validation, and changes reaching running workers."""

import json
import warnings

import pytest
from django.core.exceptions import ValidationError

from django_bgjobs.models import Schedule as ScheduleRow
from django_bgjobs.cron.server import Scheduler

pytestmark = pytest.mark.django_db(transaction=True)  # rows reach Redis when their transaction commits

NOOP = "tests.testapp.jobs.NoopJob"
T0 = 1_800_000_000.0


def test_clean_refuses_a_bad_cron_and_an_unknown_class():
    with pytest.raises(ValidationError, match="invalid cron"):
        ScheduleRow(name="x", cron="0 25 * * *", job_class=NOOP).clean()
    with pytest.raises(ValidationError, match="not a registered Job"):
        ScheduleRow(name="x", cron="@daily", job_class="os.system").clean()
    with pytest.raises(ValidationError):
        ScheduleRow(name="x", cron="@daily", job_class=NOOP, args={"a": 1}).clean()


def test_saving_a_row_makes_it_live_for_a_running_scheduler(redis):
    # Given a worker's scheduler already running (synced before the row existed)
    scheduler = Scheduler()
    scheduler.sync()
    # When an operator adds a row
    ScheduleRow.objects.create(name="every_second", cron="* * * * * *", job_class=NOOP, queue="low", args=[1])
    # Then Redis has it at once, and the scheduler enqueues its ticks without a restart
    definition = json.loads(redis.hget("cron:schedules", "every_second"))
    assert definition["source"] == "database" and definition["queue"] == "low"
    start = float(redis.hget("cron:state:every_second", "last_tick"))
    assert scheduler.enqueue_due(now=start + 3) == 3
    assert redis.llen("queue:low") == 3


def test_loading_rows_raises_no_deprecation_warning(redis):
    # Django 6.x passes fetch_mode= to from_db and warns about overrides that do not take it
    ScheduleRow.objects.create(name="report", cron="0 6 * * *", job_class=NOOP)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [row.name for row in ScheduleRow.objects.all()] == ["report"]


def test_editing_a_row_takes_effect_and_a_rename_drops_the_old_entry(redis):
    row = ScheduleRow.objects.create(name="report", cron="0 6 * * *", job_class=NOOP)
    # When edited: new cron, new name, disabled
    row.cron, row.name, row.enabled = "0 7 * * *", "morning_report", False
    row.save()
    # Then
    assert redis.hkeys("cron:schedules") == ["morning_report"]
    definition = json.loads(redis.hget("cron:schedules", "morning_report"))
    assert definition["cron"] == "0 7 * * *" and definition["enabled"] is False


def test_deleting_a_row_removes_it_and_its_state(redis):
    row = ScheduleRow.objects.create(name="report", cron="@hourly", job_class=NOOP)
    row.delete()
    assert redis.hlen("cron:schedules") == 0
    assert not redis.exists("cron:state:report")


def test_database_row_wins_over_settings_at_worker_start(redis, settings):
    settings.BGJOBS = {**settings.BGJOBS, "SCHEDULE": {"report": {"cron": "0 6 * * *", "class": NOOP}}}
    ScheduleRow.objects.create(name="report", cron="0 9 * * *", job_class=NOOP)
    Scheduler().sync(now=T0)
    assert json.loads(redis.hget("cron:schedules", "report"))["cron"] == "0 9 * * *"


def test_redis_down_when_saving_keeps_the_row_and_logs(redis, settings, caplog):
    settings.BGJOBS = {**settings.BGJOBS, "REDIS_URL": "redis://127.0.0.1:1/0"}
    import os

    old = os.environ.pop("REDIS_URL", None)
    try:
        from django_bgjobs import conf, connection

        conf.get_settings.cache_clear()
        connection.reset()
        ScheduleRow.objects.create(name="report", cron="@hourly", job_class=NOOP)
    finally:
        if old is not None:
            os.environ["REDIS_URL"] = old
    assert ScheduleRow.objects.filter(name="report").exists()
    assert "workers load it at their next start" in caplog.text
