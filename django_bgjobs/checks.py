"""System checks (``manage.py check``).  They read settings only: no network I/O (but W050/W051).

* ``django_bgjobs.E001``: ``BGJOBS`` is not a dict.
* ``django_bgjobs.E002``: ``BGJOBS["QUEUES"]`` is empty, not a list, or holds an invalid queue
  name or ``name,weight`` entry.
* ``django_bgjobs.E003``: ``BGJOBS["BACKEND"]`` is neither ``"redis"`` nor ``"inline"``.
* ``django_bgjobs.E004``: ``BGJOBS["CONCURRENCY"]`` or ``["ASYNC_CONCURRENCY"]`` is not a whole number >= 1.
* ``django_bgjobs.E070``: ``BGJOBS["SIDEKIQ_VERSION"]`` is not 6, 7 or 8.
* ``django_bgjobs.E030``: ``BGJOBS["PREFETCH"]`` is neither None nor a whole number >= 0.
* ``django_bgjobs.E040``: ``BGJOBS["UNIQUE_LOCK_TTL_S"]``, ``["UNIQUE_RESCHEDULE_S"]``, ``["BATCH_TTL_S"]``
  or ``["BATCH_UNFINISHED_TTL_S"]`` is not a number of seconds above 0.
* ``django_bgjobs.E005``: ``BGJOBS`` has a key django-bgjobs does not know (a typo: the hint
  names the closest known key).  An error, so ``runjobs`` refuses to start rather than run
  on a default (a mistyped ``REDIS_URL`` would attach the worker to ``localhost``).
* ``django_bgjobs.W001``: ``BGJOBS`` has a deprecated key (``conf.DEPRECATED``).
* ``django_bgjobs.W002``: a registered Job's class-level ``queue`` is not in ``BGJOBS["QUEUES"]``,
  so a worker started without ``-q`` never runs it (its jobs wait for ever).
* ``django_bgjobs.E006``: ``BGJOBS["JOB_MODULES"]`` is not a list of dotted module paths.
* ``django_bgjobs.W003``: a Job class was imported after start-up (by the URLconf, a view...):
  a worker, which imports only each app's ``jobs.py`` and ``JOB_MODULES``, does not know it,
  so its jobs would die with "no registered Job is named ...".
* ``django_bgjobs.E010``: a recurring job in ``BGJOBS["SCHEDULE"]`` or ``BGJOBS["SCHEDULE_FILE"]``
  is invalid (bad cron, unknown class, unknown time zone, bad field), or the file cannot be read.
* ``django_bgjobs.E020``, ``E021``, ``W020``: a ``RedisTaskBackend`` in ``TASKS`` is misconfigured;
  these are the backend's own ``check()`` (``django_bgjobs.tasks``), which Django's tasks check calls.

* ``django_bgjobs.E050``: a timeout, retry or limit setting (``SOCKET_CONNECT_TIMEOUT_S``,
  ``SOCKET_TIMEOUT_S``, ``ENQUEUE_RETRIES``, ``MAX_PAYLOAD_BYTES``, ``JOB_TIMEOUT_GRACE_S``,
  ``MAX_CRASHES``) is out of its range.
* ``django_bgjobs.E060``: a ``BGJOBS["CLIENT_MIDDLEWARE"]`` or ``["SERVER_MIDDLEWARE"]`` entry cannot be
  imported, or is not a class built as ``cls(call_next)`` with a ``__call__`` (or the setting is not a list).
* ``django_bgjobs.W050`` (``check --deploy`` only): Redis's ``maxmemory-policy`` lets it evict keys,
  so jobs can be lost silently.
* ``django_bgjobs.W051`` (``check --deploy`` only): Redis could not be asked for its policy.

W050 and W051 are the exception to "no network I/O": a deploy check (``deploy=True``, tag
``redis``) runs only when asked for with ``manage.py check --deploy``, where talking to the
production Redis is the point, never in a plain ``check``, ``runserver`` or ``migrate``.
"""

import difflib
import math

import redis
from django.core.checks import Error, Tags, Warning, register

from django_bgjobs import conf
from django_bgjobs.errors import ConfigurationError


