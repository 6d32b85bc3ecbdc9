"""Scheduled, Retries and Dead pages (django_bgjobs.admin.sets): lists paged in Redis, search,
the detail page, and every action's effect on Redis.
"""

import json
import time

import pytest
from django.urls import reverse

from django_bgjobs.admin.sets import entry_token
from django_bgjobs.api import DeadSet, RetrySet, ScheduledSet
from django_bgjobs.models import FailedJob
from django_bgjobs.payload import dumps
from tests.admin_support import (  # noqa: F401 - fixtures
    failed_payload,
    fill_set,
    jids_on_page,
    messages_of,
    operator,
    operator_client,
    payload,
    push_at_once,
)

pytestmark = pytest.mark.django_db

KEYS = {"scheduled": "schedule", "retries": "retry", "dead": "dead"}
ONE_SECOND = 1.0


def url(kind, suffix="", *args):
    return reverse(f"admin:django_bgjobs_{kind}{suffix}", args=args)


def entries(redis, key):
    return [json.loads(raw) for raw in redis.zrange(key, 0, -1)]


def queued(redis, name="default"):
    return [json.loads(raw) for raw in redis.lrange(f"queue:{name}", 0, -1)]


# -- lists ----------------------------------------------------------------------------------


def test_dead_page_lists_latest_deaths_first_in_pages_of_25(operator_client, redis):
    fill_set(redis, "dead", 30)

    first = operator_client.get(url("dead"))
    second = operator_client.get(url("dead"), {"page": 2})

    assert jids_on_page(first) == [f"{n:024x}" for n in range(29, 4, -1)]
    assert jids_on_page(second) == [f"{n:024x}" for n in range(4, -1, -1)]


@pytest.mark.parametrize("kind", ["retries", "scheduled"])
def test_retries_and_scheduled_pages_list_the_soonest_first(operator_client, redis, kind):
    fill_set(redis, KEYS[kind], 3)

    assert jids_on_page(operator_client.get(url(kind))) == [f"{n:024x}" for n in range(3)]


@pytest.mark.parametrize(("kind", "text"), [
    ("scheduled", "No scheduled jobs."), ("retries", "No retries."), ("dead", "No dead jobs."),
])
def test_empty_set_page_says_what_would_appear_there(operator_client, kind, text):
    page = operator_client.get(url(kind)).content.decode()

    assert text in page
    assert "Retry all" not in page


def test_dead_page_renders_in_under_a_second_when_the_dead_set_holds_100000_jobs(operator_client, redis):
    # Given
    fill_set(redis, "dead", 100_000)
    operator_client.get(url("dead"))  # warm up: template loading, the session

    # When: the first page, a middle one, the last one
    timings = {}
    for page in (1, 2000, 4000):
        started = time.perf_counter()
        response = operator_client.get(url("dead"), {"page": page})
        timings[page] = time.perf_counter() - started
        assert response.status_code == 200
        assert len(response.context["entries"]) == 25

    # Then
    print(f"dead page with 100,000 entries: {', '.join(f'page {p} {t * 1000:.0f} ms' for p, t in timings.items())}")
    assert max(timings.values()) < ONE_SECOND
    assert response.context["pagination"].num_pages == 4000
    assert jids_on_page(response)[-1] == f"{0:024x}"


# -- search ---------------------------------------------------------------------------------


def test_search_finds_entries_by_class_jid_or_error_text(operator_client, redis):
    # Given
    fill_set(redis, "dead", 5)
    redis.zadd("dead", {dumps(failed_payload(99, **{"class": "shop.jobs.SyncCart"})): 1})

    # When / Then
    assert jids_on_page(operator_client.get(url("dead"), {"q": "shop.jobs.Sync"})) == [f"{99:024x}"]
    assert jids_on_page(operator_client.get(url("dead"), {"q": f"{3:024x}"})) == [f"{3:024x}"]
    assert len(jids_on_page(operator_client.get(url("dead"), {"q": "failure number"}))) == 6
    assert jids_on_page(operator_client.get(url("dead"), {"q": "failure number 4"})) == [f"{4:024x}"]


