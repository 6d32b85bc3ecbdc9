"""What every job page shares (django_bgjobs.admin.base): who may open it, CSRF on every change,
reads that never write, page numbers, and a clear page when Redis is down.
"""

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from django_bgjobs import conf, connection
from django_bgjobs.cron import definitions as schedules
from django_bgjobs.api import DeadSet, Queue
from django_bgjobs.payload import dumps
from tests.admin_support import (  # noqa: F401 - fixtures
    PAGES,
    client_for,
    fill_set,
    messages_of,
    operator,
    operator_client,
    payload,
    push_at_once,
    register_process,
    staff_client,
    viewer_client,
)
from tests.helpers import snapshot
from tests.testapp.jobs import RecordJob

pytestmark = pytest.mark.django_db


def seed_everything(redis):
    RecordJob.perform_bulk([(n,) for n in range(30)])
    fill_set(redis, "dead", 30)
    fill_set(redis, "retry", 3)
    fill_set(redis, "schedule", 3, make=payload)
    register_process(redis, "host-1:4242:abc", busy=1, work={"t1": {
        "queue": "default", "run_at": 1_700_000_050.0, "payload": dumps(payload(1)),
    }})
    pipe = redis.pipeline()
    schedules.store(schedules.CronDefinition.from_definition(
        "report", {"cron": "0 6 * * *", "class": "tests.testapp.jobs.NoopJob"}, "settings"), pipe, 1_700_000_000.0)
    pipe.execute()


# -- who may see what -----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "args"), PAGES)
def test_anonymous_user_is_sent_to_the_login_page_when_opening_a_job_page(name, args):
    url = reverse(name, args=args)

    response = Client().get(url)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=")


@pytest.mark.parametrize(("name", "args"), PAGES)
def test_staff_without_the_apps_permissions_gets_403_when_opening_a_job_page(staff_client, name, args):
    assert staff_client.get(reverse(name, args=args)).status_code == 403


@pytest.mark.parametrize(("name", "args"), PAGES)
def test_staff_with_view_permission_sees_the_page_without_action_buttons(viewer_client, redis, name, args):
    seed_everything(redis)

    response = viewer_client.get(reverse(name, args=args))

    assert response.status_code == 200
    assert response.context["can_change"] is False
    assert b'name="row_action"' not in response.content
    assert b'value="pause"' not in response.content


def test_staff_with_view_permission_only_gets_403_when_posting_an_action(viewer_client, redis):
    # Given
    RecordJob.perform_later(1)

    # When
    response = viewer_client.post(reverse("admin:django_bgjobs_queue_clear", args=["default"]))

    # Then
    assert response.status_code == 403
    assert redis.llen("queue:default") == 1


def test_superuser_needs_no_explicit_permission(admin_client):
    assert admin_client.get(reverse("admin:django_bgjobs_dead")).status_code == 200


def test_admin_index_lists_the_dashboard_and_failed_jobs_under_background_jobs(operator_client, staff_client):
    page = operator_client.get(reverse("admin:index")).content.decode()
    assert "Background jobs" in page
    assert reverse("admin:django_bgjobs_dashboard_changelist") in page
    assert reverse("admin:django_bgjobs_failedjob_changelist") in page

    assert "Background jobs" not in staff_client.get(reverse("admin:index")).content.decode()


def test_tab_bar_leaves_out_pages_the_user_may_not_open(viewer_client, db):
    # Given: staff who may see the job pages but not the failure records
    from tests.admin_support import make_staff

    client = client_for(make_staff("dashboard-only", ["view_dashboard"]))

    # When
    labels = [link["label"] for link in client.get(reverse("admin:django_bgjobs_dead")).context["nav_links"]]

    # Then
    assert labels == ["Dashboard", "Processes", "Queues", "Retries", "Scheduled", "Dead", "Batches", "Unique locks",
                      "Recurring jobs", "Metrics"]


# -- CSRF and methods -----------------------------------------------------------------------


def test_action_without_csrf_token_is_refused_and_changes_nothing(operator, redis):
    # Given
    RecordJob.perform_bulk([(1,), (2,)])
    client = client_for(operator, enforce_csrf_checks=True)

    # When
    response = client.post(reverse("admin:django_bgjobs_queue_clear", args=["default"]))

    # Then
    assert response.status_code == 403
    assert redis.llen("queue:default") == 2