@register(Tags.compatibility)
def check_settings(app_configs=None, **kwargs):
    from django.conf import settings

    raw = getattr(settings, "BGJOBS", None)
    if raw is not None and not isinstance(raw, dict):
        return [Error("BGJOBS must be a dict.", hint="BGJOBS = {'QUEUES': ['default']}", id="django_bgjobs.E001")]
    from django_bgjobs.job import check_queue_name

    errors = []
    for key in conf.unknown_keys():
        errors.append(Error(f"BGJOBS has an unknown key {key!r}.", hint=_did_you_mean(key), id="django_bgjobs.E005"))
    for key in conf.deprecated_keys():
        errors.append(Warning(
            f"BGJOBS[{key!r}] is deprecated.", hint=f"Use {conf.DEPRECATED[key]} instead.", id="django_bgjobs.W001",
        ))
    queues = conf.get("QUEUES")
    try:
        if not queues:
            raise ValueError("BGJOBS['QUEUES'] is empty")
        if not isinstance(queues, (list, tuple)):
            # A bare string would be served one character at a time: "default" -> "d", "e", ...
            raise ValueError(f"BGJOBS['QUEUES'] is {queues!r}; give a list of queue names")
        for queue in queues:
            name, comma, weight = queue.partition(",") if isinstance(queue, str) else (queue, "", "")
            check_queue_name(name.strip() if isinstance(name, str) else name)
            if comma and not (weight.strip().isdigit() and int(weight) >= 1):
                raise ValueError(f"queue weight in {queue!r} must be a whole number >= 1 (as runjobs requires)")
    except (ValueError, TypeError) as exc:
        errors.append(Error(str(exc), hint="BGJOBS['QUEUES'] = ['critical', 'default', 'low']", id="django_bgjobs.E002"))
    if conf.get("BACKEND") not in ("redis", "inline"):
        errors.append(Error(
            f"BGJOBS['BACKEND'] is {conf.get('BACKEND')!r}.", hint="Use 'redis', or 'inline' in tests.",
            id="django_bgjobs.E003",
        ))
    for name, hint in (("CONCURRENCY", "A whole number of threads, e.g. 5."),
                       ("ASYNC_CONCURRENCY", "A whole number of async jobs run at once, e.g. 100.")):
        concurrency = conf.get(name)
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
            errors.append(Error(f"BGJOBS[{name!r}] is {concurrency!r}.", hint=hint, id="django_bgjobs.E004"))
    if conf.get("SIDEKIQ_VERSION") not in conf.SIDEKIQ_VERSIONS or isinstance(conf.get("SIDEKIQ_VERSION"), bool):
        errors.append(Error(
            f"BGJOBS['SIDEKIQ_VERSION'] is {conf.get('SIDEKIQ_VERSION')!r}.",
            hint="6, 7 or 8: the Sidekiq whose forms are written where they differ (docs/redis-layout.rst).",
            id="django_bgjobs.E070",
        ))
    prefetch = conf.get("PREFETCH")
    if prefetch is not None and (not isinstance(prefetch, int) or isinstance(prefetch, bool) or prefetch < 0):
        errors.append(Error(
            f"BGJOBS['PREFETCH'] is {prefetch!r}.",
            hint="None (as many as the worker's threads), 0 (no prefetch) or a whole number of jobs.",
            id="django_bgjobs.E030",
        ))
    for key in ("UNIQUE_LOCK_TTL_S", "UNIQUE_RESCHEDULE_S", "BATCH_TTL_S", "BATCH_UNFINISHED_TTL_S"):
        value = conf.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            errors.append(Error(
                f"BGJOBS[{key!r}] is {value!r}.",
                hint=f"A number of seconds above 0; the default is {conf.DEFAULTS[key]}.", id="django_bgjobs.E040",
            ))
    return errors


def _did_you_mean(key):
    """The hint of E005: the closest known key, if one is close, and the known keys."""
    known = sorted(conf.DEFAULTS)
    close = difflib.get_close_matches(key.upper() if isinstance(key, str) else repr(key), known, n=1)
    listed = "Known keys: " + ", ".join(known) + "."
    return f"Did you mean {close[0]!r}? {listed}" if close else listed


def served_queue_names():
    """The queue names of ``BGJOBS["QUEUES"]`` (``"name,weight"`` entries without the weight):
    what a worker started without ``-q`` serves."""
    queues = conf.get("QUEUES")
    if not isinstance(queues, (list, tuple)):
        return set()  # E002 says so
    return {str(queue).partition(",")[0].strip() for queue in queues}


@register(Tags.compatibility)
def check_job_queues(app_configs=None, **kwargs):
    """W002 for each registered Job whose class-level ``queue`` no worker started without ``-q``
    serves.  The library's own jobs are left out: their queue is chosen per payload."""
    from django.conf import settings

    if not isinstance(getattr(settings, "BGJOBS", None) or {}, dict):
        return []  # E001 already says so
    from django_bgjobs import registry

    served = served_queue_names()
    return [
        Warning(
            f"Job {name} has queue {job_class.queue!r}, which is not in BGJOBS['QUEUES']: a worker started "
            "without -q never runs it, and its jobs wait for ever.",
            hint=f"Add {job_class.queue!r} to BGJOBS['QUEUES'], or start a worker with -q {job_class.queue}.",
            id="django_bgjobs.W002",
        )
        for name, job_class in sorted(registry.all_jobs().items())
        if job_class.queue not in served and not job_class.__module__.startswith("django_bgjobs.")
    ]


