"""The batches and unique-locks pages (django_bgjobs.admin.batches, django_bgjobs.admin.locks)."""

import pytest
from django.urls import reverse

from django_bgjobs import Batch
from django_bgjobs.batches.client import _run
from tests.admin_support import (  # noqa: F401 - fixtures
    messages_of,
    operator,
    operator_client,
    push_at_once,
    viewer_client,
)
from tests.testapp.jobs import RecordJob
from tests.testapp.unique_batch_jobs import RecordingCallback, UntilExecutedJob

pytestmark = pytest.mark.django_db


def make_batch(description, n):
    batch = Batch(description=description).on("success", RecordingCallback)
    with batch.jobs():
        jids = [h.jid for h in RecordJob.perform_bulk([(i,) for i in range(n)])]
    return batch, jids


# -- batches -----------------------------------------------------------------------------------


def test_batches_page_lists_batches_newest_first_with_their_progress(operator_client, redis):
    # Given
    older, older_jids = make_batch("older", 4)
    newer, newer_jids = make_batch("newer", 2)
    _run("success", older.bid, [older_jids[0]])
    _run("failure", older.bid, [older_jids[1], '{"error_class": "JobFailure", "error_message": "boom"}'])
    for jid in newer_jids:
        _run("success", newer.bid, [jid])

    # When
    response = operator_client.get(reverse("admin:django_bgjobs_batches"))

    # Then
    assert [(b.description, b.done, b.total, b.failures, b.success) for b in response.context["batches"]] == [
        ("newer", 2, 2, 0, True), ("older", 1, 4, 1, False),
    ]
    page = response.content.decode()
    assert reverse("admin:django_bgjobs_batch", args=[older.bid]) in page
    assert "succeeded" in page


def test_batch_page_shows_its_failed_jobs_with_their_errors(operator_client, redis):
    # Given
    batch, jids = make_batch("with failures", 3)
    _run("failure", batch.bid, [jids[0], '{"class": "tests.testapp.jobs.RecordJob", "error_class": '
                                         '"tests.testapp.jobs.JobFailure", "error_message": "boom", "retry_count": 0}'])
    _run("dead", batch.bid, [jids[1], '{"error_class": "ValueError", "error_message": "bad"}'])

    # When
    response = operator_client.get(reverse("admin:django_bgjobs_batch", args=[batch.bid]))

    # Then
    assert response.status_code == 200
    assert {(f["jid"], f["dead"]) for f in response.context["failed"]} == {(jids[0], False), (jids[1], True)}
    page = response.content.decode()
    assert "boom" in page and "bad" in page
    assert reverse("admin:django_bgjobs_dead_job", args=[jids[1]]) in page
    assert "with failures" in page


@pytest.mark.parametrize("bid", ["nosuchbatch", "bad*bid"])
def test_batch_page_is_404_for_an_unknown_or_malformed_batch(operator_client, redis, bid):
    assert operator_client.get(reverse("admin:django_bgjobs_batch", args=[bid])).status_code == 404


def test_batches_page_says_how_to_make_one_when_there_is_none(operator_client, redis):
    assert "No batches." in operator_client.get(reverse("admin:django_bgjobs_batches")).content.decode()


# -- unique locks ----------------------------------------------------------------------------------


def test_locks_page_lists_held_locks_and_release_frees_one(operator_client, redis):
    # Given
    handle = UntilExecutedJob.perform_later("report")
    UntilExecutedJob.perform_later("other")
    [key] = [k for k in redis.keys("unique:*") if redis.hget(k, "jid") == handle.jid]

    # When
    response = operator_client.get(reverse("admin:django_bgjobs_locks"))

    # Then
    locks = response.context["locks"]
    assert len(locks) == 2 and handle.jid in {lock.jid for lock in locks}
    assert all(lock.klass == UntilExecutedJob.name for lock in locks)
    assert 'value="release"' in response.content.decode()

    # When
    response = operator_client.post(reverse("admin:django_bgjobs_locks"), {"action": "release", "key": key},
                                    follow=True)

    # Then
    assert messages_of(response) == [f"Released {key}: an equal job may now be enqueued or started."]
    assert redis.exists(key) == 0
    assert UntilExecutedJob.perform_later("report") is not None


def test_locks_page_filters_by_class(operator_client, redis):
    UntilExecutedJob.perform_later("report")

    shown = operator_client.get(reverse("admin:django_bgjobs_locks"), {"class": UntilExecutedJob.name})
    none = operator_client.get(reverse("admin:django_bgjobs_locks"), {"class": "other.Job"})

    assert len(shown.context["locks"]) == 1
    assert none.context["locks"] == []
    assert "No lock is held by a other.Job job." in none.content.decode()


@pytest.mark.parametrize(("data", "message"), [
    ({"action": "release", "key": "queue:default"}, "'queue:default' is not a unique-job lock."),
    ({"action": "delete", "key": "unique:abc"}, "Unknown action 'delete'."),
    ({"action": "release", "key": "unique:0123abcd"}, "unique:0123abcd was not held any more (its job ended, or it expired)."),
])
def test_release_refuses_what_is_not_a_held_lock(operator_client, redis, data, message):
    RecordJob.perform_later(1)

    response = operator_client.post(reverse("admin:django_bgjobs_locks"), data, follow=True)

    assert messages_of(response) == [message]
    assert redis.llen("queue:default") == 1


def test_viewer_sees_locks_without_the_release_button_and_cannot_post(viewer_client, redis):
    UntilExecutedJob.perform_later("report")
    [key] = redis.keys("unique:*")

    page = viewer_client.get(reverse("admin:django_bgjobs_locks")).content.decode()
    response = viewer_client.post(reverse("admin:django_bgjobs_locks"), {"action": "release", "key": key})

    assert 'value="release"' not in page
    assert response.status_code == 403
    assert redis.exists(key) == 1
