"""What every job page shares: permissions, the admin's context, the tab bar, paging, redirects.

A page is a :class:`JobsPage` subclass.  ``get`` only reads, through ``django_bgjobs.api``;
``post`` changes something, ends with a ``messages`` notice and redirects (so a reload
never repeats it).  :class:`~django_bgjobs.admin.site.DashboardAdmin` mounts every page
under ``admin/django_bgjobs/dashboard/`` wrapped in ``admin_site.admin_view`` (staff
login, CSRF, never cached); :meth:`JobsPage.dispatch` then asks for the ``Dashboard``
model's permissions: ``view`` to read, ``change`` to act.

To add a page (``docs/admin.rst`` has a worked example):

1. subclass :class:`JobsPage` with ``template_name``, ``title`` and ``nav`` (the tab to
   highlight), and write ``get`` (and ``post`` for actions);
2. add its route to :meth:`DashboardAdmin.page_urls`;
3. add a :class:`NavLink` to :data:`NAV_LINKS` (a link to any admin URL: a model's
   changelist works too).
"""

import logging
from dataclasses import dataclass
from urllib.parse import urlencode

import redis
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View

from django_bgjobs.connection import describe
from django_bgjobs.errors import BgJobsError
from django_bgjobs.models import Dashboard

logger = logging.getLogger(__name__)

PAGE_SIZE = 25
VIEW_PERMISSIONS = ("django_bgjobs.view_dashboard", "django_bgjobs.change_dashboard")


@dataclass(frozen=True)
class NavLink:
    """One tab of the job pages' tab bar, shown to users holding any of ``permissions``."""

    slug: str
    label: str
    url_name: str
    permissions: tuple = VIEW_PERMISSIONS


#: The tab bar, in order (Sidekiq's, plus the failure records).  Append to add a page.
NAV_LINKS = [
    NavLink("dashboard", "Dashboard", "admin:django_bgjobs_dashboard_changelist"),
    NavLink("processes", "Processes", "admin:django_bgjobs_processes"),
    NavLink("queues", "Queues", "admin:django_bgjobs_queues"),
    NavLink("retries", "Retries", "admin:django_bgjobs_retries"),
    NavLink("scheduled", "Scheduled", "admin:django_bgjobs_scheduled"),
    NavLink("dead", "Dead", "admin:django_bgjobs_dead"),
    NavLink("batches", "Batches", "admin:django_bgjobs_batches"),
    NavLink("locks", "Unique locks", "admin:django_bgjobs_locks"),
    NavLink("recurring", "Recurring jobs", "admin:django_bgjobs_recurring"),
    NavLink("metrics", "Metrics", "admin:django_bgjobs_metrics"),
    NavLink(
        "failed", "Failed jobs", "admin:django_bgjobs_failedjob_changelist",
        ("django_bgjobs.view_failedjob", "django_bgjobs.change_failedjob"),
    ),
]


def nav_links(request, current):
    """``[{"label", "url", "current"}]`` for the tabs ``request.user`` may open."""
    links = []
    for link in NAV_LINKS:
        if not any(request.user.has_perm(perm) for perm in link.permissions):
            continue
        try:
            url = reverse(link.url_name, current_app=getattr(request, "current_app", None))
        except NoReverseMatch:  # a page whose admin is not registered on this site
            continue
        links.append({"label": link.label, "url": url, "current": link.slug == current})
    return links