def test_search_treats_glob_characters_literally(operator_client, redis):
    fill_set(redis, "dead", 3)

    response = operator_client.get(url("dead"), {"q": "*"})

    assert jids_on_page(response) == []
    assert "Nothing in dead jobs contains “*”." in response.content.decode()


def test_search_results_are_capped_and_say_so(operator_client, redis, monkeypatch):
    from django_bgjobs.admin import sets

    monkeypatch.setattr(sets, "MAX_SEARCH_RESULTS", 10)
    fill_set(redis, "dead", 30)

    response = operator_client.get(url("dead"), {"q": "failure"})

    assert response.context["pagination"].total == 10
    assert "showing the first 10 matches" in response.content.decode()


# -- the detail page ------------------------------------------------------------------------


def test_job_page_shows_the_whole_payload_and_backtrace(operator_client, redis):
    # Given
    item = failed_payload(7, args=["y" * 400], dead_reason="retries exhausted (2 of 2)")
    redis.zadd("dead", {dumps(item): 1_700_000_007})

    # When
    with_hint = operator_client.get(url("dead", "_job", item["jid"]), {"at": "1700000007.0"})
    without_hint = operator_client.get(url("dead", "_job", item["jid"]))

    # Then
    page = with_hint.content.decode()
    assert "y" * 400 in page
    assert "JobFailure: 7" in page
    assert "retries exhausted (2 of 2)" in page
    assert without_hint.context["job"].raw == with_hint.context["job"].raw


@pytest.mark.parametrize("query", [{}, {"at": "1700000001.0"}])
def test_job_page_is_404_for_a_jid_not_in_the_set(operator_client, redis, query):
    fill_set(redis, "dead", 3)

    assert operator_client.get(url("dead", "_job", "f" * 24), query).status_code == 404


def test_job_page_is_404_for_a_score_that_is_not_a_number(operator_client, redis):
    fill_set(redis, "dead", 1)

    assert operator_client.get(url("dead", "_job", f"{0:024x}"), {"at": "soon"}).status_code == 404


def test_unreadable_entry_is_listed_shown_raw_and_can_be_deleted_but_not_retried(operator_client, redis):
    # Given: a member that is not JSON (left by some other tool)
    redis.zadd("dead", {"{not json": 5})
    (entry,) = DeadSet().page()

    # When
    listed = operator_client.get(url("dead")).content.decode()
    retried = operator_client.post(url("dead"), {"row_action": f"retry {entry_token(entry)}"}, follow=True)

    # Then
    assert "unreadable payload" in listed
    assert messages_of(retried)[0].startswith("Cannot retry now a job whose payload does not parse")
    assert redis.zcard("dead") == 1

    deleted = operator_client.post(url("dead"), {"row_action": f"delete {entry_token(entry)}"}, follow=True)
    assert messages_of(deleted) == ["Deleted 1 job."]
    assert redis.zcard("dead") == 0


# -- actions on one or on selected entries ---------------------------------------------------


def test_retry_now_on_a_dead_row_moves_it_to_its_queue_and_marks_its_failure_record(operator_client, redis):
    # Given
    fill_set(redis, "dead", 3)
    entry = DeadSet().page()[1]
    FailedJob.objects.create(jid=entry.jid, job_class=entry.klass, queue="default")

    # When
    response = operator_client.post(url("dead"), {"row_action": f"retry {entry_token(entry)}"}, follow=True)

    # Then
    assert messages_of(response) == ["Retried 1 job."]
    assert [e["jid"] for e in entries(redis, "dead")] == [f"{0:024x}", f"{2:024x}"]
    (job,) = queued(redis)
    assert (job["jid"], job["retry_count"], job["args"]) == (entry.jid, 1, [1])
    assert FailedJob.objects.get().retried_at is not None