def test_action_with_the_pages_csrf_token_goes_through(operator, redis):
    # Given: the confirmation page, which carries the token
    RecordJob.perform_bulk([(1,), (2,)])
    client = client_for(operator, enforce_csrf_checks=True)
    url = reverse("admin:django_bgjobs_queue_clear", args=["default"])
    token = client.get(url).context["csrf_token"]

    # When
    response = client.post(url, {"csrfmiddlewaretoken": str(token)}, follow=True)

    # Then
    assert response.redirect_chain[-1][0] == reverse("admin:django_bgjobs_queues")
    assert messages_of(response) == ["Cleared queue default: deleted 2 jobs."]
    assert redis.llen("queue:default") == 0


@pytest.mark.parametrize("name", ["admin:django_bgjobs_dashboard_changelist", "admin:django_bgjobs_batches"])
def test_read_only_page_refuses_post_when_it_has_no_actions(operator_client, name):
    assert operator_client.post(reverse(name)).status_code == 405


def test_no_page_writes_to_redis_when_opened(operator_client, redis, raw_redis):
    # Given
    seed_everything(redis)
    before = snapshot(raw_redis)
    entry = DeadSet().page(0, 1)[0]
    queued = Queue("default").page(0, 1)[0]
    extra = [
        reverse("admin:django_bgjobs_dead_job", args=[entry.jid]) + f"?at={entry.score!r}",
        reverse("admin:django_bgjobs_dead_job", args=[entry.jid]),
        reverse("admin:django_bgjobs_dead") + "?q=failure",
        reverse("admin:django_bgjobs_queue_job", args=["default", queued.jid]),
        reverse("admin:django_bgjobs_queue", args=["default"]) + "?order=oldest&page=2",
    ]

    # When
    for url in [reverse(name, args=args) for name, args in PAGES] + extra:
        assert operator_client.get(url).status_code == 200, url

    # Then
    assert snapshot(raw_redis) == before


# -- page numbers ---------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["abc", "0", "-1", "1.5"])
def test_bad_page_number_is_404_not_500(operator_client, page):
    response = operator_client.get(reverse("admin:django_bgjobs_dead"), {"page": page})

    assert response.status_code == 404


def test_page_past_the_end_shows_the_last_page_when_the_list_shrank(operator_client, redis):
    # Given: 30 dead jobs, 2 pages
    fill_set(redis, "dead", 30)

    # When
    response = operator_client.get(reverse("admin:django_bgjobs_dead"), {"page": 99})

    # Then
    assert response.status_code == 200
    assert response.context["pagination"].number == 2
    assert len(response.context["entries"]) == 5


def test_page_links_keep_the_search_when_paging(operator_client, redis):
    fill_set(redis, "dead", 60)

    response = operator_client.get(reverse("admin:django_bgjobs_dead"), {"q": "failure number", "page": 2})

    assert response.context["pagination"].next_url == "?q=failure+number&page=3"


# -- Redis down -----------------------------------------------------------------------------


@pytest.fixture
def redis_down(monkeypatch):
    """Point the library at a port where nothing listens (REDIS_URL wins over the setting)."""
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    conf.get_settings.cache_clear()
    connection.reset()
    yield
    monkeypatch.undo()
    conf.get_settings.cache_clear()
    connection.reset()


@pytest.mark.parametrize(("name", "args"), PAGES)
def test_page_says_redis_is_not_answering_when_it_is_down(operator_client, redis_down, name, args):
    response = operator_client.get(reverse(name, args=args))

    assert response.status_code == 503
    assert "Redis at 127.0.0.1:1/0 is not answering" in response.content.decode()


# -- a custom admin site --------------------------------------------------------------------


@override_settings(ROOT_URLCONF="tests.urls_ops_admin")
def test_pages_link_and_redirect_within_a_custom_admin_site_when_registered_there(operator_client, redis):
    # Given: the pages registered on a second AdminSite named "ops", at /ops/
    fill_set(redis, "dead", 1)
    entry = DeadSet().page()[0]

    # When
    page = operator_client.get("/ops/django_bgjobs/dashboard/dead/")
    acted = operator_client.post("/ops/django_bgjobs/dashboard/dead/",
                                 {"row_action": f"delete {entry.score!r}:{entry.jid}"})

    # Then: tabs, breadcrumbs and the redirect stay on /ops/
    assert page.status_code == 200
    assert {link["url"][:5] for link in page.context["nav_links"]} == {"/ops/"}
    assert 'href="/ops/django_bgjobs/"' in page.content.decode()
    assert acted["Location"] == "/ops/django_bgjobs/dashboard/dead/"
    assert redis.zcard("dead") == 0
