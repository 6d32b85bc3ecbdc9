"""The dashboard page and its chart (django_bgjobs.admin.dashboard, django_bgjobs.admin.chart)."""

import datetime
import re

import pytest
from django.test import override_settings
from django.urls import reverse

from django_bgjobs import keys
from django_bgjobs.admin.chart import history_chart, nice_ceiling
from django_bgjobs.api import Queue
from tests.admin_support import (  # noqa: F401 - fixtures
    fill_set,
    operator,
    operator_client,
    payload,
    push_at_once,
    register_process,
)
from tests.testapp.jobs import RecordJob

pytestmark = pytest.mark.django_db

DASHBOARD = "admin:django_bgjobs_dashboard_changelist"


def test_dashboard_shows_totals_sets_and_busy_workers(operator_client, redis):
    # Given
    redis.set(keys.stat("processed"), 12345)
    redis.set(keys.stat("failed"), 67)
    RecordJob.perform_bulk([(n,) for n in range(4)])
    fill_set(redis, "retry", 2)
    fill_set(redis, "schedule", 3, make=payload)
    fill_set(redis, "dead", 5)
    register_process(redis, "host-1:1:a", busy=2)

    # When
    response = operator_client.get(reverse(DASHBOARD))

    # Then
    cards = {label: value for value, label in re.findall(
        r'<span class="value">([\d,]+)</span><span class="label">(\w+)</span>', response.content.decode()
    )}
    assert cards == {
        "Processed": "12,345", "Failed": "67", "Busy": "2", "Enqueued": "4", "Retries": "2", "Scheduled": "3",
        "Dead": "5", "Processes": "1",
    }


def test_dashboard_lists_queues_with_size_latency_and_paused_state(operator_client):
    # Given
    RecordJob.perform_bulk([(1,), (2,)])
    RecordJob.set(queue="low").perform_later(3)
    Queue("low").pause()

    # When
    queues = operator_client.get(reverse(DASHBOARD)).context["queues"]

    # Then: biggest first, configured empty queues too
    assert [(q["name"], q["size"], q["paused"]) for q in queues] == [
        ("default", 2, False), ("low", 1, True), ("critical", 0, False),
    ]
    assert all(q["latency"] >= 0 for q in queues)


def test_dashboard_marks_each_queue_no_live_process_serves(operator_client, redis):
    # Given: one live process serving default only, and a job waiting in low
    register_process(redis, "host-1:1:aaaaaaaaaaaa", queues=["default"])
    RecordJob.set(queue="low").perform_later(3)

    # When
    response = operator_client.get(reverse(DASHBOARD))

    # Then
    assert [(q["name"], q["unserved"]) for q in response.context["queues"]] == [
        ("low", True), ("critical", True), ("default", False),
    ]
    page = response.content.decode()
    assert "no process serves this queue" in page.split(">low</a>")[1].split("</tr>")[0]
    assert "running" in page.split(">default</a>")[1].split("</tr>")[0]


def test_dashboard_draws_thirty_days_of_history_as_inline_svg(operator_client, redis):
    # Given: today processed 40 with 4 failures, yesterday 10
    today = datetime.datetime.now(datetime.UTC).date()
    redis.set(keys.stat("processed", today.isoformat()), 40)
    redis.set(keys.stat("failed", today.isoformat()), 4)
    redis.set(keys.stat("processed", (today - datetime.timedelta(days=1)).isoformat()), 10)

    # When
    page = operator_client.get(reverse(DASHBOARD)).content.decode()

    # Then: an <svg> in the page itself, a bar per day and series, no script or external file
    svg = page[page.index('<svg class="bgjobs-chart"'):page.index("</svg>", page.index('<svg class="bgjobs-chart"'))]
    assert svg.count('class="processed"') == 30
    assert svg.count('class="failed"') == 30
    assert f"{today:%a %d %b %Y}: 40 processed, 4 failed" in svg
    assert "<script" not in page.split('id="content"')[1]
    assert "http" not in svg
    assert "Processed: 50" in page and "Failed: 4" in page


def test_dashboard_says_what_would_appear_when_there_are_no_queues(operator_client, settings):
    settings.BGJOBS = {**settings.BGJOBS, "QUEUES": []}

    page = operator_client.get(reverse(DASHBOARD)).content.decode()

    assert "No queues yet." in page


# -- the chart's geometry -------------------------------------------------------------------


@pytest.mark.parametrize(("value", "top"), [(0, 10), (1, 1), (7, 10), (12, 20), (1999, 2000), (2400, 2500)])
def test_nice_ceiling_rounds_up_to_a_readable_axis_top(value, top):
    assert nice_ceiling(value) == top


def test_chart_bars_are_proportional_to_the_counts_and_oldest_day_is_on_the_left():
    # Given
    start = datetime.date(2024, 3, 10)
    history = [(start - datetime.timedelta(days=n), 100 * (n + 1), n) for n in range(3)]  # newest first

    # When
    chart = history_chart(history)

    # Then
    processed = [bar for bar in chart["bars"] if bar["css"] == "processed"]
    assert [float(bar["x"]) for bar in processed] == sorted(float(bar["x"]) for bar in processed)
    heights = [float(bar["height"]) for bar in processed]
    assert heights[0] == pytest.approx(3 * heights[2], rel=0.01)  # 300 (oldest) vs 100 (newest)
    assert chart["grid"][-1]["label"] == "500"
    assert (chart["total_processed"], chart["total_failed"]) == (600, 3)
    assert chart["days"][0][0] == start


def test_chart_has_no_bars_taller_than_zero_when_nothing_ran():
    history = [(datetime.date(2024, 3, 10) - datetime.timedelta(days=n), 0, 0) for n in range(30)]

    chart = history_chart(history)

    assert {bar["height"] for bar in chart["bars"]} == {"0"}
    assert chart["grid"][-1]["label"] == "10"


@override_settings(LANGUAGE_CODE="de", USE_THOUSAND_SEPARATOR=True)
def test_chart_coordinates_keep_a_dot_when_the_site_formats_numbers_the_german_way(operator_client, redis):
    redis.set(keys.stat("processed", datetime.datetime.now(datetime.UTC).date().isoformat()), 1234)

    page = operator_client.get(reverse(DASHBOARD)).content.decode()

    svg = page[page.index('<svg class="bgjobs-chart"'):]
    assert re.search(r'<rect class="processed" x="\d+(\.\d+)?" y="\d+(\.\d+)?"', svg)
    assert not re.search(r'(x|y|width|height)="\d+,\d', svg)


def test_a_daily_count_no_redis_counter_can_hold_counts_zero_on_the_chart(operator_client, redis):
    # Given: today's processed count written by hand as 3 followed by 400 zeros, and a real one yesterday
    today = datetime.datetime.now(datetime.timezone.utc).date()
    redis.set(keys.stat("processed", today.isoformat()), "3" + "0" * 400)
    redis.set(keys.stat("processed", (today - datetime.timedelta(days=1)).isoformat()), "7")

    # When
    response = operator_client.get(reverse(DASHBOARD))

    # Then
    assert response.status_code == 200
    assert response.context["chart"]["total_processed"] == 7
