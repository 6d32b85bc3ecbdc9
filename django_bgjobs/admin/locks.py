"""Unique locks: every unique-job lock held in Redis, with a Release button.

Read through :class:`django_bgjobs.api.UniqueLocks` (``SCAN``, so the page stays cheap with
many locks; it shows at most :data:`MAX_SHOWN` of them, sorted by class and age).  Releasing
deletes the lock whatever job holds it: the job itself is not touched.
"""

from django.contrib import messages
from django.urls import reverse

from django_bgjobs.admin.base import JobsPage, paginate, redirect_back
from django_bgjobs.api import UniqueLocks

MAX_SHOWN = 1_000


class UniqueLocksPage(JobsPage):
    template_name = "admin/django_bgjobs/locks.html"
    title = "Unique locks"
    nav = "locks"

    def get(self, request):
        klass = request.GET.get("class", "").strip()
        locks = []
        for lock in UniqueLocks().scan(klass=klass or None):
            locks.append(lock)
            if len(locks) >= MAX_SHOWN:
                break
        locks.sort(key=lambda lock: (lock.klass or "", lock.locked_at or 0, lock.key))
        pagination = paginate(request, len(locks), keep=("class",))
        return self.render(request, {
            "locks": locks[pagination.offset:pagination.offset + pagination.per_page], "pagination": pagination,
            "klass": klass, "capped": len(locks) >= MAX_SHOWN, "max_shown": MAX_SHOWN,
        })

    def post(self, request):
        back = reverse("admin:django_bgjobs_locks")
        key = request.POST.get("key", "")
        action = request.POST.get("action")
        locks = UniqueLocks()
        if action != "release":
            messages.error(request, f"Unknown action {action!r}.")
        elif not locks.is_lock_key(key):
            messages.error(request, f"{key!r} is not a unique-job lock.")
        elif locks.release(key):
            messages.success(request, f"Released {key}: an equal job may now be enqueued or started.")
        else:
            messages.warning(request, f"{key} was not held any more (its job ended, or it expired).")
        return redirect_back(request, back)
