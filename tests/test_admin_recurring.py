"""The "Recurring jobs" page (django_bgjobs.admin.recurring) and the Schedule ModelAdmin
(django_bgjobs.admin.schedules)."""

import json

import pytest
from django.urls import reverse

from django_bgjobs import keys
from django_bgjobs.api import CronSet
from django_bgjobs.models import FailedJob
from django_bgjobs.models import Schedule as ScheduleRow
from django_bgjobs.payload import now_s
from django_bgjobs.cron.server import Scheduler
from tests.admin_support import (  # noqa: F401 - fixtures
    client_for,
    messages_of,
    operator,
    operator_client,
    push_at_once,
    viewer_client,
)

pytestmark = pytest.mark.django_db(transaction=True)  # Schedule rows reach Redis when their transaction commits

NOOP = "tests.testapp.jobs.NoopJob"
RECORD = "tests.testapp.jobs.RecordJob"
PAGE = "admin:django_bgjobs_recurring"


@pytest.fixture
def defined(settings, tmp_path):
    """One schedule in settings, one in a YAML file, loaded by a worker's start (``sync``)."""
    schedule_file = tmp_path / "schedule.yml"
    schedule_file.write_text(
        "cleanup_old_records:\n"
        '  cron: "0 2 * * 0"\n'
        f'  class: "{RECORD}"\n'
        "  queue: low\n"
        "  args: [30]\n"
        '  description: "Delete records older than 30 days"\n'
    )
    settings.BGJOBS = {**settings.BGJOBS, "SCHEDULE_FILE": str(schedule_file), "SCHEDULE": {
        "daily_report": {"cron": "0 6 * * *", "class": NOOP, "timezone": "UTC"},
    }}
    Scheduler().sync()


def post(client, name, action, **extra):
    return client.post(reverse(PAGE), {"name": name, "action": action, **extra}, follow=True)


# -- the page ------------------------------------------------------------------------------


def test_page_lists_schedules_from_settings_file_and_database(operator_client, redis, defined):
    # Given: a database row too
    ScheduleRow.objects.create(name="hourly_sync", cron="@hourly", job_class=NOOP, queue="critical")

    # When
    response = operator_client.get(reverse(PAGE))

    # Then
    items = {item["entry"].name: item for item in response.context["items"]}
    assert {name: item["schedule"].source for name, item in items.items()} == {
        "cleanup_old_records": "file", "daily_report": "settings", "hourly_sync": "database",
    }
    assert items["daily_report"]["entry"].description == "At 06:00"
    assert items["daily_report"]["next_run"] % 86400 == 6 * 3600
    page = response.content.decode()
    for text in ["At 06:00", "0 2 * * 0", "Delete records older than 30 days", "[30]", "never", "Enqueue now",
                 "Disable", "NoopJob"]:
        assert text in page, text
    row = ScheduleRow.objects.get(name="hourly_sync")
    assert reverse("admin:django_bgjobs_schedule_change", args=[row.pk]) in page
    assert response.context["not_loaded"] == [] and response.context["errors"] == []


def test_enqueue_now_pushes_a_run_and_the_page_shows_it_as_the_last_one(operator_client, redis, defined):
    # When
    response = post(operator_client, "cleanup_old_records", "enqueue")

    # Then
    [raw] = redis.lrange("queue:low", 0, -1)
    job = json.loads(raw)
    assert job["class"] == RECORD and job["args"] == [30]
    assert messages_of(response) == [f"Enqueued cleanup_old_records now (job {job['jid']})."]
    assert redis.hget("cron:state:cleanup_old_records", "last_jid") == job["jid"]
    page = operator_client.get(reverse(PAGE)).content.decode()
    assert job["jid"] in page and "just now" in page


def test_disable_then_enable_is_kept_in_redis_and_stops_the_scheduler_meanwhile(operator_client, redis, defined):
    # Given
    scheduler = Scheduler()
    start = float(redis.hget("cron:state:daily_report", "last_tick"))

    # When disabled
    response = post(operator_client, "daily_report", "disable")

    # Then
    assert messages_of(response) == ["Disabled daily_report: no worker enqueues it until it is enabled again."]
    assert redis.hget("cron:state:daily_report", "enabled") == "0"
    assert scheduler.enqueue_due(now=start + 2 * 86400) == 0
    page = response.content.decode()
    assert 'value="enable"' in page and "disabled" in page

    # When enabled again
    response = post(operator_client, "daily_report", "enable")

    # Then
    assert messages_of(response) == ["Enabled daily_report: it runs again on its schedule."]
    assert redis.hget("cron:state:daily_report", "enabled") == "1"
    assert messages_of(post(operator_client, "daily_report", "enable")) == ["daily_report was already enabled."]


