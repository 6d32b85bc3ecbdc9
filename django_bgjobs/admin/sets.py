"""Scheduled, Retries and Dead: the three sorted sets, paged in Redis, with their actions.

One set of views serves the three sets; a :class:`SetKind` says what differs (title,
order, which actions).  A job is named by its jid, plus its score as a hint (the
``token`` ``"<score>:<jid>"``) so it is found with one ``ZRANGEBYSCORE`` instead of a
scan; if the hint is stale the jid alone is looked up.  Searching (``?q=``) is a
``ZSCAN MATCH`` done by Redis, capped at :data:`MAX_SEARCH_RESULTS` matches.
"""

import itertools
import math
from dataclasses import dataclass
from typing import Callable

from django.contrib import messages
from django.http import Http404, HttpResponseRedirect
from django_bgjobs.admin.base import JobsPage, admin_url, paginate, plural, redirect_back
from django_bgjobs.admin.failed_jobs import mark_retried
from django_bgjobs.api import DeadSet, RetrySet, ScheduledSet
from django_bgjobs.errors import InvalidPayloadError

MAX_SEARCH_RESULTS = 1000
SCAN_COUNT = 1000


@dataclass(frozen=True)
class Action:
    """Something an operator can do to one entry: ``run(entry, request)`` returns True if it acted."""

    label: str
    done: str
    run: Callable


@dataclass(frozen=True)
class BulkAction:
    """Something done to every entry of a set: ``run(api_set, request)`` returns how many."""

    label: str
    done: str
    question: str
    run: Callable
    danger: bool = False


def kill_reason(request):
    return f"killed from the admin by {request.user.get_username()}"


ACTIONS = {
    "retry": Action("Retry now", "Retried", lambda entry, request: entry.retry()),
    "add_to_queue": Action("Add to queue", "Enqueued", lambda entry, request: entry.add_to_queue()),
    "kill": Action("Kill", "Killed", lambda entry, request: entry.kill(reason=kill_reason(request))),
    "delete": Action("Delete", "Deleted", lambda entry, request: entry.delete()),
}

BULK_ACTIONS = {
    "retry": BulkAction(
        "Retry all", "Retried", "Move all {count} to their queues to run now?",
        lambda api_set, request: api_set.retry_all(),
    ),
    "add_to_queue": BulkAction(
        "Enqueue all now", "Enqueued", "Move all {count} to their queues to run now, ahead of their time?",
        lambda api_set, request: api_set.add_all_to_queue(),
    ),
    "kill": BulkAction(
        "Kill all", "Killed", "Move all {count} to the dead set? They will not be retried.",
        lambda api_set, request: api_set.kill_all(reason=kill_reason(request)), danger=True,
    ),
    "delete": BulkAction(
        "Delete all", "Deleted", "Delete all {count}? They will never run, and this cannot be undone.",
        lambda api_set, request: api_set.clear(), danger=True,
    ),
}


@dataclass(frozen=True)
class SetKind:
    slug: str
    api_class: type
    title: str
    noun: str
    plural_noun: str
    #: True: highest score (latest) first.
    newest_first: bool
    time_label: str
    actions: tuple
    bulk_actions: tuple
    #: The empty state: a headline and what would appear here.
    empty_title: str
    empty_text: str

    def url(self, request, name="", *args):
        return admin_url(request, f"django_bgjobs_{self.slug}{name}", *args)


SET_KINDS = {
    kind.slug: kind for kind in (
        SetKind(
            "scheduled", ScheduledSet, "Scheduled jobs", "scheduled job", "scheduled jobs", False, "Runs",
            ("add_to_queue", "delete"), ("add_to_queue", "delete"),
            "No scheduled jobs.",
            "Jobs enqueued with Job.set(wait=...) or set(wait_until=...) wait here until their time comes.",
        ),
        SetKind(
            "retries", RetrySet, "Retries", "retry", "retries", False, "Next retry",
            ("retry", "kill", "delete"), ("retry", "kill", "delete"),
            "No retries.",
            "A job that raises waits here for its next attempt; the waits grow from 15 seconds to about "
            "a day (25 retries over three weeks, by default).",
        ),
        SetKind(
            "dead", DeadSet, "Dead jobs", "dead job", "dead jobs", True, "Died",
            ("retry", "delete"), ("retry", "delete"),
            "No dead jobs.",
            "Jobs that fail more times than their retry limit (25 by default), or are killed, land here "
            "and stay until retried, deleted or 180 days old.",
        ),
    )
}


def entry_token(entry):
    """``"<score>:<jid>"``: how forms and links name an entry (the score makes the lookup cheap);
    ``"<score>:#<member id>"`` for one without a jid (a payload that does not parse, say), which
    names its exact member."""
    if entry.jid and not entry.jid.startswith("#"):
        return f"{entry.score!r}:{entry.jid}"
    return f"{entry.score!r}:#{entry.member_id}"


def find_entry(api_set, token=None, jid=None, score=None):
    """The entry named by ``token`` (or by ``jid`` and an optional ``score``), or None."""
    if token is not None:
        score_text, sep, jid = token.partition(":")
        if not sep:
            return None
        try:
            score = float(score_text)
        except ValueError:
            return None
    if score is not None and math.isnan(score):
        score = None
    if jid and jid.startswith("#"):
        return api_set.find_member(jid[1:], score)
    if score is not None:
        for entry in api_set.fetch(score):
            if (entry.jid or "") == (jid or ""):
                return entry
    return api_set.find_job(jid) if jid else None


def with_tokens(entries):
    for entry in entries:
        entry.token = entry_token(entry)
    return entries


