"""Batches: every batch still in Redis with its progress, and one batch with its failed jobs.

Read through :class:`django_bgjobs.api.BatchSet` and ``BatchStatus``; nothing here writes.
"""

from django.http import Http404

from django_bgjobs.admin.base import JobsPage, paginate
from django_bgjobs.api import BatchSet
from django_bgjobs.batches.client import valid_bid

#: The most pending jids a batch's page lists.
MAX_PENDING_SHOWN = 100


class BatchesPage(JobsPage):
    template_name = "admin/django_bgjobs/batches.html"
    title = "Batches"
    nav = "batches"

    def get(self, request):
        batches = BatchSet()
        pagination = paginate(request, batches.size())
        return self.render(request, {
            "batches": batches.page(pagination.offset, pagination.per_page), "pagination": pagination,
        })


class BatchPage(JobsPage):
    template_name = "admin/django_bgjobs/batch.html"
    nav = "batches"

    def get(self, request, bid):
        status = BatchSet().get(bid) if valid_bid(bid) else None
        if status is None:
            raise Http404(f"No batch {bid} (it may have expired).")
        pending = status.jids()
        return self.render(request, {
            "title": f"Batch {status.description or bid}", "batch": status, "failed": status.failed_jobs(),
            "pending": pending[:MAX_PENDING_SHOWN], "pending_more": max(0, len(pending) - MAX_PENDING_SHOWN),
        })
