"""The FailedJob ModelAdmin (django_bgjobs.admin.failed_jobs): lists, filters, search, read-only
detail, and the "retry" and "mark resolved" actions.
"""

import datetime
import json

import pytest
from django.urls import reverse
from django.utils import timezone

from django_bgjobs import failures
from django_bgjobs.api import DeadSet
from django_bgjobs.models import FailedJob
from tests.admin_support import (  # noqa: F401 - fixtures
    client_for,
    make_staff,
    messages_of,
    operator,
    operator_client,
    push_at_once,
)

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:django_bgjobs_failedjob_changelist"


def dead_payload(jid, **fields):
    item = {
        "class": "tests.testapp.jobs.RecordJob", "args": [jid, {"n": 1}], "retry": True, "queue": "low",
        "jid": jid, "created_at": 1_700_000_000.0, "retry_count": 3, "error_class": "shop.errors.PaymentDeclined",
        "error_message": f"card of {jid} declined", "error_backtrace": ["Traceback...", "PaymentDeclined"],
        "enqueued_at": 1_700_000_100.0,
    }
    item.update(fields)
    return item


def die(jid, **fields):
    """A job killed into the dead set; the job_died receiver writes its row."""
    DeadSet().kill(dead_payload(jid, **fields), reason="retries exhausted (3 of 3)")
    return FailedJob.objects.get(jid=jid)


def retry(client, *rows):
    return client.post(reverse(CHANGELIST), {
        "action": "retry_jobs", "_selected_action": [row.pk for row in rows],
    }, follow=True)


def queued(redis, name="low"):
    return [json.loads(raw) for raw in redis.lrange(f"queue:{name}", 0, -1)]


# -- the list -------------------------------------------------------------------------------


def test_changelist_shows_rows_newest_first_with_their_error(operator_client):
    # Given
    die("aaa")
    die("bbb")

    # When
    response = operator_client.get(reverse(CHANGELIST))

    # Then
    rows = list(response.context["cl"].result_list)
    assert [row.jid for row in rows] == ["bbb", "aaa"]
    page = response.content.decode()
    assert "<strong>PaymentDeclined</strong> card of bbb declined" in page
    assert 'class="bgjobs-nav"' in page


def test_changelist_filters_by_class_queue_error_class_and_status(operator_client):
    # Given
    die("one")
    die("two", **{"class": "shop.jobs.Other", "queue": "default", "error_class": "KeyError"})
    FailedJob.objects.filter(jid="one").update(resolved_at=timezone.now())

    def listed(**query):
        return [row.jid for row in operator_client.get(reverse(CHANGELIST), query).context["cl"].result_list]

    # Then
    assert listed(job_class="shop.jobs.Other") == ["two"]
    assert listed(queue="low") == ["one"]
    assert listed(error_class="KeyError") == ["two"]
    assert listed(status="resolved") == ["one"]
    assert listed(status="open") == ["two"]


@pytest.mark.parametrize(("query", "found"), [
    ("bbb", ["bbb"]), ("shop.errors.PaymentDeclined", ["bbb", "aaa"]), ("card of aaa", ["aaa"]),
    ("RecordJob", ["bbb", "aaa"]), ("nothing-like-this", []),
])
def test_changelist_search_looks_at_jid_class_error_class_and_message(operator_client, query, found):
    die("aaa")
    die("bbb")

    response = operator_client.get(reverse(CHANGELIST), {"q": query})

    assert [row.jid for row in response.context["cl"].result_list] == found


def test_detail_page_is_read_only_and_shows_arguments_and_backtrace(operator_client):
    row = die("ccc")

    response = operator_client.get(reverse("admin:django_bgjobs_failedjob_change", args=[row.pk]))

    page = response.content.decode()
    assert response.status_code == 200
    assert 'name="_save"' not in page
    assert "PaymentDeclined" in page and "Traceback..." in page
    assert "&quot;n&quot;: 1" in page


def test_rows_cannot_be_added_by_hand(operator_client):
    assert operator_client.get(reverse("admin:django_bgjobs_failedjob_add")).status_code == 403


