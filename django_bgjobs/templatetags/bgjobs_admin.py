"""Template helpers for the job pages: relative times, durations, numbers, JSON and the tab bar.

``{% load bgjobs_admin %}`` then ``{% timeago job.enqueued_at %}`` (epoch seconds or a
datetime) gives ``<time title="2024-03-10 14:03:22 UTC">3 minutes ago</time>``.
"""

import datetime
import json

from django import template
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince, timeuntil

register = template.Library()

JUST_NOW_S = 10


def as_datetime(value):
    """Epoch seconds (int/float) or a datetime as an aware datetime; None for anything else."""
    if isinstance(value, datetime.datetime):
        return value if timezone.is_aware(value) else timezone.make_aware(value, datetime.timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return datetime.datetime.fromtimestamp(value, tz=datetime.timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    return None


@register.simple_tag
def timeago(value, now=None):
    """``3 minutes ago`` / ``in 2 hours``, with the exact time on hover; ``—`` when there is none."""
    moment = as_datetime(value)
    if moment is None:
        return "—"
    now = now or timezone.now()
    seconds = (now - moment).total_seconds()
    if abs(seconds) < JUST_NOW_S:
        text = "just now" if seconds >= 0 else "in a few seconds"
    elif abs(seconds) < 60:  # timesince would say "0 minutes"
        text = f"{seconds:.0f} seconds ago" if seconds > 0 else f"in {-seconds:.0f} seconds"
    elif seconds > 0:
        text = f"{timesince(moment, now, depth=1)} ago"
    else:
        text = f"in {timeuntil(moment, now, depth=1)}"
    exact = timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z")
    return format_html('<time datetime="{}" title="{}">{}</time>', moment.isoformat(), exact, text)


@register.simple_tag(takes_context=True)
def bgjobs_url(context, name, *args):
    """``{% bgjobs_url "django_bgjobs_queue" queue.name as url %}``: the URL of an admin page
    for values read from Redis, or "" when no URL can hold them (a jid with a ``/``, an empty
    or ``..`` queue name, a value that is not a string), so the template shows them unlinked
    instead of failing the whole page.  ``name`` is an ``admin:`` URL name without the prefix."""
    if any(not isinstance(arg, (str, int)) or isinstance(arg, bool) or str(arg) in ("", ".", "..") for arg in args):
        return ""
    request = context.get("request")
    try:
        return reverse(f"admin:{name}", args=args, current_app=getattr(request, "current_app", None))
    except NoReverseMatch:
        return ""


@register.simple_tag(takes_context=True)
def bgjobs_link(context, text, name, *args):
    """``<a href="...">text</a>`` to the admin page ``name`` for ``args`` (see :func:`bgjobs_url`),
    or the text alone when no URL can hold them."""
    url = bgjobs_url(context, name, *args)
    return format_html('<a href="{}">{}</a>', url, text) if url else format_html("{}", text)


@register.filter
def duration(seconds):
    """A latency in seconds, short: ``0 s``, ``4.2 s``, ``12 min``, ``3 h 5 min``, ``2 days``."""
    if seconds is None:
        return "—"
    seconds = max(float(seconds), 0.0)
    if seconds < 10:
        return f"{seconds:.1f} s" if seconds else "0 s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min"
    if seconds < 86400:
        hours, rest = divmod(seconds, 3600)
        return f"{hours:.0f} h {rest // 60:.0f} min" if rest >= 60 else f"{hours:.0f} h"
    days = seconds / 86400
    return f"{days:.0f} day{'s' if round(days) != 1 else ''}"


@register.filter
def thousands(value):
    """``12345`` -> ``12,345`` (no dependency on django.contrib.humanize)."""
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return value


@register.filter
def pretty_json(value):
    """Indented JSON for a payload or its arguments (plain text: escape it in the template);
    compact JSON for one nested too deep to indent."""
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, default=str)
    except (RecursionError, ValueError):
        try:
            return json.dumps(value, ensure_ascii=False, default=str)
        except (RecursionError, ValueError):
            return "(nested too deep to show)"


@register.filter
def short_class(value):
    """``smtplib.SMTPServerDisconnected`` -> ``SMTPServerDisconnected`` (the full name goes in a title)."""
    return str(value or "").rsplit(".", 1)[-1]


@register.simple_tag
def class_name(value):
    """A job or error class as its short name, with its module path underneath, smaller."""
    module, _, name = str(value or "").rpartition(".")
    if not module:
        return name or "—"
    return format_html('{}<br><small class="bgjobs-quiet" title="{}">{}</small>', name, value, module)


@register.filter
def lines(value):
    """A list of lines (a backtrace) as one text, a line each."""
    return "\n".join(str(line) for line in value or ())


@register.inclusion_tag("admin/django_bgjobs/includes/nav.html", takes_context=True)
def bgjobs_nav(context, current=""):
    """The tab bar, for templates that are not job pages (the FailedJob changelist)."""
    from django_bgjobs.admin.base import nav_links

    request = context.get("request")
    return {"nav_links": nav_links(request, current) if request is not None else []}


@register.simple_tag
def bgjobs_version():
    """django-bgjobs' version, for the footer of its admin pages."""
    from django_bgjobs import __version__

    return __version__
