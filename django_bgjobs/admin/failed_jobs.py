"""The ``FailedJob`` ModelAdmin: a searchable record of every job that reached the dead set.

Rows are read-only.  The "retry" action enqueues the job again with its original
arguments: when its entry is still in the dead set it is moved from there (so it never
runs twice), otherwise a copy of the stored payload is pushed to its queue.
"""

from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html

from django_bgjobs.admin.base import plural
from django_bgjobs.api import DeadSet, Queue
from django_bgjobs.errors import InvalidPayloadError
from django_bgjobs.models import FailedJob
from django_bgjobs.payload import valid_queue_name
from django_bgjobs.templatetags.bgjobs_admin import pretty_json, timeago

# The row is written just after the dead-set write; its entry's score is within this of failed_at.
DEAD_SCORE_WINDOW_S = 300
UNREADABLE_CLASS = "django_bgjobs.UnreadablePayload"
_SQL_CHUNK = 500


def mark_retried(jids):
    """Note on the open rows of these jids that they were enqueued again now."""
    jids = [jid for jid in jids if jid]
    now = timezone.now()
    for start in range(0, len(jids), _SQL_CHUNK):
        FailedJob.objects.filter(jid__in=jids[start:start + _SQL_CHUNK], retried_at__isnull=True).update(
            retried_at=now
        )


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("open", "Open"), ("retried", "Retried"), ("resolved", "Resolved")]

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(retried_at__isnull=True, resolved_at__isnull=True)
        if self.value() == "retried":
            return queryset.filter(retried_at__isnull=False)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


class FailedJobAdmin(admin.ModelAdmin):
    change_list_template = "admin/django_bgjobs/failedjob/change_list.html"
    change_form_template = "admin/django_bgjobs/failedjob/change_form.html"
    list_display = ("failed", "job_class", "jid", "error", "status_label")
    list_display_links = ("failed", "jid")
    list_filter = (StatusFilter, "failed_at", "job_class", "queue", "error_class")
    search_fields = ("=jid", "job_class", "error_class", "error_message")
    date_hierarchy = "failed_at"
    list_per_page = 50
    actions = ["retry_jobs", "mark_resolved"]
    fieldsets = [
        (None, {"fields": ("job_class", "jid", "queue", "arguments", "status_label", "reason", "retry_count")}),
        ("Error", {"fields": ("error_class", "error_message", "backtrace_block")}),
        ("Times", {"fields": ("first_enqueued_at", "failed_at", "retried_at", "resolved_at")}),
        ("Payload", {"fields": ("payload_block",), "classes": ("collapse",)}),
    ]
    readonly_fields = (
        "job_class", "jid", "queue", "arguments", "status_label", "reason", "retry_count", "error_class",
        "error_message", "backtrace_block", "first_enqueued_at", "failed_at", "retried_at", "resolved_at",
        "payload_block",
    )

    def has_add_permission(self, request):
        return False

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {"title": "Failed jobs", **(extra_context or {})})

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # Every field is read-only: no save buttons.
        extra_context = {
            "title": "Failed job", **(extra_context or {}), "show_save": False, "show_save_and_continue": False,
            "show_save_and_add_another": False,
        }
        return super().changeform_view(request, object_id, form_url, extra_context)

    # -- columns ----------------------------------------------------------------------------

    @admin.display(description="failed", ordering="failed_at")
    def failed(self, row):
        return timeago(row.failed_at)

    @admin.display(description="error")
    def error(self, row):
        message = row.error_message if len(row.error_message) <= 100 else row.error_message[:99] + "…"
        return format_html("<strong>{}</strong> {}", row.error_class.rsplit(".", 1)[-1], message)

    @admin.display(description="status")
    def status_label(self, row):
        if row.retried_at:
            return format_html("retried {}", timeago(row.retried_at))
        if row.resolved_at:
            return format_html("resolved {}", timeago(row.resolved_at))
        return "open"

    @admin.display(description="arguments")
    def arguments(self, row):
        return format_html('<pre class="bgjobs-code">{}</pre>', pretty_json(row.args))

    @admin.display(description="backtrace")
    def backtrace_block(self, row):
        return format_html('<pre class="bgjobs-code">{}</pre>', row.backtrace or "(none)")

    @admin.display(description="payload")
    def payload_block(self, row):
        return format_html('<pre class="bgjobs-code">{}</pre>', pretty_json(row.payload))

    # -- actions ----------------------------------------------------------------------------

    @admin.action(description="Retry selected failed jobs (enqueue them again with their arguments)",
                  permissions=["change"])
    def retry_jobs(self, request, queryset):
        dead = DeadSet()
        moved = pushed = 0
        skipped = []
        for row in queryset:
            if row.retried_at:
                skipped.append(f"{row.jid} was already retried {timezone.localtime(row.retried_at):%Y-%m-%d %H:%M}")
                continue
            if row.job_class == UNREADABLE_CLASS or not row.payload.get("class"):
                skipped.append(f"{row.jid or row.pk} has no readable payload to run")
                continue
            entry = self._dead_entry(dead, row)
            try:
                if entry is None:
                    self._push_copy(row)
                    pushed += 1
                elif entry.retry():
                    moved += 1
                else:  # someone moved it between the lookup and now: pushing a copy would run it twice
                    skipped.append(f"{row.jid} left the dead set meanwhile")
                    continue
            except (InvalidPayloadError, ValueError) as exc:
                skipped.append(f"{row.jid}: {exc}")
                continue
            FailedJob.objects.filter(pk=row.pk).update(retried_at=timezone.now())
        if moved or pushed:
            detail = []
            if moved:
                detail.append(f"{moved} moved from the dead set")
            if pushed:
                detail.append(f"{pushed} pushed again from the stored payload")
            messages.success(request, f"Enqueued {plural(moved + pushed, 'job')} again ({', '.join(detail)}).")
        for reason in skipped:
            messages.warning(request, f"Not retried: {reason}.")

    @admin.action(description="Mark selected failed jobs as resolved", permissions=["change"])
    def mark_resolved(self, request, queryset):
        count = queryset.filter(resolved_at__isnull=True).update(resolved_at=timezone.now())
        messages.success(request, f"Marked {plural(count, 'failed job')} as resolved.")

    @staticmethod
    def _dead_entry(dead, row):
        """The row's entry in the dead set if it is still there (looked up by score, not by a scan)."""
        died = row.failed_at.timestamp()
        window = (died - DEAD_SCORE_WINDOW_S, died + 5)
        return next(iter(dead.fetch(window, jid=row.jid)), None)

    @staticmethod
    def _push_copy(row):
        payload = {k: v for k, v in row.payload.items() if k != "dead_reason"}
        if isinstance(payload.get("retry_count"), int):
            payload["retry_count"] -= 1  # as a retry from the dead set: one more attempt, not a fresh count
        queue = payload.get("queue") if valid_queue_name(payload.get("queue")) else row.queue
        Queue(queue or "default").push(payload)