@pytest.mark.parametrize(("data", "message"), [
    ({"name": "nope", "action": "enqueue"}, "No recurring job is named 'nope' (it may have been removed)."),
    ({"name": "nope", "action": "disable"}, "No recurring job is named 'nope' (it may have been removed)."),
    ({"name": "", "action": "enable"}, "No recurring job is named '' (it may have been removed)."),
    ({"name": "daily_report", "action": "delete"}, "Unknown action 'delete'."),
])
def test_unknown_name_or_action_is_a_message_and_changes_nothing(operator_client, redis, defined, data, message):
    response = operator_client.post(reverse(PAGE), data, follow=True)

    assert response.status_code == 200
    assert messages_of(response) == [message]
    assert redis.hget("cron:state:daily_report", "enabled") is None
    assert redis.llen("queue:default") == 0


def test_enqueue_now_of_a_class_no_longer_registered_is_a_message_not_a_500(operator_client, redis, defined):
    # Given: a stale definition in Redis whose class is gone
    definition = json.loads(redis.hget("cron:schedules", "daily_report"))
    redis.hset("cron:schedules", "daily_report", json.dumps({**definition, "job_name": "gone.Job"}))

    response = post(operator_client, "daily_report", "enqueue")

    assert response.status_code == 200
    assert messages_of(response)[0].startswith("Could not enqueue daily_report:")


def test_viewer_sees_schedules_without_buttons_and_cannot_post(viewer_client, redis, defined):
    page = viewer_client.get(reverse(PAGE)).content.decode()
    response = viewer_client.post(reverse(PAGE), {"name": "daily_report", "action": "disable"})

    assert "daily_report" in page and 'value="enqueue"' not in page
    assert response.status_code == 403
    assert redis.hget("cron:state:daily_report", "enabled") is None


def test_action_needs_the_pages_csrf_token(operator, redis, defined):
    # Given
    client = client_for(operator, enforce_csrf_checks=True)
    data = {"name": "daily_report", "action": "disable"}

    # When / Then: refused without the token
    assert client.post(reverse(PAGE), data).status_code == 403
    assert redis.hget("cron:state:daily_report", "enabled") is None

    # When / Then: accepted with the page's token
    token = client.get(reverse(PAGE)).context["csrf_token"]
    response = client.post(reverse(PAGE), {**data, "csrfmiddlewaretoken": str(token)}, follow=True)
    assert messages_of(response) == ["Disabled daily_report: no worker enqueues it until it is enabled again."]
    assert redis.hget("cron:state:daily_report", "enabled") == "0"


def test_empty_page_says_how_to_define_schedules(operator_client, redis):
    page = operator_client.get(reverse(PAGE)).content.decode()

    assert "No recurring jobs." in page
    assert 'BGJOBS["SCHEDULE"]' in page and 'BGJOBS["SCHEDULE_FILE"]' in page
    assert reverse("admin:django_bgjobs_schedule_changelist") in page


def test_page_names_schedules_defined_but_not_loaded_by_a_worker_yet(operator_client, redis, settings):
    settings.BGJOBS = {**settings.BGJOBS, "SCHEDULE": {"new_one": {"cron": "@daily", "class": NOOP}}}

    response = operator_client.get(reverse(PAGE))

    assert [schedule.name for schedule in response.context["not_loaded"]] == ["new_one"]
    assert "Defined but not loaded yet" in response.content.decode()
    assert redis.hlen("cron:schedules") == 0


def test_last_jid_links_to_its_failure_record_when_the_job_failed(operator_client, redis, defined):
    # Given: its last run died
    post(operator_client, "daily_report", "enqueue")
    jid = redis.hget("cron:state:daily_report", "last_jid")
    FailedJob.objects.create(jid=jid, job_class=NOOP, queue="default")

    # When
    page = operator_client.get(reverse(PAGE)).content.decode()

    # Then
    assert f'{reverse("admin:django_bgjobs_failedjob_changelist")}?q={jid}' in page


# -- the Schedule ModelAdmin -----------------------------------------------------------------


def test_changelist_shows_the_cron_in_words_and_links_to_the_recurring_page(operator_client, redis):
    ScheduleRow.objects.create(name="report", cron="0 6 * * *", job_class=NOOP)

    response = operator_client.get(reverse("admin:django_bgjobs_schedule_changelist"))

    page = response.content.decode()
    assert response.status_code == 200
    assert "At 06:00" in page and "report" in page
    assert reverse(PAGE) in page


def test_add_form_offers_the_registered_jobs_as_choices(operator_client, redis):
    response = operator_client.get(reverse("admin:django_bgjobs_schedule_add"))

    choices = dict(response.context["adminform"].form.fields["job_class"].choices)
    assert NOOP in choices and RECORD in choices
    assert "os.system" not in choices


