"""Recurring-job definitions: parsing, validation, sources, and wall-clock ticks across DST."""

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from django.test import override_settings

from django_bgjobs.cron import definitions as schedules
from django_bgjobs.cron.definitions import CronDefinition, ScheduleError, describe_cron
from tests.helpers import REPO_ROOT

NOOP = "tests.testapp.jobs.NoopJob"
BERLIN = ZoneInfo("Europe/Berlin")


def make(cron="0 6 * * *", **extra):
    return CronDefinition.from_definition("report", {"cron": cron, "class": NOOP, **extra}, "settings")


def local(t):
    return datetime.fromtimestamp(t, BERLIN).isoformat()


def ts(*parts):
    return datetime(*parts, tzinfo=BERLIN).timestamp()


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize("cron", ["61 * * * *", "* * *", "", "every day", "0 6 * * * * * *"])
def test_invalid_cron_is_refused_when_defined(cron):
    with pytest.raises(ScheduleError, match="invalid cron"):
        make(cron)


def test_unknown_class_is_refused_with_a_hint_when_defined():
    with pytest.raises(ScheduleError, match="not a registered Job"):
        CronDefinition.from_definition("x", {"cron": "@daily", "class": "os.system"}, "file")


def test_args_that_do_not_fit_perform_are_refused_naming_the_parameter_when_defined():
    with pytest.raises(ScheduleError, match=r"'report' \(settings\): arguments do not fit "
                                            r"tests.testapp.jobs.ReturnJob.perform\(self, value\): "
                                            r"missing a required argument: 'value'"):
        CronDefinition.from_definition("report", {"cron": "@daily", "class": "tests.testapp.jobs.ReturnJob"}, "settings")
    with pytest.raises(ScheduleError, match="unexpected keyword argument 'values'"):
        CronDefinition.from_definition(
            "report", {"cron": "@daily", "class": "tests.testapp.jobs.ReturnJob", "args": [1], "kwargs": {"values": 1}}, "settings",
        )


def test_unknown_field_and_bad_zone_and_bad_queue_are_refused():
    with pytest.raises(ScheduleError, match="unknown field"):
        make(crontab="x")
    with pytest.raises(ScheduleError, match="time zone"):
        make(timezone="Mars/Olympus")
    with pytest.raises(ScheduleError, match="queue name"):
        make(queue="has space")


@pytest.mark.parametrize("cron", ["0 6 * * *", "*/10 * * * * *", "@daily", "@hourly", "0 2 * * 0"])
def test_valid_forms_are_accepted(cron):
    assert make(cron).cron == cron


def test_a_single_arg_is_wrapped_in_a_list_like_sidekiq_cron():
    assert make(args=30).args == [30]


def test_json_round_trip_keeps_every_field():
    schedule = make(queue="low", args=[30], kwargs={"a": 1}, description="d", enabled=False,
                    timezone="Europe/Berlin", catch_up=True)
    assert CronDefinition.from_json(schedule.to_json()) == schedule


# -- ticks -----------------------------------------------------------------------------------


def test_ticks_between_lists_each_tick_once_in_order():
    schedule = make("*/15 * * * *", timezone="Europe/Berlin")
    ticks = schedule.ticks_between(ts(2026, 1, 1, 10, 0), ts(2026, 1, 1, 11, 0))
    assert [local(t)[11:16] for t in ticks] == ["10:15", "10:30", "10:45", "11:00"]


def test_six_field_cron_fires_every_second():
    schedule = make("*/1 * * * * *")
    assert len(schedule.ticks_between(1_000_000.0, 1_000_010.0)) == 10


def test_time_in_the_spring_forward_gap_fires_once_when_the_clocks_jump():
    # Given 02:30 every day in Berlin; on 2026-03-29 the clocks jump from 02:00 to 03:00
    schedule = make("30 2 * * *", timezone="Europe/Berlin")
    # When
    ticks = schedule.ticks_between(ts(2026, 3, 28, 0, 0), ts(2026, 3, 31, 0, 0))
    # Then: once a day, the missing 02:30 at 03:30 summer time
    assert [local(t) for t in ticks] == [
        "2026-03-28T02:30:00+01:00", "2026-03-29T03:30:00+02:00", "2026-03-30T02:30:00+02:00",
    ]


def test_time_in_the_fall_back_overlap_fires_once_at_its_first_occurrence():
    schedule = make("30 2 * * *", timezone="Europe/Berlin")
    ticks = schedule.ticks_between(ts(2026, 10, 24, 0, 0), ts(2026, 10, 27, 0, 0))
    assert [local(t) for t in ticks] == [
        "2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00",
    ]


def test_hourly_schedule_does_not_fire_twice_at_the_same_instant_in_the_gap():
    schedule = make("30 * * * *", timezone="Europe/Berlin")
    ticks = schedule.ticks_between(ts(2026, 3, 29, 0, 0), ts(2026, 3, 29, 5, 0))
    assert len(ticks) == len(set(ticks)) == 4


def test_schedule_uses_settings_time_zone_by_default():
    with override_settings(TIME_ZONE="America/New_York"):
        schedule = make("0 6 * * *")
        (tick,) = schedule.ticks_between(ts(2026, 6, 1, 0, 0), ts(2026, 6, 2, 0, 0))
    assert datetime.fromtimestamp(tick, ZoneInfo("America/New_York")).hour == 6


def test_previous_tick_is_at_or_before_the_given_time():
    schedule = make("0 6 * * *", timezone="Europe/Berlin")
    assert local(schedule.previous_tick(ts(2026, 1, 2, 6, 0))) == "2026-01-02T06:00:00+01:00"
    assert local(schedule.previous_tick(ts(2026, 1, 2, 5, 59))) == "2026-01-01T06:00:00+01:00"


