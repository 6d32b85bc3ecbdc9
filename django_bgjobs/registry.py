"""Registered Job classes by name.  The worker only ever instantiates classes found here.

A class registers itself when its module is imported (``Job.__init_subclass__``);
each installed app's ``jobs.py`` is imported at start-up by ``apps.py``.  A payload's
``class`` string is looked up here and nowhere else: it can never make the worker
import a module.
"""

from django_bgjobs.errors import ConfigurationError, UnknownJobError

_jobs = {}


def register(job_cls):
    """Add ``job_cls`` under ``job_cls.name``; a different class under the same name is an error."""
    name = job_cls.name
    existing = _jobs.get(name)
    if existing is not None and existing is not job_cls and _path(existing) != _path(job_cls):
        raise ConfigurationError(
            f"Job name {name!r} is used by both {_path(existing)} and {_path(job_cls)}; set a distinct `name`"
        )
    _jobs[name] = job_cls


def get(name):
    """Return the Job class registered as ``name`` or raise :class:`UnknownJobError`."""
    try:
        return _jobs[name]
    except (KeyError, TypeError):
        raise UnknownJobError(f"no registered Job is named {name!r}") from None


def all_jobs():
    """A dict of name -> Job class, for system checks and the admin."""
    return dict(_jobs)


def _path(cls):
    return f"{cls.__module__}.{cls.__qualname__}"
