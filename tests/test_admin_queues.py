"""Queue pages (django_bgjobs.admin.queues): the list, one queue's jobs, one job, and their actions."""

import pytest
from django.urls import reverse

from django_bgjobs import keys
from django_bgjobs.api import Queue
from tests.admin_support import (  # noqa: F401 - fixtures
    messages_of,
    operator,
    operator_client,
    push_at_once,
    register_process,
)
from tests.testapp.jobs import RecordJob

pytestmark = pytest.mark.django_db


def queue_url(name="default"):
    return reverse("admin:django_bgjobs_queue", args=[name])


def test_queues_page_lists_every_queue_with_size_and_state(operator_client):
    # Given
    RecordJob.perform_bulk([(1,), (2,)])
    RecordJob.set(queue="reports").perform_later(3)
    Queue("low").pause()

    # When
    rows = operator_client.get(reverse("admin:django_bgjobs_queues")).context["queues"]

    # Then: pushed-to and configured queues, by name
    assert [(row["name"], row["size"], row["paused"]) for row in rows] == [
        ("critical", 0, False), ("default", 2, False), ("low", 0, True), ("reports", 1, False),
    ]


def test_queues_page_marks_each_queue_no_live_process_serves(operator_client, redis):
    # Given: live processes serving critical and default (and low, but that one is quiet), one
    # whose heartbeat expired serving reports, and a job waiting in reports
    register_process(redis, "host-1:1:aaaaaaaaaaaa", queues=["critical"])
    register_process(redis, "host-1:2:bbbbbbbbbbbb", queues=["default", "critical"])
    register_process(redis, "host-1:3:cccccccccccc", queues=["low"], quiet=True)
    register_process(redis, "host-1:4:dddddddddddd", queues=["reports"], alive=False)
    RecordJob.set(queue="reports").perform_later(3)

    # When
    response = operator_client.get(reverse("admin:django_bgjobs_queues"))

    # Then
    rows = response.context["queues"]
    assert [(row["name"], row["unserved"]) for row in rows] == [
        ("critical", False), ("default", False), ("low", True), ("reports", True),
    ]
    page = response.content.decode()
    states = {name: page.split(f">{name}</a>")[1].split("</tr>")[0] for name in ("default", "low", "reports")}
    assert "no process serves this queue" in states["reports"] and "running" not in states["reports"]
    assert "no process serves this queue" in states["low"]
    assert "no process serves this queue" not in states["default"] and "running" in states["default"]


def test_queue_page_lists_newest_first_in_pages_of_25(operator_client):
    # Given: 30 jobs, enqueued in order 0..29
    handles = RecordJob.perform_bulk([(n,) for n in range(30)])
    jids = [h.jid for h in handles]

    # When
    first = operator_client.get(queue_url())
    second = operator_client.get(queue_url(), {"page": 2})

    # Then
    assert [job.jid for job in first.context["jobs"]] == jids[::-1][:25]
    assert [job.jid for job in second.context["jobs"]] == jids[::-1][25:]
    assert "Page 2 of 2" in second.content.decode()


def test_queue_page_lists_oldest_first_when_asked(operator_client):
    handles = RecordJob.perform_bulk([(n,) for n in range(30)])

    response = operator_client.get(queue_url(), {"order": "oldest", "page": 2})

    assert [job.jid for job in response.context["jobs"]] == [h.jid for h in handles][25:]
    assert response.context["pagination"].next_url is not None
    assert "order=oldest" in response.context["pagination"].first_url


@pytest.mark.parametrize("query", [{"order": "random"}, {"page": "x"}])
def test_queue_page_is_404_for_a_bad_order_or_page(operator_client, query):
    assert operator_client.get(queue_url(), query).status_code == 404


def test_queue_page_is_404_for_a_name_no_queue_can_have(operator_client):
    assert operator_client.get(reverse("admin:django_bgjobs_queue", args=["no spaces!"])).status_code == 404


def test_empty_queue_says_what_would_appear(operator_client):
    page = operator_client.get(queue_url("low")).content.decode()

    assert "Queue low is empty." in page
    assert "wait here until a worker takes them" in page


def test_long_arguments_are_cut_in_the_list_and_whole_on_the_job_page(operator_client):
    # Given
    long_text = "x" * 500
    handle = RecordJob.perform_later(long_text)

    # When
    listed = operator_client.get(queue_url()).context["jobs"][0]
    detail = operator_client.get(reverse("admin:django_bgjobs_queue_job", args=["default", handle.jid]))

    # Then
    assert len(listed.display_args) == 120 and listed.display_args.endswith("…")
    assert long_text in detail.content.decode()


def test_job_page_is_404_when_the_job_is_not_in_the_queue(operator_client):
    response = operator_client.get(reverse("admin:django_bgjobs_queue_job", args=["default", "f" * 24]))

    assert response.status_code == 404