class SetPage(JobsPage):
    """The list, paged (``?page=``) or searched (``?q=``); POST acts on selected rows or one row."""

    template_name = "admin/django_bgjobs/set.html"
    kind = None  # a SetKind, given to as_view

    @property
    def nav(self):
        return self.kind.slug

    def get(self, request):
        api_set = self.kind.api_class()
        query = request.GET.get("q", "").strip()
        capped = False
        if query:
            matches = list(itertools.islice(api_set.scan(query, count=SCAN_COUNT), MAX_SEARCH_RESULTS + 1))
            capped = len(matches) > MAX_SEARCH_RESULTS
            matches = sorted(matches[:MAX_SEARCH_RESULTS], key=lambda e: e.score, reverse=self.kind.newest_first)
            pagination = paginate(request, len(matches), keep=("q",))
            entries = matches[pagination.offset:pagination.offset + pagination.per_page]
            size = api_set.size()
        else:
            size = api_set.size()
            pagination = paginate(request, size)
            entries = api_set.page(pagination.offset, pagination.per_page, reverse=self.kind.newest_first)
        return self.render(request, {
            "title": self.kind.title, "kind": self.kind, "entries": with_tokens(entries), "size": size,
            "problem": api_set.problem(),
            "pagination": pagination, "query": query, "capped": capped, "max_results": MAX_SEARCH_RESULTS,
            "actions": [(name, ACTIONS[name]) for name in self.kind.actions],
            "bulk_actions": [(name, BULK_ACTIONS[name]) for name in self.kind.bulk_actions],
        })

    def post(self, request):
        row_action = request.POST.get("row_action", "")
        if row_action:
            action, _, token = row_action.partition(" ")
            tokens = [token]
        else:
            action = request.POST.get("action", "")
            tokens = request.POST.getlist("selected")
        if action not in self.kind.actions:
            messages.error(request, f"{self.kind.title}: unknown action {action!r}.")
        elif not tokens:
            messages.warning(request, "Select at least one job first: nothing was changed.")
        else:
            act_on(request, self.kind, action, tokens)
        return redirect_back(request, self.kind.url(request))


def act_on(request, kind, action, tokens):
    """Run ``action`` on the entries named by ``tokens`` and say what happened in a message."""
    api_set = kind.api_class()
    done_jids, gone, refused = [], 0, []
    for token in tokens:
        entry = find_entry(api_set, token=token)
        if entry is None:
            gone += 1
            continue
        try:
            acted = ACTIONS[action].run(entry, request)
        except InvalidPayloadError as exc:
            refused.append(str(exc))
            continue
        if acted:
            done_jids.append(entry.jid)
        else:
            gone += 1
    if kind.slug == "dead" and action == "retry":
        mark_retried(done_jids)
    if done_jids:
        messages.success(request, f"{ACTIONS[action].done} {plural(len(done_jids), 'job')}.")
    if gone:
        messages.warning(request, f"{plural(gone, 'job')} {'was' if gone == 1 else 'were'} no longer in "
                                  f"{kind.title.lower()} (moved, run or deleted meanwhile).")
    for reason in refused:
        messages.error(request, f"Cannot {ACTIONS[action].label.lower()} a job whose payload does not parse "
                                f"({reason}); delete it instead.")


class SetJobPage(JobsPage):
    """One entry with its whole payload and backtrace (``?at=<score>`` makes the lookup cheap)."""

    template_name = "admin/django_bgjobs/job.html"
    kind = None

    @property
    def nav(self):
        return self.kind.slug

    def find(self, request, jid):
        score = None
        if request.GET.get("at"):
            try:
                score = float(request.GET["at"])
            except ValueError:
                raise Http404(f"{request.GET['at']!r} is not a score.") from None
        entry = find_entry(self.kind.api_class(), jid=jid, score=score)
        if entry is None:
            raise Http404(f"No job {jid} in {self.kind.title.lower()} (it may have been moved, run or deleted).")
        return entry

    def get(self, request, jid):
        entry = self.find(request, jid)
        return self.render(request, {
            "title": f"{self.kind.noun.capitalize()} {jid}", "job": entry, "kind": self.kind,
            "token": entry_token(entry), "actions": [(name, ACTIONS[name]) for name in self.kind.actions],
            "list_url": self.kind.url(request), "list_title": self.kind.title,
        })


class SetBulkPage(JobsPage):
    """GET: the confirmation page for an action on every entry (writes nothing).  POST: do it."""

    template_name = "admin/django_bgjobs/confirm.html"
    kind = None

    @property
    def nav(self):
        return self.kind.slug

    def bulk(self, action):
        if action not in self.kind.bulk_actions:
            raise Http404(f"{self.kind.title} have no action {action!r}.")
        return BULK_ACTIONS[action]

    def get(self, request, action):
        bulk = self.bulk(action)
        size = self.kind.api_class().size()
        return self.render(request, {
            "title": f"{bulk.label}: {self.kind.title.lower()}",
            "question": bulk.question.format(count=plural(size, self.kind.noun, self.kind.plural_noun)),
            "confirm_label": f"Yes, {bulk.label.lower()}", "cancel_url": self.kind.url(request), "danger": bulk.danger,
            "list_url": self.kind.url(request), "list_title": self.kind.title, "empty": size == 0,
        })

    def post(self, request, action):
        bulk = self.bulk(action)
        api_set = self.kind.api_class()
        jids = [entry.jid for entry in api_set] if self.kind.slug == "dead" and action == "retry" else []
        count = bulk.run(api_set, request)
        if jids:
            mark_retried(jids)
        messages.success(request, f"{bulk.done} {plural(count, 'job')}.")
        return HttpResponseRedirect(self.kind.url(request))
