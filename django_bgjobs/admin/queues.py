"""Queue pages: every queue, one queue's jobs (paged in Redis), one job, and clearing a queue.

Queues are named in URLs (``queues/default/``) and jobs by jid, never by list position:
a queue changes under the page as workers take jobs.
"""

from django.contrib import messages
from django.http import Http404, HttpResponseRedirect
from django_bgjobs.admin.base import JobsPage, admin_url, paginate, plural, redirect_back
from django_bgjobs.api import ProcessSet, Queue
from django_bgjobs.payload import valid_queue_name

ORDERS = ("newest", "oldest")


def get_queue(name):
    """The :class:`Queue` called ``name``; 404 for a name no queue can have."""
    if not valid_queue_name(name):
        raise Http404(f"{name!r} is not a valid queue name.")
    return Queue(name)


def queue_row(queue, size=None, served=()):
    """One queue as the Queues page and the dashboard list it: ``name``, ``size``, ``latency``,
    ``paused``, ``unserved`` (no live process serves it; ``served``: the names that one does,
    ``ProcessSet.served_queues()``) and ``problem`` (why it is shown unreadable: a name no queue
    can have, or a key of another type; its numbers are then left out)."""
    problem = queue.problem()
    if problem:
        return {"name": queue.name, "size": 0, "latency": None, "paused": False, "problem": problem,
                "unserved": False}
    return {"name": queue.name, "size": queue.size() if size is None else size, "latency": queue.latency(),
            "paused": queue.paused, "problem": None, "unserved": queue.name not in served}


class QueuesPage(JobsPage):
    """Every queue; POST ``action=forget`` removes a name shown unreadable from the list."""

    template_name = "admin/django_bgjobs/queues.html"
    title = "Queues"
    nav = "queues"

    def get(self, request):
        served = ProcessSet().served_queues()
        return self.render(request, {"queues": [queue_row(queue, served=served) for queue in Queue.all()]})

    def post(self, request):
        name = request.POST.get("name")
        back = admin_url(request, "django_bgjobs_queues")
        if request.POST.get("action") != "forget" or name is None:
            messages.error(request, f"Unknown action {request.POST.get('action')!r}.")
        # As listed: a name that is not UTF-8 is removed by its exact bytes.
        elif next((queue for queue in Queue.all() if queue.name == name), Queue(name)).forget():
            messages.success(request, f"Removed {name[:80]!r} from the list of queues; its key was left alone.")
        else:
            messages.warning(request, f"{name[:80]!r} was not in the list of queues any more.")
        return redirect_back(request, back)


class QueuePage(JobsPage):
    """One queue's jobs, newest or oldest first; POST ``action`` = pause, resume or delete (a jid)."""

    template_name = "admin/django_bgjobs/queue.html"
    nav = "queues"

    def get(self, request, queue):
        queue = get_queue(queue)
        order = request.GET.get("order", "newest")
        if order not in ORDERS:
            raise Http404(f"Order {order!r} is not one of {', '.join(ORDERS)}.")
        pagination = paginate(request, queue.size(), keep=("order",))
        jobs = queue.page(pagination.offset, pagination.per_page, newest_first=order == "newest")
        return self.render(request, {
            "title": f"Queue {queue.name}", "queue": queue, "paused": queue.paused, "latency": queue.latency(),
            "problem": queue.problem(),
            "jobs": jobs, "pagination": pagination, "order": order,
        })

    def post(self, request, queue):
        queue = get_queue(queue)
        action = request.POST.get("action")
        back = admin_url(request, "django_bgjobs_queue", queue.name)
        if action == "pause":
            queue.pause()
            messages.success(request, f"Paused queue {queue.name}: workers skip it until it is resumed.")
        elif action == "resume":
            queue.resume()
            messages.success(request, f"Resumed queue {queue.name}.")
        elif action == "delete":
            # By jid, or by member id: the exact entry, whatever its payload holds.
            jid, member = request.POST.get("jid", ""), request.POST.get("member", "")
            record = queue.find_member(member) if member else queue.find_job(jid) if jid else None
            name = record.jid or "with an unreadable payload" if record is not None else jid or member
            if record is not None and record.delete():
                messages.success(request, f"Deleted job {name} from queue {queue.name}.")
            else:
                messages.warning(request, f"Job {name or '(none given)'} is not in queue {queue.name} any more "
                                          "(a worker may have taken it).")
        else:
            messages.error(request, f"Unknown action {action!r}.")
        return redirect_back(request, back)


class QueueJobPage(JobsPage):
    """One waiting job, with its whole payload."""

    template_name = "admin/django_bgjobs/job.html"
    nav = "queues"

    def get(self, request, queue, jid):
        queue = get_queue(queue)
        job = queue.find_job(jid)
        if job is None:
            raise Http404(f"No job {jid} in queue {queue.name} (a worker may have taken it).")
        return self.render(request, {
            "title": f"Job {jid}", "job": job, "queue": queue, "kind": None,
            "list_url": admin_url(request, "django_bgjobs_queue", queue.name),
            "list_title": f"Queue {queue.name}",
        })


class ClearQueuePage(JobsPage):
    """GET: the confirmation page (writes nothing).  POST: delete every job of the queue."""

    template_name = "admin/django_bgjobs/confirm.html"
    nav = "queues"

    def get(self, request, queue):
        queue = get_queue(queue)
        size = queue.size()
        return self.render(request, {
            "title": f"Clear queue {queue.name}?",
            "question": f"Delete all {plural(size, 'job')} waiting in queue {queue.name}? "
                        "They will not run, and this cannot be undone.",
            "confirm_label": f"Yes, delete {plural(size, 'job')}",
            "cancel_url": admin_url(request, "django_bgjobs_queue", queue.name),
            "danger": True, "empty": size == 0,
            "list_url": admin_url(request, "django_bgjobs_queue", queue.name),
            "list_title": f"Queue {queue.name}",
        })

    def post(self, request, queue):
        queue = get_queue(queue)
        removed = queue.clear()
        messages.success(request, f"Cleared queue {queue.name}: deleted {plural(removed, 'job')}.")
        return HttpResponseRedirect(admin_url(request, "django_bgjobs_queues"))
