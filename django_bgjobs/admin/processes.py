"""Processes: every live worker process, what each busy thread runs, and quiet / stop buttons.

Quiet and stop are remote commands the worker reads at its next heartbeat (like
Sidekiq's TSTP and TERM), so the page says "asked", not "done".  Names in the ``processes``
set that no live process answers to (expired heartbeats, keys of other types) are listed
apart, with a button that removes them.
"""

from django.contrib import messages
from django_bgjobs.admin.base import JobsPage, admin_url, redirect_back
from django_bgjobs.api import ProcessSet, WorkSet


class ProcessesPage(JobsPage):
    template_name = "admin/django_bgjobs/processes.html"
    title = "Processes"
    nav = "processes"

    def get(self, request):
        processes = list(ProcessSet())
        work = {}
        for identity, thread_id, job in WorkSet():
            work.setdefault(identity, []).append({"thread_id": thread_id, **job})
        rows = [{"process": process, "work": work.get(process.identity, [])} for process in processes]
        return self.render(request, {
            "rows": rows, "stale": ProcessSet().stale(),
            "busy": sum(process.busy for process in processes),
            "threads": sum(process.concurrency or 0 for process in processes),
        })

    def post(self, request):
        identity = request.POST.get("identity", "")
        action = request.POST.get("action")
        back = admin_url(request, "django_bgjobs_processes")
        if action == "cleanup":
            removed = ProcessSet().cleanup()
            messages.success(request, f"Removed {removed} name{'s' if removed != 1 else ''} of no live process "
                                      "from the list of processes.")
            return redirect_back(request, back)
        if action not in ("quiet", "stop"):
            messages.error(request, f"Unknown action {action!r}.")
            return redirect_back(request, back)
        process = ProcessSet().get(identity) if identity else None
        if process is None:
            messages.warning(request, f"Process {identity or '(none given)'} is not running any more.")
        elif action == "quiet":
            process.quiet()
            messages.success(request, f"Asked {identity} to stop taking new jobs; its running jobs finish "
                                      "(within a heartbeat).")
        else:
            process.stop()
            messages.success(request, f"Asked {identity} to shut down; running jobs get the shutdown timeout "
                                      "to finish, then go back to their queues.")
        return redirect_back(request, back)