def test_add_form_hides_internal_jobs_unless_a_job_opts_in(operator_client, redis, monkeypatch):
    # Given: a subclass of an internal job that opts back in (registered for this test only)
    from django_bgjobs import registry
    from django_bgjobs.tasks import TaskJob

    monkeypatch.setattr(registry, "_jobs", dict(registry._jobs))
    type("ScheduledTaskJob", (TaskJob,), {"__module__": "tests.test_admin_recurring", "schedulable": True})

    # When
    response = operator_client.get(reverse("admin:django_bgjobs_schedule_add"))

    # Then: the library's own jobs are not offered, the one that opted in is
    choices = dict(response.context["adminform"].form.fields["job_class"].choices)
    for internal in ("django_bgjobs.BatchCallback", "django_bgjobs.PruneFailedJobs",
                     "django_bgjobs.tasks.TaskJob", "django_bgjobs.tasks.AsyncTaskJob"):
        assert internal not in choices
    assert "tests.test_admin_recurring.ScheduledTaskJob" in choices and NOOP in choices


def test_add_form_refuses_an_internal_job_posted_by_hand(operator_client, redis):
    response = operator_client.post(reverse("admin:django_bgjobs_schedule_add"), {
        "name": "sneaky", "cron": "0 6 * * *", "job_class": "django_bgjobs.BatchCallback", "queue": "",
        "args": "[]", "kwargs": "{}", "enabled": "on", "timezone": "", "description": "",
    })

    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not ScheduleRow.objects.exists()


def test_add_form_refuses_an_invalid_cron_through_the_models_clean(operator_client, redis):
    response = operator_client.post(reverse("admin:django_bgjobs_schedule_add"), {
        "name": "bad", "cron": "0 25 * * *", "job_class": NOOP, "queue": "", "args": "[]", "kwargs": "{}",
        "enabled": "on", "timezone": "", "description": "",
    })

    assert response.status_code == 200
    assert "invalid cron expression" in response.content.decode()
    assert not ScheduleRow.objects.exists()
    assert redis.hlen("cron:schedules") == 0


def test_row_edited_in_the_admin_form_takes_effect_without_a_worker_restart(operator_client, redis):
    # Given: a row, and a worker's scheduler that synced at its start
    row = ScheduleRow.objects.create(name="report", cron="0 6 * * *", job_class=NOOP)
    scheduler = Scheduler()
    scheduler.sync()

    # When: an operator changes it to every second on queue low
    response = operator_client.post(reverse("admin:django_bgjobs_schedule_change", args=[row.pk]), {
        "name": "report", "cron": "* * * * * *", "job_class": RECORD, "queue": "low", "args": "[7]",
        "kwargs": "{}", "enabled": "on", "timezone": "", "description": "",
    })

    # Then: Redis has the new definition and the running scheduler follows it
    assert response.status_code == 302
    definition = json.loads(redis.hget("cron:schedules", "report"))
    assert (definition["cron"], definition["job_name"], definition["queue"]) == ("* * * * * *", RECORD, "low")
    start = float(redis.hget("cron:state:report", "last_tick"))
    assert scheduler.enqueue_due(now=max(start, now_s()) + 2) >= 2
    assert json.loads(redis.lindex("queue:low", 0))["args"] == [7]


def test_unreadable_definitions_are_shown_and_deleted_by_their_exact_name(operator_client, redis, defined):
    # Given: definitions another program left, next to the real ones
    redis.hset(keys.cron_schedules(), mapping={"<b>bad</b>/1": "{not json", "list": "[1]", "deep": "[" * 100_000})
    readable = {entry.name for entry in CronSet().entries()}

    # When
    page = operator_client.get(reverse(PAGE)).content.decode()

    # Then: listed, escaped, with the start of their text
    assert "&lt;b&gt;bad&lt;/b&gt;/1" in page and "{not json" in page and "[[[[" in page
    for name in ("<b>bad</b>/1", "list", "deep"):
        response = operator_client.post(reverse(PAGE), {"action": "delete_unreadable", "name": name}, follow=True)
        assert messages_of(response) == [f"Deleted the unreadable definition {name!r}."]
    assert {entry.name for entry in CronSet().entries()} == readable
    assert CronSet().unreadable() == []


def test_a_readable_definition_is_not_deleted_as_unreadable(operator_client, redis, defined):
    name = CronSet().entries()[0].name

    response = operator_client.post(reverse(PAGE), {"action": "delete_unreadable", "name": name}, follow=True)

    assert messages_of(response) == [f"No unreadable definition is named {name!r} (any more)."]
    assert CronSet().get(name) is not None
