"""Settings: ``settings.BGJOBS`` merged over :data:`DEFAULTS`, read lazily.

Nothing reads Django settings at import time.  :func:`get_settings` caches the
merged dict; Django's ``setting_changed`` signal clears the cache so
``override_settings(BGJOBS=...)`` works in tests.  Defaults follow Sidekiq's
so operators recognise them.
"""

import os
from functools import lru_cache

from django.core.signals import setting_changed
from django.dispatch import receiver

from django_bgjobs.errors import ConfigurationError

DAY_S = 24 * 60 * 60
#: The values ``BGJOBS["SIDEKIQ_VERSION"]`` takes.
SIDEKIQ_VERSIONS = (6, 7, 8)

DEFAULTS = {
    # Connection: REDIS_URL (env var REDIS_URL wins when set), or REDIS = {"CACHE": alias}
    # to reuse a django-redis cache's client, or REDIS = {...} keyword arguments for redis.Redis.
    "REDIS_URL": "redis://localhost:6379/0",
    "REDIS": None,
    "KEY_PREFIX": "",
    # The Sidekiq version whose forms we write where they differ (6, 7 or 8; see
    # docs/redis-layout.rst): timestamps, the busy-jobs key.  Every version's form is read.
    "SIDEKIQ_VERSION": 7,
    # A client we build gives up connecting / waiting for a reply after these many seconds;
    # an enqueue that hits a connection error or timeout is tried this many more times.
    "SOCKET_CONNECT_TIMEOUT_S": 2,
    "SOCKET_TIMEOUT_S": 5,
    "ENQUEUE_RETRIES": 0,
    # The largest payload (encoded JSON bytes) perform_later accepts; None: no limit.
    "MAX_PAYLOAD_BYTES": 1024 * 1024,
    # "redis" pushes to Redis; "inline" runs jobs at once in-process (after a JSON round trip).
    "BACKEND": "redis",
    "DEFER_ON_COMMIT": True,
    "QUEUES": ["default"],
    "CONCURRENCY": 5,
    # Jobs with an `async def perform` running at once on each worker process's event loop.
    "ASYNC_CONCURRENCY": 100,
    "SHUTDOWN_TIMEOUT_S": 25,
    # A job past its class's `timeout` gets JobTimeout raised in its thread; still running
    # this much later, its worker process (under --processes) is replaced.
    "JOB_TIMEOUT_GRACE_S": 10,
    # A job in flight each time its worker process died, this many times: the dead set.
    "MAX_CRASHES": 3,
    "MAX_RETRIES": 25,
    "DEAD_MAX_JOBS": 10_000,
    "DEAD_TIMEOUT_S": 180 * DAY_S,
    "HEARTBEAT_INTERVAL_S": 5,
    "HEARTBEAT_TTL_S": 30,
    "POLL_INTERVAL_S": 1,
    "FETCH_TIMEOUT_S": 2,
    # Jobs a worker process takes ahead of its threads, held in its in-flight list (so a
    # crash loses none); None: as many as its threads.  0: each thread takes its own.
    "PREFETCH": None,
    "RECONNECT_MAX_WAIT_S": 10,
    # A FailedJob row for every job that reaches the dead set (see failures.py), kept this
    # long (None: for ever); the rows outlive the dead set's own caps.
    "RECORD_FAILED_JOBS": True,
    "FAILED_JOBS_RETENTION_S": 180 * DAY_S,
    # Recurring jobs: a dict of name -> definition, and/or a YAML file of the same.
    "SCHEDULE": {},
    "SCHEDULE_FILE": None,
    # A tick older than this when a worker first sees it was missed (worker down): it is
    # enqueued only for schedules with catch_up (the last missed one), else skipped.
    "CRON_GRACE_S": 60,
    # Unique jobs: a lock whose job sets no lock_ttl expires this long after the job is due
    # (so no lock outlives its job for long); a while_executing job whose run lock is held
    # goes back to the schedule set for about this long.
    "UNIQUE_LOCK_TTL_S": DAY_S,
    "UNIQUE_RESCHEDULE_S": 5,
    # Batches: a batch's data stays this long after it ended (succeeded, or every job that
    # did not succeed is dead), and at most BATCH_UNFINISHED_TTL_S after its last change.
    "BATCH_TTL_S": 3 * DAY_S,
    "BATCH_UNFINISHED_TTL_S": 30 * DAY_S,
    # Dotted paths of modules imported at start-up, as each installed app's jobs.py is: for Job
    # classes defined elsewhere (a worker knows only the classes these imports define).
    "JOB_MODULES": [],
    # Middleware (docs/middleware.rst): dotted paths of classes built as cls(call_next), outermost
    # first, around the built-in ones below (a built-in named here runs at that place instead).
    "CLIENT_MIDDLEWARE": [],
    "SERVER_MIDDLEWARE": [],
}

