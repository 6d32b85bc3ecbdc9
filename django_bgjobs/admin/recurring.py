"""Recurring jobs: every schedule in Redis (from settings, the YAML file and the database),
with buttons to enqueue one now, disable it or enable it again.

Read through :class:`django_bgjobs.api.CronSet`.  Settings and file entries reach Redis when a
worker starts, so the page also reads the definitions (settings, file, ``Schedule`` rows;
never Redis) to say which ones no worker has loaded yet and which are invalid.  Schedules are
named by their name in forms, never by their position in the list.
"""

import json

from django.contrib import messages
from django.utils import timezone

from django_bgjobs.cron import definitions as schedules
from django_bgjobs.admin.base import JobsPage, admin_url, redirect_back
from django_bgjobs.api import CronSet
from django_bgjobs.errors import UnknownJobError
from django_bgjobs.models import FailedJob
from django_bgjobs.models import Schedule as ScheduleRow

ACTIONS = ("enqueue", "disable", "enable", "delete_unreadable")
#: How much of an unreadable definition the page shows.
RAW_EXCERPT_CHARS = 300


class RecurringPage(JobsPage):
    template_name = "admin/django_bgjobs/recurring.html"
    title = "Recurring jobs"
    nav = "recurring"

    def get(self, request):
        now = timezone.now().timestamp()
        cron_set = CronSet()
        entries = cron_set.entries()
        errors = []
        defined = schedules.configured(errors=errors)
        rows = {row.name: row.pk for row in ScheduleRow.objects.only("pk", "name")}
        failed = self._failed_jids(request, [entry.last_jid for entry in entries])
        may_edit = self._may_edit(request)
        items = []
        for entry in entries:
            next_run = entry.next_run(now=now)  # None for a zone or cron this host cannot use
            pk = rows.get(entry.name) if entry.schedule.source == "database" and may_edit else None
            items.append({
                "entry": entry, "schedule": entry.schedule, "next_run": next_run,
                "row_url": admin_url(request, "django_bgjobs_schedule_change", pk) if pk else "",
                "last_jid_url": failed.get(entry.last_jid, ""),
                "undefined": entry.name not in defined,
                "arguments": arguments(entry.schedule),
            })
        in_redis = {entry.name for entry in entries}
        return self.render(request, {
            "items": items,
            "not_loaded": [schedule for name, schedule in sorted(defined.items()) if name not in in_redis],
            "errors": [str(error) for error in errors],
            "unreadable": [(name, _excerpt(raw)) for name, raw in cron_set.unreadable()],
            "schedules_url": self._schedules_url(request),
            "add_url": self._add_url(request),
        })

    def post(self, request):
        back = admin_url(request, "django_bgjobs_recurring")
        name = request.POST.get("name", "")
        action = request.POST.get("action")
        if action not in ACTIONS:
            messages.error(request, f"Unknown action {action!r}.")
            return redirect_back(request, back)
        if action == "delete_unreadable":  # only a definition that does not read: the others have owners
            cron_set = CronSet()
            if name in dict(cron_set.unreadable()) and cron_set.delete(name):
                messages.success(request, f"Deleted the unreadable definition {name[:80]!r}.")
            else:
                messages.warning(request, f"No unreadable definition is named {name[:80]!r} (any more).")
            return redirect_back(request, back)
        entry = CronSet().get(name) if name else None
        if entry is None:
            messages.error(request, f"No recurring job is named {name!r} (it may have been removed).")
        elif action == "enqueue":
            try:
                jid = entry.enqueue_now()
            except (UnknownJobError, ValueError) as exc:
                messages.error(request, f"Could not enqueue {name}: {exc}.")
            else:
                messages.success(request, f"Enqueued {name} now (job {jid}).")
        elif action == "disable":
            was_enabled = entry.enabled
            entry.disable()
            if was_enabled:
                messages.success(request, f"Disabled {name}: no worker enqueues it until it is enabled again.")
            else:
                messages.info(request, f"{name} was already disabled.")
        else:
            was_enabled = entry.enabled
            entry.enable()
            if was_enabled:
                messages.info(request, f"{name} was already enabled.")
            else:
                messages.success(request, f"Enabled {name}: it runs again on its schedule.")
        return redirect_back(request, back)

    # -- links ---------------------------------------------------------------------------

    def _schedules_model_admin(self):
        return self.model_admin.admin_site._registry.get(ScheduleRow)

    def _may_edit(self, request):
        model_admin = self._schedules_model_admin()
        return model_admin is not None and model_admin.has_view_or_change_permission(request)

    def _schedules_url(self, request):
        return admin_url(request, "django_bgjobs_schedule_changelist") if self._may_edit(request) else ""

    def _add_url(self, request):
        model_admin = self._schedules_model_admin()
        if model_admin is None or not model_admin.has_add_permission(request):
            return ""
        return admin_url(request, "django_bgjobs_schedule_add")

    def _failed_jids(self, request, jids):
        """``{jid: url}`` of the failure records of these jids, for users who may read them."""
        jids = [jid for jid in jids if jid]
        model_admin = self.model_admin.admin_site._registry.get(FailedJob)
        if not jids or model_admin is None or not model_admin.has_view_or_change_permission(request):
            return {}
        url = admin_url(request, "django_bgjobs_failedjob_changelist")
        found = FailedJob.objects.filter(jid__in=jids).values_list("jid", flat=True).distinct()
        return {jid: f"{url}?q={jid}" for jid in found}


def _excerpt(raw):
    raw = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return raw if len(raw) <= RAW_EXCERPT_CHARS else raw[:RAW_EXCERPT_CHARS] + f"… ({len(raw):,} characters)"


def arguments(schedule):
    """The args and kwargs on one line, as JSON: ``[30] {"full": true}``."""
    parts = []
    if schedule.args:
        parts.append(json.dumps(schedule.args, ensure_ascii=False, default=str))
    if schedule.kwargs:
        parts.append(json.dumps(schedule.kwargs, ensure_ascii=False, default=str, sort_keys=True))
    return " ".join(parts)