# -- retry ----------------------------------------------------------------------------------


def test_retry_moves_the_job_out_of_the_dead_set_when_it_is_still_there(operator_client, redis):
    # Given
    row = die("ddd")

    # When
    response = retry(operator_client, row)

    # Then: moved, not copied (it runs once), with one retry given back as a dead-set retry does
    assert messages_of(response) == ["Enqueued 1 job again (1 moved from the dead set)."]
    assert redis.zcard("dead") == 0
    (job,) = queued(redis)
    assert (job["jid"], job["args"], job["retry_count"]) == ("ddd", ["ddd", {"n": 1}], 2)
    row.refresh_from_db()
    assert row.retried_at is not None and row.status == "retried"


def test_retry_pushes_the_stored_payload_when_the_dead_set_forgot_the_job(operator_client, redis):
    # Given: the dead entry was trimmed away
    row = die("eee")
    redis.delete("dead")

    # When
    response = retry(operator_client, row)

    # Then
    assert messages_of(response) == ["Enqueued 1 job again (1 pushed again from the stored payload)."]
    (job,) = queued(redis)
    assert (job["jid"], job["class"], job["args"], job["retry_count"]) == (
        "eee", "tests.testapp.jobs.RecordJob", ["eee", {"n": 1}], 2,
    )
    assert "dead_reason" not in job
    assert redis.sismember("queues", "low")


def test_retry_skips_a_row_already_retried_so_a_double_click_runs_nothing_twice(operator_client, redis):
    row = die("fff")
    retry(operator_client, row)

    response = retry(operator_client, row)

    assert len(messages_of(response)) == 1
    assert messages_of(response)[0].startswith("Not retried: fff was already retried")
    assert len(queued(redis)) == 1


def test_retry_refuses_an_unreadable_payload(operator_client, redis):
    row = FailedJob.objects.create(jid="ggg", job_class="django_bgjobs.UnreadablePayload", queue="default",
                                   payload={"class": "django_bgjobs.UnreadablePayload", "original_payload": "{x"})

    response = retry(operator_client, row)

    assert messages_of(response) == ["Not retried: ggg has no readable payload to run."]
    assert redis.llen("queue:default") == 0


def test_retry_finds_the_dead_entry_by_its_score_near_the_rows_failure_time(operator_client, redis):
    # Given: a row whose entry died long ago (its score is near its failed_at, not now)
    died = timezone.now() - datetime.timedelta(days=3)
    DeadSet().kill(dead_payload("hhh"), now=died.timestamp())
    row = FailedJob.objects.get(jid="hhh")
    FailedJob.objects.filter(pk=row.pk).update(failed_at=died)

    # When
    response = retry(operator_client, row)

    # Then
    assert messages_of(response) == ["Enqueued 1 job again (1 moved from the dead set)."]
    assert redis.zcard("dead") == 0


def test_retry_needs_the_change_permission(redis):
    # Given: staff who may only look at failure records
    row = die("iii")
    viewer = client_for(make_staff("viewer", ["view_failedjob"]))

    # When
    response = retry(viewer, row)

    # Then: Django's admin offers no such action to them
    assert response.status_code == 200
    assert redis.zcard("dead") == 1
    assert FailedJob.objects.get().retried_at is None


def test_mark_resolved_sets_the_time_on_open_rows(operator_client):
    row = die("jjj")

    response = operator_client.post(reverse(CHANGELIST), {
        "action": "mark_resolved", "_selected_action": [row.pk],
    }, follow=True)

    assert messages_of(response) == ["Marked 1 failed job as resolved."]
    row.refresh_from_db()
    assert row.status == "resolved"


def test_row_fields_keep_the_payloads_error_when_killed_by_hand():
    fields = failures.row_fields(dead_payload("kkk"), None, "killed")

    assert (fields["error_class"], fields["error_message"], fields["reason"]) == (
        "shop.errors.PaymentDeclined", "card of kkk declined", "killed",
    )