#: The built-in client middleware, outermost first: what every payload goes through on its
#: way to Redis (django_bgjobs.middleware).  A batch's ``bid`` first (so ``before_enqueue`` and
#: the lock see it), then the class's ``before_enqueue``, then the unique lock, innermost, so
#: its guard is built on the payload as it will be written.
CLIENT_BUILTINS = [
    "django_bgjobs.batches.client.BatchMembership",
    "django_bgjobs.job.EnqueueCallbacks",
    "django_bgjobs.unique.client.UniqueLocks",
    "django_bgjobs.activejob.ActiveJobForm",
]

#: The built-in server middleware, outermost first: what wraps every attempt of a job (in a
#: worker, the inline backend and the test helpers; not perform_now).  Expiry first, so a job
#: too late is dropped before it takes a lock; job_started after the two that may end an
#: attempt unrun (so such an attempt sends no signal); the timeout innermost but for the perform
#: callbacks, so the watchdog's JobTimeout lands in the job's own code, never in a Redis write.
#: A built-in may also define ``end_writes(pipe, end)``: its writes join the MULTI that ends
#: the job (django_bgjobs.job_end).
SERVER_BUILTINS = [
    "django_bgjobs.expiry.Expiry",
    "django_bgjobs.unique.server.LockRules",
    "django_bgjobs.execution.Started",
    "django_bgjobs.batches.server.BatchEnds",
    "django_bgjobs.metrics.RecordMetrics",
    "django_bgjobs.execution.Timeout",
    "django_bgjobs.callbacks.PerformCallbacks",
]


#: Keys that still work but are going away: key -> what to use instead.  ``manage.py check``
#: reports each one it finds as ``django_bgjobs.W001``; every other key not in :data:`DEFAULTS`
#: is an error (``E005``) that stops ``runjobs``.  None is deprecated today.
DEPRECATED = {}


@lru_cache(maxsize=1)
def get_settings():
    """Return the merged settings dict (cached until a setting changes)."""
    from django.conf import settings

    configured = getattr(settings, "BGJOBS", None) or {}
    if not isinstance(configured, dict):
        raise ConfigurationError(f"settings.BGJOBS must be a dict, not {type(configured).__name__}")
    merged = dict(DEFAULTS)
    merged.update(configured)
    env_url = os.environ.get("REDIS_URL")
    if env_url:
        merged["REDIS_URL"] = env_url
    return merged


def get(name):
    """Return one setting by name."""
    return get_settings()[name]


def unknown_keys():
    """Keys in ``settings.BGJOBS`` that django-bgjobs does not know (a system check's error)."""
    from django.conf import settings

    return sorted(set(getattr(settings, "BGJOBS", None) or {}) - set(DEFAULTS) - set(DEPRECATED))


def deprecated_keys():
    """Keys in ``settings.BGJOBS`` listed in :data:`DEPRECATED` (a system check warns)."""
    from django.conf import settings

    return sorted(set(getattr(settings, "BGJOBS", None) or {}) & set(DEPRECATED))


@receiver(setting_changed)
def _reset(setting, **kwargs):
    if setting in ("BGJOBS",):
        get_settings.cache_clear()
