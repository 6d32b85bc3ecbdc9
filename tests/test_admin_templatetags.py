"""django_bgjobs.templatetags.bgjobs_admin: relative times, durations, numbers and JSON for the pages."""

import datetime

import pytest
from django.template import Context, Template

from django_bgjobs.templatetags.bgjobs_admin import duration, lines, pretty_json, short_class, thousands, timeago

NOW = datetime.datetime(2024, 3, 10, 14, 0, 0, tzinfo=datetime.UTC)


@pytest.mark.parametrize(("moment", "text"), [
    (NOW - datetime.timedelta(minutes=3), "3\xa0minutes ago"),
    (NOW - datetime.timedelta(days=2, hours=5), "2\xa0days ago"),
    (NOW + datetime.timedelta(hours=1, minutes=2), "in 1\xa0hour"),
    (NOW - datetime.timedelta(seconds=3), "just now"),
    (NOW + datetime.timedelta(seconds=3), "in a few seconds"),
    (NOW - datetime.timedelta(seconds=50), "50 seconds ago"),
    (NOW + datetime.timedelta(seconds=50), "in 50 seconds"),
])
def test_timeago_says_how_long_ago_with_the_exact_time_on_hover(moment, text):
    html = timeago(moment, now=NOW)

    assert f">{text}</time>" in html
    assert f'datetime="{moment.isoformat()}"' in html
    assert f'title="{moment:%Y-%m-%d %H:%M:%S} UTC"' in html


def test_timeago_takes_epoch_seconds_as_the_payloads_store_them():
    html = timeago(NOW.timestamp() - 7200, now=NOW)

    assert ">2\xa0hours ago</time>" in html
    assert 'title="2024-03-10 12:00:00 UTC"' in html


@pytest.mark.parametrize("value", [None, "soon", True, float("inf")])
def test_timeago_shows_a_dash_when_there_is_no_time(value):
    assert timeago(value, now=NOW) == "—"


def test_timeago_renders_as_html_when_used_in_a_template():
    rendered = Template("{% load bgjobs_admin %}{% timeago when %}").render(Context({"when": NOW}))

    assert rendered.startswith("<time ")


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0 s"), (0.42, "0.4 s"), (12.4, "12 s"), (125, "2 min"), (3600, "1 h"), (3 * 3600 + 300, "3 h 5 min"),
    (86400, "1 day"), (3 * 86400, "3 days"), (None, "—"), (-5, "0 s"),
])
def test_duration_is_short_and_readable(seconds, text):
    assert duration(seconds) == text


def test_thousands_groups_digits_and_leaves_non_numbers_alone():
    assert thousands(1234567) == "1,234,567"
    assert thousands("n/a") == "n/a"


def test_pretty_json_indents_and_keeps_unicode():
    assert pretty_json({"name": "Zoë", "n": [1]}) == '{\n  "name": "Zoë",\n  "n": [\n    1\n  ]\n}'


def test_lines_joins_a_backtrace_one_line_each():
    assert lines(["a", "b"]) == "a\nb"
    assert lines(None) == ""


def test_short_class_keeps_the_last_dotted_name():
    assert short_class("smtplib.SMTPServerDisconnected") == "SMTPServerDisconnected"
    assert short_class("KeyError") == "KeyError"
    assert short_class(None) == ""


def test_pretty_json_shows_a_value_nested_too_deep_to_encode_instead_of_failing_the_page():
    deep = 0
    for _ in range(50_000):
        deep = [deep]

    assert pretty_json({"args": [deep]}) == "(nested too deep to show)"
    assert pretty_json([[1]]) == "[\n  [\n    1\n  ]\n]"


@pytest.mark.parametrize("jid", ["a/b", "", "..", ".", None, 5.5, ["x"]])
def test_link_to_a_value_no_url_can_hold_is_its_escaped_text(jid):
    # (the text comes from Redis, as in the pages: a template's own literals count as safe)
    template = Template('{% load bgjobs_admin %}{% bgjobs_url "django_bgjobs_dead_job" jid as url %}[{{ url }}]'
                        '{% bgjobs_link text "django_bgjobs_dead_job" jid %}')

    assert template.render(Context({"jid": jid, "text": "<b>it</b>"})) == "[]&lt;b&gt;it&lt;/b&gt;"


def test_link_to_a_value_a_url_holds_is_a_link():
    template = Template('{% load bgjobs_admin %}{% bgjobs_link text "django_bgjobs_queue" name %}')

    assert template.render(Context({"name": "a<b", "text": "<b>q</b>"})) == (
        '<a href="/admin/django_bgjobs/dashboard/queues/a%3Cb/">&lt;b&gt;q&lt;/b&gt;</a>'
    )
