"""The ``Schedule`` ModelAdmin: recurring jobs defined in the database.

The form offers the job as a choice among the registered Jobs and checks the row with the
model's ``clean()`` (cron, time zone, queue, class).  Saving or deleting a row reaches Redis
when its transaction commits, so running workers follow without a restart.  Every schedule,
whatever its source, is on the "Recurring jobs" page, which the list and the form link to.
"""

from django import forms
from django.contrib import admin
from django.utils.html import format_html

from django_bgjobs import registry
from django_bgjobs.models import Schedule
from django_bgjobs.cron.definitions import describe_cron
from django_bgjobs.templatetags.bgjobs_admin import timeago


def job_choices(current=""):
    """``(name, label)`` of every registered Job that is ``schedulable`` (not the library's
    internal ones), sorted; ``current`` kept when it is not one."""
    choices = []
    jobs = registry.all_jobs()
    for name, job_class in sorted(jobs.items()):
        if not job_class.schedulable:
            continue
        path = f"{job_class.__module__}.{job_class.__qualname__}"
        choices.append((name, name if path == name else f"{name} ({path})"))
    if current and current not in {name for name, _ in choices}:
        # A dotted path of a job registered under another name, or a class no longer registered:
        # kept so the form does not change it silently; clean() says whether it is usable.
        # A row naming an internal job (made before it was hidden, or by hand) shows it as such.
        choices.append((current, f"{current} (internal)" if current in jobs else f"{current} (not a registered name)"))
    return [("", "---------")] + choices


class ScheduleForm(forms.ModelForm):
    job_class = forms.ChoiceField(label="Job", help_text="A registered Job.")

    class Meta:
        model = Schedule
        fields = ["name", "cron", "job_class", "queue", "args", "kwargs", "enabled", "timezone", "catch_up",
                  "description"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The row's own value, not the posted one: a posted name outside the choices is refused.
        self.fields["job_class"].choices = job_choices(self.initial.get("job_class") or "")


class ScheduleAdmin(admin.ModelAdmin):
    form = ScheduleForm
    change_list_template = "admin/django_bgjobs/schedule/change_list.html"
    change_form_template = "admin/django_bgjobs/schedule/change_form.html"
    list_display = ("name", "cron_expression", "in_words", "job_class", "queue_label", "enabled", "updated")
    list_filter = ("enabled",)
    search_fields = ("name", "job_class", "description", "cron")
    fieldsets = [
        (None, {"fields": ("name", "cron", "job_class", "queue", "args", "kwargs", "enabled")}),
        ("More", {"fields": ("timezone", "catch_up", "description")}),
    ]

    @admin.display(description="cron", ordering="cron")
    def cron_expression(self, row):
        return format_html('<code class="bgjobs-nowrap">{}</code>', row.cron)

    @admin.display(description="in words")
    def in_words(self, row):
        return describe_cron(row.cron)

    @admin.display(description="queue", ordering="queue")
    def queue_label(self, row):
        return row.queue or "(job's own)"

    @admin.display(description="updated", ordering="updated_at")
    def updated(self, row):
        return timeago(row.updated_at)
