"""Registered Job classes by name.  The worker only ever instantiates classes found here.

A class registers itself when its module is imported (``Job.__init_subclass__``);
each installed app's ``jobs.py`` and each module of ``BGJOBS["JOB_MODULES"]`` are imported
at start-up by ``apps.py``.  A payload's ``class`` string is looked up here and nowhere
else: it can never make the worker import a module.

A class registered once Django's start-up is over (``apps.ready``: imported by a view, a
URLconf, a shell) is one a worker, which imports only what start-up imports, does not know:
:func:`registered_after_startup` lists them for check ``django_bgjobs.W003``.
"""

from importlib import import_module

from django.apps import apps

from django_bgjobs.errors import ConfigurationError, UnknownJobError

_jobs = {}
# Names of the classes registered while Django was starting (before ``apps.ready``).
_at_startup = set()

#: How to make a class known to the worker: part of every "unknown job" message.
WHERE_JOBS_GO = (
    "define it in an installed app's jobs.py, or list its module in BGJOBS['JOB_MODULES'], "
    "and restart the worker"
)


def register(job_cls):
    """Add ``job_cls`` under ``job_cls.name``; a different class under the same name is an error."""
    name = job_cls.name
    existing = _jobs.get(name)
    if existing is not None and existing is not job_cls and _path(existing) != _path(job_cls):
        raise ConfigurationError(
            f"Job name {name!r} is used by both {_path(existing)} and {_path(job_cls)}; set a distinct `name`"
        )
    _jobs[name] = job_cls
    if not apps.ready:
        _at_startup.add(name)


def get(name):
    """Return the Job class registered as ``name`` or raise :class:`UnknownJobError`."""
    try:
        return _jobs[name]
    except (KeyError, TypeError):
        raise UnknownJobError(f"no registered Job is named {name!r}: {WHERE_JOBS_GO}") from None


def all_jobs():
    """A dict of name -> Job class, for system checks and the admin."""
    return dict(_jobs)


def registered_after_startup():
    """The Job classes registered after Django's start-up, by name: ones a worker does not know."""
    return {name: cls for name, cls in _jobs.items() if name not in _at_startup}


def import_job_modules():
    """Import each module of ``BGJOBS["JOB_MODULES"]`` (``apps.py`` calls it at start-up, after
    each app's ``jobs.py``).  A setting that is not a list of strings is left to check E006."""
    from django.conf import settings

    configured = getattr(settings, "BGJOBS", None)
    modules = configured.get("JOB_MODULES") if isinstance(configured, dict) else None
    if not isinstance(modules, (list, tuple)) or not all(isinstance(m, str) for m in modules):
        return
    for module in modules:
        try:
            import_module(module)
        except ImportError as exc:
            raise ConfigurationError(f"BGJOBS['JOB_MODULES'] names {module!r}, which cannot be imported: {exc}") from exc


def _path(cls):
    return f"{cls.__module__}.{cls.__qualname__}"