def test_selected_dead_rows_are_deleted_and_the_others_stay(operator_client, redis):
    # Given
    fill_set(redis, "dead", 4)
    tokens = [entry_token(e) for e in DeadSet().page() if e.jid in (f"{1:024x}", f"{3:024x}")]

    # When
    response = operator_client.post(url("dead"), {"action": "delete", "selected": tokens}, follow=True)

    # Then
    assert messages_of(response) == ["Deleted 2 jobs."]
    assert [e["jid"] for e in entries(redis, "dead")] == [f"{0:024x}", f"{2:024x}"]


def test_selected_retries_are_killed_into_the_dead_set_with_who_killed_them(operator_client, redis):
    # Given
    fill_set(redis, "retry", 3)
    tokens = [entry_token(e) for e in RetrySet().page()[:2]]

    # When
    response = operator_client.post(url("retries"), {"action": "kill", "selected": tokens}, follow=True)

    # Then
    assert messages_of(response) == ["Killed 2 jobs."]
    assert redis.zcard("retry") == 1
    dead = entries(redis, "dead")
    assert sorted(e["jid"] for e in dead) == [f"{0:024x}", f"{1:024x}"]
    assert {e["dead_reason"] for e in dead} == {"killed from the admin by operator"}
    assert FailedJob.objects.filter(reason="killed from the admin by operator").count() == 2


def test_selected_retries_are_retried_now(operator_client, redis):
    fill_set(redis, "retry", 2)
    tokens = [entry_token(e) for e in RetrySet().page()]

    response = operator_client.post(url("retries"), {"action": "retry", "selected": tokens}, follow=True)

    assert messages_of(response) == ["Retried 2 jobs."]
    assert redis.zcard("retry") == 0
    assert sorted(job["jid"] for job in queued(redis)) == [f"{0:024x}", f"{1:024x}"]


def test_scheduled_row_is_added_to_its_queue_now_with_its_retry_count_untouched(operator_client, redis):
    # Given
    fill_set(redis, "schedule", 2, make=payload, queue="low", retry_count=3)
    entry = ScheduledSet().page()[0]

    # When
    response = operator_client.post(url("scheduled"), {"row_action": f"add_to_queue {entry_token(entry)}"},
                                    follow=True)

    # Then
    assert messages_of(response) == ["Enqueued 1 job."]
    (job,) = queued(redis, "low")
    assert (job["jid"], job["retry_count"]) == (entry.jid, 3)
    assert redis.zcard("schedule") == 1


def test_stale_selection_warns_that_the_job_is_gone(operator_client, redis):
    # Given: a token for a job a worker has since moved
    fill_set(redis, "retry", 1)
    token = entry_token(RetrySet().page()[0])
    redis.delete("retry")

    # When
    response = operator_client.post(url("retries"), {"action": "retry", "selected": [token]}, follow=True)

    # Then
    assert messages_of(response) == ["1 job was no longer in retries (moved, run or deleted meanwhile)."]
    assert queued(redis) == []


def test_selection_finds_the_job_by_jid_when_its_score_changed(operator_client, redis):
    # Given: the token's score is out of date
    fill_set(redis, "dead", 1)
    jid = f"{0:024x}"

    # When
    response = operator_client.post(url("dead"), {"action": "delete", "selected": [f"1.5:{jid}"]}, follow=True)

    # Then
    assert messages_of(response) == ["Deleted 1 job."]
    assert redis.zcard("dead") == 0


@pytest.mark.parametrize("token", ["garbage", "x:y", ""])
def test_malformed_selection_is_a_warning_not_an_error(operator_client, redis, token):
    fill_set(redis, "dead", 1)

    response = operator_client.post(url("dead"), {"action": "delete", "selected": [token]}, follow=True)

    assert response.status_code == 200
    assert redis.zcard("dead") == 1
    assert messages_of(response)