def test_deleting_one_job_removes_only_that_job_and_says_so(operator_client, redis):
    # Given
    keep, drop = RecordJob.perform_bulk([(1,), (2,)])

    # When
    response = operator_client.post(queue_url(), {"action": "delete", "jid": drop.jid}, follow=True)

    # Then
    assert messages_of(response) == [f"Deleted job {drop.jid} from queue default."]
    assert [job.jid for job in Queue("default").page()] == [keep.jid]


def test_deleting_a_job_a_worker_already_took_warns_and_changes_nothing(operator_client, redis):
    RecordJob.perform_later(1)

    response = operator_client.post(queue_url(), {"action": "delete", "jid": "0" * 24}, follow=True)

    assert messages_of(response) == [
        f"Job {'0' * 24} is not in queue default any more (a worker may have taken it)."
    ]
    assert redis.llen("queue:default") == 1


def test_pause_and_resume_toggle_the_paused_set_with_a_message_each(operator_client, redis):
    # When
    paused = operator_client.post(queue_url("low"), {"action": "pause"}, follow=True)

    # Then
    assert redis.smembers(keys.paused()) == {"low"}
    assert messages_of(paused) == ["Paused queue low: workers skip it until it is resumed."]
    assert paused.context["paused"] is True

    resumed = operator_client.post(queue_url("low"), {"action": "resume"}, follow=True)
    assert redis.smembers(keys.paused()) == set()
    assert messages_of(resumed) == ["Resumed queue low."]


def test_action_returns_to_the_page_it_came_from_when_next_is_on_this_site(operator_client):
    back = reverse("admin:django_bgjobs_queues")

    response = operator_client.post(queue_url("low"), {"action": "pause", "next": back})

    assert response["Location"] == back


def test_action_ignores_a_next_url_on_another_site(operator_client):
    response = operator_client.post(queue_url("low"), {"action": "pause", "next": "https://evil.example/"})

    assert response["Location"] == queue_url("low")


def test_unknown_queue_action_changes_nothing_and_says_so(operator_client, redis):
    response = operator_client.post(queue_url(), {"action": "explode"}, follow=True)

    assert messages_of(response) == ["Unknown action 'explode'."]
    assert redis.smembers(keys.paused()) == set()


def test_clear_page_asks_first_and_writes_nothing(operator_client, redis):
    # Given
    RecordJob.perform_bulk([(n,) for n in range(3)])

    # When
    response = operator_client.get(reverse("admin:django_bgjobs_queue_clear", args=["default"]))

    # Then
    assert "Delete all 3 jobs waiting in queue default?" in response.content.decode()
    assert redis.llen("queue:default") == 3


def test_confirmed_clear_deletes_every_job_of_that_queue_only(operator_client, redis):
    # Given
    RecordJob.perform_bulk([(n,) for n in range(3)])
    RecordJob.set(queue="low").perform_later("stays")

    # When
    response = operator_client.post(reverse("admin:django_bgjobs_queue_clear", args=["default"]), follow=True)

    # Then
    assert messages_of(response) == ["Cleared queue default: deleted 3 jobs."]
    assert redis.llen("queue:default") == 0
    assert redis.llen("queue:low") == 1


def test_clearing_a_queue_key_of_the_wrong_type_gives_a_message_not_a_500_and_changes_nothing(operator_client, redis):
    redis.set("queue:broken", "not a list")

    response = operator_client.post(reverse("admin:django_bgjobs_queue_clear", args=["broken"]))
    after = operator_client.get(reverse("admin:django_bgjobs_queues"))

    assert response.status_code == 302
    assert messages_of(after) == ["cannot clear 'queue:broken': it holds a string, not a list; nothing was changed"]
    assert redis.get("queue:broken") == "not a list"


def test_clear_page_of_an_empty_queue_says_there_is_nothing_to_do(operator_client):
    page = operator_client.get(reverse("admin:django_bgjobs_queue_clear", args=["low"])).content.decode()

    assert "There is nothing to do: the list is empty." in page
    assert "Yes, delete" not in page


def test_a_queue_name_whose_key_holds_a_hash_is_shown_unreadable_on_the_queues_page_and_dashboard(
    operator_client, redis,
):
    # Given: a name in the queues set whose key is another program's hash, and a name no URL holds
    RecordJob.perform_later(1)
    redis.sadd(keys.queues(), "hashq", "a/b")
    redis.hset(keys.queue("hashq"), "a", "b")

    # When
    queues = operator_client.get(reverse("admin:django_bgjobs_queues"))
    dashboard = operator_client.get(reverse("admin:django_bgjobs_dashboard_changelist"))

    # Then
    assert queues.status_code == dashboard.status_code == 200
    rows = {row["name"]: row for row in queues.context["queues"]}
    assert rows["hashq"]["problem"] == "its key 'queue:hashq' holds a hash, not a list"
    assert rows["a/b"]["problem"] == "not a valid queue name"
    assert rows["default"]["problem"] is None and rows["default"]["size"] == 1
    assert [row["name"] for row in dashboard.context["queues"] if row["problem"]] == ["a/b", "hashq"]