def test_cron_is_described_in_words():
    assert describe_cron("0 6 * * *") == "At 06:00"
    assert describe_cron("*/1 * * * * *") == "Every second"
    assert "Sunday" in describe_cron("0 2 * * 0")


# -- sources ---------------------------------------------------------------------------------


def test_settings_and_file_are_merged_and_the_file_wins_on_a_shared_name(tmp_path):
    # Given
    path = tmp_path / "schedule.yml"
    path.write_text(
        "daily_report:\n  cron: '0 6 * * *'\n  class: tests.testapp.jobs.NoopJob\n  queue: default\n"
        "cleanup:\n  cron: '0 2 * * 0'\n  class: tests.testapp.jobs.RecordJob\n  queue: low\n  args: [30]\n"
        "  description: Delete records older than 30 days\n"
    )
    settings_schedule = {"daily_report": {"cron": "0 7 * * *", "class": NOOP}, "hourly": {"cron": "@hourly", "class": NOOP}}
    # When
    with override_settings(BGJOBS={"SCHEDULE": settings_schedule, "SCHEDULE_FILE": str(path)}):
        merged = schedules.configured(include_database=False)
    # Then
    assert sorted(merged) == ["cleanup", "daily_report", "hourly"]
    assert merged["daily_report"].cron == "0 6 * * *" and merged["daily_report"].source == "file"
    assert merged["cleanup"].args == [30] and merged["cleanup"].queue == "low"
    assert merged["hourly"].source == "settings"


def test_bad_entries_are_collected_and_the_good_ones_kept_when_errors_are_collected(tmp_path):
    settings_schedule = {"good": {"cron": "@hourly", "class": NOOP}, "bad": {"cron": "nope", "class": NOOP}}
    errors = []
    with override_settings(BGJOBS={"SCHEDULE": settings_schedule}):
        merged = schedules.configured(include_database=False, errors=errors)
    assert list(merged) == ["good"]
    assert len(errors) == 1 and "'bad'" in str(errors[0])


def test_invalid_yaml_file_gives_a_clear_error(tmp_path):
    path = tmp_path / "schedule.yml"
    path.write_text("daily: [unclosed\n")
    with override_settings(BGJOBS={"SCHEDULE_FILE": str(path)}):
        with pytest.raises(ScheduleError, match="not valid YAML"):
            schedules.from_file()


# -- the documented examples mean what the docs say -------------------------------------------

# What each description in the docs means: (a test on a firing time, how far to look, the step
# a cron of that many fields can fire at).  A description the docs use must be here.
DESCRIBED = {
    "every ten seconds": (lambda t: t.second % 10 == 0, timedelta(minutes=3), timedelta(seconds=1)),
    "every second of minutes :00, :10, :20, :30, :40 and :50": (
        lambda t: t.minute % 10 == 0, timedelta(minutes=30), timedelta(seconds=1)),
    "every day at 06:00": (lambda t: (t.hour, t.minute, t.second) == (6, 0, 0), timedelta(days=3), timedelta(minutes=1)),
    "Sunday at 2am": (
        lambda t: (t.weekday(), t.hour, t.minute, t.second) == (6, 2, 0, 0), timedelta(days=15), timedelta(minutes=1)),
}
_CRON = r"(?:[\d*/,-]+ ){4,5}[\d*/,-]+"


def documented_cron_examples():
    """``(where, expression, description)`` for each cron example the docs describe: a YAML
    ``cron: "..."  # description`` line, or ``EXPR``: description in the text."""
    from django_bgjobs.cron import definitions

    texts = {name: (REPO_ROOT / name).read_text() for name in ("README.rst", "docs/recurring.rst")}
    texts["django_bgjobs/cron/definitions.py (docstring)"] = definitions.__doc__
    found = []
    for where, text in texts.items():
        for expression, description in re.findall(rf'cron: "({_CRON})"\s*# ([^(\n]+)', text):
            found.append((where, expression, description.strip()))
        flat = " ".join(text.split())
        for expression, description in re.findall(rf"``({_CRON})``: (.+?)(?= \(| \* |[);]|\. |``|$)", flat):
            found.append((where, expression, description.strip()))
    return found


def test_each_documented_cron_example_fires_when_its_description_says():
    # Given: every example the docs give, and a start on a Thursday, three seconds past midnight
    examples = documented_cron_examples()
    start = datetime(2026, 1, 1, 0, 0, 3)

    for where, expression, description in examples:
        assert description in DESCRIBED, f"{where}: {expression!r} has a description this test does not know"
        described, span, step = DESCRIBED[description]
        # When: croniter's firing times over the span
        it, fired = croniter(expression, start), []
        while (tick := it.get_next(datetime)) <= start + span:
            fired.append(tick)
        # Then: exactly the times the description names
        expected, moment = [], start + step - timedelta(seconds=start.second % step.total_seconds())
        while moment <= start + span:
            if described(moment):
                expected.append(moment)
            moment += step
        assert fired == expected, f"{where}: {expression!r} is documented as {description!r}"
    # ... and every file gives examples, and every description above is used
    assert {description for _, _, description in examples} == set(DESCRIBED)
    assert {where for where, _, _ in examples} == {
        "README.rst", "docs/recurring.rst", "django_bgjobs/cron/definitions.py (docstring)",
    }


def test_documented_recurring_job_classes_are_job_names_not_bare_class_names():
    # The YAML examples show a Job's real name (its dotted path by default).
    for name in ("README.rst", "docs/recurring.rst"):
        classes = re.findall(r'^\s*class: "([^"]+)"', (REPO_ROOT / name).read_text(), re.M)
        assert classes and all(re.fullmatch(r"[a-z_]+(\.[a-z_]+)+\.[A-Z]\w*", c) for c in classes), (name, classes)