@register(Tags.compatibility)
def check_job_modules(app_configs=None, **kwargs):
    """E006 for a ``JOB_MODULES`` that is not a list of strings; W003 for each Job class
    registered after start-up.  The URLconf is loaded first (as a web process does, and as
    Django's own URL check does), so a Job defined in a view's module is seen."""
    from django.conf import settings

    if not isinstance(getattr(settings, "BGJOBS", None) or {}, dict):
        return []  # E001 already says so
    from django_bgjobs import registry

    errors = []
    modules = conf.get("JOB_MODULES")
    if not isinstance(modules, (list, tuple)) or not all(isinstance(module, str) for module in modules):
        errors.append(Error(
            f"BGJOBS['JOB_MODULES'] is {modules!r}.", hint="A list of dotted module paths, e.g. ['billing.tasks'].",
            id="django_bgjobs.E006",
        ))
    try:
        from django.urls import get_resolver

        get_resolver().url_patterns
    except Exception:  # noqa: BLE001  Django's URL checks report a URLconf that cannot load
        pass
    for name, job_class in sorted(registry.registered_after_startup().items()):
        errors.append(Warning(
            f"Job {name} (module {job_class.__module__}) is imported after start-up, so a worker does not "
            "know it: its jobs would die with 'no registered Job is named ...'.",
            hint=f"Move it to an installed app's jobs.py, or add {job_class.__module__!r} to BGJOBS['JOB_MODULES'].",
            id="django_bgjobs.W003",
        ))
    return errors


#: Reliability settings: key -> (test, what a valid value is).
_RELIABILITY_SETTINGS = {
    "SOCKET_CONNECT_TIMEOUT_S": (lambda v: _number(v) and v > 0, "a number of seconds above 0"),
    "SOCKET_TIMEOUT_S": (lambda v: _number(v) and v > 0, "a number of seconds above 0"),
    "ENQUEUE_RETRIES": (lambda v: _whole(v) and v >= 0, "a whole number >= 0"),
    "MAX_PAYLOAD_BYTES": (lambda v: v is None or (_whole(v) and v >= 1024), "None or a whole number >= 1024"),
    "JOB_TIMEOUT_GRACE_S": (lambda v: _number(v) and v >= 0, "a number of seconds >= 0"),
    "MAX_CRASHES": (lambda v: _whole(v) and v >= 1, "a whole number >= 1"),
}


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value):
    return isinstance(value, int) and not isinstance(value, bool)


@register(Tags.compatibility)
def check_reliability_settings(app_configs=None, **kwargs):
    """E050 for each timeout, retry or limit setting out of its range."""
    from django.conf import settings

    if not isinstance(getattr(settings, "BGJOBS", None) or {}, dict):
        return []  # E001 already says so
    errors = []
    for key, (valid, what) in _RELIABILITY_SETTINGS.items():
        value = conf.get(key)
        if not valid(value):
            errors.append(Error(
                f"BGJOBS[{key!r}] is {value!r}.", hint=f"Give {what}; the default is {conf.DEFAULTS[key]!r}.",
                id="django_bgjobs.E050",
            ))
    return errors


@register(Tags.compatibility)
def check_middleware(app_configs=None, **kwargs):
    """E060 for each middleware entry that cannot be imported or built (``django_bgjobs.middleware``)."""
    from django.conf import settings

    if not isinstance(getattr(settings, "BGJOBS", None) or {}, dict):
        return []  # E001 already says so
    from django_bgjobs import middleware

    return [
        Error(message, hint="Give the dotted path of a class built as cls(call_next); see docs/middleware.rst.",
              id="django_bgjobs.E060")
        for side in (middleware.CLIENT, middleware.SERVER)
        for message in middleware.problems(side)
    ]


@register("redis", deploy=True)
def check_redis_eviction(app_configs=None, **kwargs):
    """W050 / W051: the one check that asks Redis (network I/O), so it runs only with
    ``manage.py check --deploy``; ``runjobs`` asks the same at start and logs the warning."""
    from django.conf import settings

    if not isinstance(getattr(settings, "BGJOBS", None) or {}, dict) or conf.get("BACKEND") != "redis":
        return []
    from django_bgjobs import connection

    try:
        message = connection.eviction_warning(connection.eviction_policy())
    except (redis.RedisError, ConfigurationError) as exc:
        where = "" if isinstance(exc, ConfigurationError) else f" at {connection.describe()}"
        return [Warning(
            f"Could not ask Redis{where} for its maxmemory-policy: {exc}",
            hint="Check BGJOBS['REDIS_URL'] (or REDIS_URL) from this host; the worker cannot start without it.",
            id="django_bgjobs.W051",
        )]
    if message is None:
        return []
    return [Warning(message, hint="redis-cli CONFIG SET maxmemory-policy noeviction (and in redis.conf)",
                    id="django_bgjobs.W050")]


@register(Tags.compatibility)
def check_schedules(app_configs=None, **kwargs):
    """E010 for each recurring job from settings or the YAML file that a worker would skip.
    (Database rows are checked by the model form when saved.)"""
    from django.conf import settings

    if not isinstance(getattr(settings, "BGJOBS", None) or {}, dict):
        return []  # E001 already says so
    from django_bgjobs.cron import definitions as schedules

    errors = []
    schedules.configured(include_database=False, errors=errors)
    return [
        Error(str(exc), hint="See 'Recurring jobs' in the README for the fields and cron forms.", id="django_bgjobs.E010")
        for exc in errors
    ]