class JobsPage(View):
    """Base of every job page (see the module docstring)."""

    #: The ``DashboardAdmin`` that mounted this page (given to ``as_view``).
    model_admin = None
    template_name = None
    title = ""
    #: The slug of the :class:`NavLink` to highlight.
    nav = ""

    def dispatch(self, request, *args, **kwargs):
        # Links and redirects then point into the admin site serving this request (which may
        # be a custom AdminSite), as the admin's own views arrange.
        request.current_app = self.model_admin.admin_site.name
        if not self.model_admin.has_view_or_change_permission(request):
            raise PermissionDenied
        if request.method not in ("GET", "HEAD", "OPTIONS") and not self.model_admin.has_change_permission(request):
            raise PermissionDenied
        try:
            return super().dispatch(request, *args, **kwargs)
        except BgJobsError as exc:
            if request.method != "POST":
                raise
            # An action the data refuses (a key of the wrong type, a set that kept changing):
            # say so on the page it came from; nothing was changed.
            messages.error(request, str(exc))
            return HttpResponseRedirect(request.get_full_path())
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            logger.warning("admin page %s: Redis is not answering: %s", request.path, exc)
            return self.render(
                request, {"redis_error": str(exc), "redis_at": describe(), "title": "Redis is not answering"},
                template_name="admin/django_bgjobs/redis_error.html", status=503,
            )

    def context(self, request, **extra):
        """The admin's usual context plus the tab bar and ``can_change`` for templates."""
        site = self.model_admin.admin_site
        return {
            **site.each_context(request),
            "opts": Dashboard._meta,
            "app_label": Dashboard._meta.app_label,
            "title": self.title,
            "nav_links": nav_links(request, self.nav),
            "can_change": self.model_admin.has_change_permission(request),
            "dashboard_url": admin_url(request, "django_bgjobs_dashboard_changelist"),
            **extra,
        }

    def render(self, request, extra=None, template_name=None, status=200):
        context = self.context(request, **(extra or {}))
        return TemplateResponse(request, template_name or self.template_name, context, status=status)


def admin_url(request, name, *args):
    """``reverse("admin:<name>", args)`` in the admin site serving ``request``."""
    return reverse(f"admin:{name}", args=args, current_app=getattr(request, "current_app", None))


# -- paging ---------------------------------------------------------------------------------


@dataclass
class Pagination:
    """One page of ``total`` items, ``per_page`` a page; ``number`` counts from 1."""

    number: int
    total: int
    per_page: int
    query: dict

    @property
    def num_pages(self):
        return max(1, -(-self.total // self.per_page))

    @property
    def offset(self):
        return (self.number - 1) * self.per_page

    @property
    def first_index(self):
        return self.offset + 1 if self.total else 0

    @property
    def last_index(self):
        return min(self.offset + self.per_page, self.total)

    @property
    def has_previous(self):
        return self.number > 1

    @property
    def has_next(self):
        return self.number < self.num_pages

    def url(self, number):
        return "?" + urlencode({**self.query, "page": number})

    @property
    def previous_url(self):
        return self.url(self.number - 1)

    @property
    def next_url(self):
        return self.url(self.number + 1)

    @property
    def first_url(self):
        return self.url(1)

    @property
    def last_url(self):
        return self.url(self.num_pages)


def paginate(request, total, per_page=PAGE_SIZE, keep=()):
    """The :class:`Pagination` for ``?page=N``: 404 for a page that is not a whole number >= 1,
    the last page for one past the end (the list may have shrunk since the link was made).
    ``keep`` names query parameters (search, order) the page links carry along."""
    raw = request.GET.get("page", "1")
    try:
        number = int(raw)
    except ValueError:
        raise Http404(f"Page {raw!r} is not a page number.") from None
    if number < 1:
        raise Http404(f"Page {number} does not exist; pages count from 1.")
    query = {name: request.GET[name] for name in keep if request.GET.get(name)}
    pagination = Pagination(number, total, per_page, query)
    pagination.number = min(number, pagination.num_pages)
    return pagination


# -- after an action ------------------------------------------------------------------------


def redirect_back(request, fallback):
    """Redirect to the form's ``next`` field when it is a URL of this site, else to ``fallback``."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return HttpResponseRedirect(target)
    return HttpResponseRedirect(fallback)


def plural(count, noun, plural_noun=None):
    """``"1 job"``, ``"3 jobs"``."""
    return f"{count:,} {noun if count == 1 else (plural_noun or noun + 's')}"