def test_action_without_a_selection_changes_nothing_and_says_so(operator_client, redis):
    fill_set(redis, "dead", 1)

    response = operator_client.post(url("dead"), {"action": "delete"}, follow=True)

    assert messages_of(response) == ["Select at least one job first: nothing was changed."]
    assert redis.zcard("dead") == 1


def test_action_a_set_does_not_offer_is_refused(operator_client, redis):
    # Given: the dead set has no "kill"
    fill_set(redis, "dead", 1)
    token = entry_token(DeadSet().page()[0])

    # When
    response = operator_client.post(url("dead"), {"action": "kill", "selected": [token]}, follow=True)

    # Then
    assert messages_of(response) == ["Dead jobs: unknown action 'kill'."]
    assert redis.zcard("dead") == 1


def test_action_from_the_detail_page_returns_to_the_list(operator_client, redis):
    fill_set(redis, "dead", 1)
    entry = DeadSet().page()[0]

    response = operator_client.post(url("dead"), {"row_action": f"delete {entry_token(entry)}",
                                                  "next": url("dead")})

    assert response["Location"] == url("dead")


# -- actions on every entry -----------------------------------------------------------------


@pytest.mark.parametrize(("kind", "action", "question"), [
    ("dead", "retry", "Move all 3 dead jobs to their queues to run now?"),
    ("dead", "delete", "Delete all 3 dead jobs?"),
    ("retries", "kill", "Move all 3 retries to the dead set?"),
    ("scheduled", "add_to_queue", "Move all 3 scheduled jobs to their queues to run now, ahead of their time?"),
])
def test_bulk_action_asks_first_and_writes_nothing(operator_client, redis, kind, action, question):
    fill_set(redis, KEYS[kind], 3)

    response = operator_client.get(url(kind, "_all", action))

    assert question in response.content.decode()
    assert redis.zcard(KEYS[kind]) == 3


def test_retry_all_moves_every_dead_job_to_its_queue_and_marks_their_records(operator_client, redis):
    # Given
    fill_set(redis, "dead", 30)
    FailedJob.objects.create(jid=f"{7:024x}", job_class="X", queue="default")

    # When
    response = operator_client.post(url("dead", "_all", "retry"), follow=True)

    # Then
    assert messages_of(response) == ["Retried 30 jobs."]
    assert redis.zcard("dead") == 0
    assert redis.llen("queue:default") == 30
    assert FailedJob.objects.get().retried_at is not None


def test_delete_all_empties_the_set(operator_client, redis):
    fill_set(redis, "retry", 5)

    response = operator_client.post(url("retries", "_all", "delete"), follow=True)

    assert messages_of(response) == ["Deleted 5 jobs."]
    assert redis.zcard("retry") == 0


def test_kill_all_moves_every_retry_to_the_dead_set(operator_client, redis):
    fill_set(redis, "retry", 4)

    response = operator_client.post(url("retries", "_all", "kill"), follow=True)

    assert messages_of(response) == ["Killed 4 jobs."]
    assert (redis.zcard("retry"), redis.zcard("dead")) == (0, 4)


def test_enqueue_all_moves_every_scheduled_job_to_its_queue(operator_client, redis):
    fill_set(redis, "schedule", 4, make=payload)

    response = operator_client.post(url("scheduled", "_all", "add_to_queue"), follow=True)

    assert messages_of(response) == ["Enqueued 4 jobs."]
    assert (redis.zcard("schedule"), redis.llen("queue:default")) == (0, 4)


@pytest.mark.parametrize("method", ["get", "post"])
def test_bulk_action_a_set_does_not_offer_is_404(operator_client, redis, method):
    fill_set(redis, "dead", 1)

    response = getattr(operator_client, method)(url("dead", "_all", "kill"))

    assert response.status_code == 404
    assert redis.zcard("dead") == 1
