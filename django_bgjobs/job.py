"""The ``Job`` base class: what a user subclasses, and the ActiveJob-style API to enqueue it.

::

    class EmailSenderJob(Job):
        queue = "default"
        retry = 5

        def perform(self, user_id, email_type): ...

    EmailSenderJob.perform_later(user.id, "welcome")
    EmailSenderJob.set(wait=timedelta(hours=1), queue="low").perform_later(user.id, "digest")
    EmailSenderJob.perform_now(user.id, "welcome")

    class FetchFeedJob(Job):          # async: runs on the worker's event loop, many at once
        async def perform(self, url): ...

    await FetchFeedJob.aperform_later(url)   # from an async view

Options are class attributes, checked when the class is created, so a typo
fails at import rather than in production.  This module is client side: it
imports no worker code and opens no connection.
"""

import datetime
import inspect
import logging
from dataclasses import dataclass

from asgiref.sync import sync_to_async

from django_bgjobs import callbacks, client, execution, registry, serialization
from django_bgjobs.errors import ConfigurationError, Discard, InvalidOptionError
from django_bgjobs.payload import now_s, option_seconds, valid_queue_name

logger = logging.getLogger(__name__)

#: What a feature adds to every concrete Job subclass, without this module importing it:
#: ``check(cls, where)`` runs when the class is created, may set the class's checked options
#: (``_lock_options``) and raises :class:`ConfigurationError` on a mistake.  A feature package
#: adds its check when it is imported; ``django_bgjobs/__init__.py`` imports them all first.
class_checks = []
#: ``stamp(payload, job_class, args, kwargs)`` for each payload a Job builds, with the call's
#: own arguments (a unique lock's digest may cover ``lock_args(*args)``); added likewise.
payload_stamps = []

#: ``perform_bulk`` writes more jobs than this in chunks of this many, each in one atomic push
#: (as Sidekiq's ``push_bulk`` batch_size): see ``ConfiguredJob._enqueue_in_chunks``.
BULK_CHUNK_JOBS = 1000
_NO_KWARGS = {}  # shared, never changed: one empty dict for every item of a bulk

# Names users reach for from other libraries, mapped to ours.
_MISSPELLINGS = {
    "queue_as": "queue",
    "queue_name": "queue",
    "retries": "retry",
    "max_retries": "retry",
    "sidekiq_options": "queue / retry class attributes",
    "retry_count": "retry",
    "unique": "lock",
    "unique_args": "lock_args",
    "lock_expiration": "lock_ttl",
    "time_limit": "timeout",
    "expiry": "expires_in",
    "expires_after": "expires_in",
    "soft_time_limit": "timeout",
    "timeout_s": "timeout",
}


def check_queue_name(queue):
    """Raise :class:`InvalidOptionError` (a ``ValueError``) unless ``queue`` is a usable queue name."""
    if not valid_queue_name(queue):
        raise InvalidOptionError(
            f"queue name {queue!r} is invalid: use 1 to 128 letters, digits, '_', '-' or '.' (not '.' or '..')"
        )


def check_timeout(timeout):
    """Raise :class:`InvalidOptionError` unless ``timeout`` is None or a positive, finite number of seconds."""
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise InvalidOptionError(f"timeout must be None or a number of seconds > 0, not {timeout!r}")
    try:
        option_seconds("timeout", timeout, "> 0")
    except InvalidOptionError as exc:
        raise InvalidOptionError(f"timeout must be None or a number of seconds > 0: {exc}") from None


def check_retry(retry):
    """Raise :class:`InvalidOptionError` unless ``retry`` is None, a bool or a non-negative int."""
    if retry is None or isinstance(retry, bool):
        return
    if not isinstance(retry, int) or retry < 0:
        raise InvalidOptionError(f"retry must be True, False or a whole number >= 0, not {retry!r}")


class Job:
    """Subclass this and write ``perform``.  See the module docstring for the API."""

    #: The name stored in payloads' ``class``; default ``module.QualName``. Set it to share
    #: jobs with a Ruby Sidekiq (``name = "HardWorker"``).
    name = None
    #: The queue ``perform_later`` pushes to, like ActiveJob's ``queue_as``.
    queue = "default"
    #: Retries before the dead set: None = ``BGJOBS["MAX_RETRIES"]`` (25); 0 = straight to the
    #: dead set; False = no retry and no dead entry.
    retry = None
    #: Seconds ``perform`` may run before the worker raises ``JobTimeout`` in it (a failure that
    #: retries); None: no limit.  See "Job timeouts" in docs/guarantees.rst for what it can interrupt.
    timeout = None
    #: Sidekiq Pro's ``expires_in`` (seconds or a timedelta): a job not started within this
    #: long of being due is dropped unrun (counted as a success by its batch); None: never.
    expires_in = None
    _expires_in_s = None  # the checked expires_in, in seconds (set at class creation)
    #: ``perform_later`` (and the worker, for a payload from elsewhere) binds the arguments to
    #: ``perform``'s signature: ones that do not fit raise ``TypeError`` naming the job and the
    #: parameter, and nothing is written.  Set False when the signature does not say what
    #: ``perform`` takes (a decorator that changes it without ``functools.wraps``, a variadic
    #: ``perform`` behind a narrower ``__signature__``): the arguments then reach ``perform``
    #: unchecked, and a mistake fails the attempt (and is retried) instead of the enqueue.
    bind_arguments = True
    #: True on a base class that must not be registered.
    abstract = False
    #: True: ``perform_later`` writes Sidekiq's ActiveJob form, for a Rails worker (the Job's
    #: ``name`` is the Rails class name); see ``django_bgjobs.activejob``.
    activejob = False
    #: Offered as a choice in the admin's Schedule form.  The library's internal jobs (batch
    #: callbacks, ``django.tasks`` tasks, failed-job pruning) set False; a subclass sets True to
    #: opt back in.  Settings and the YAML file may name any registered Job either way.
    schedulable = True
    #: Unique jobs (see ``django_bgjobs.unique``): ``"until_executing"``, ``"until_executed"``,
    #: ``"while_executing"``, ``"until_and_while_executing"`` or ``"until_expired"``; None: no lock.
    lock = None
    #: What happens to a duplicate: ``"log"`` (dropped; ``perform_later`` returns None),
    #: ``"raise"`` (:class:`~django_bgjobs.UniqueJobError`), ``"reject"`` (the dead set),
    #: ``"replace"`` (the waiting one is removed) at enqueue; ``"reschedule"`` (default),
    #: ``"log"``, ``"reject"`` or ``"raise"`` when a while_executing job finds its run lock held.
    #: A dict ``{"client": ..., "server": ...}`` sets both sides of until_and_while_executing.
    on_conflict = None
    #: The lock's TTL (seconds or a timedelta), counted from when the job is due; required for
    #: until_expired.  None: ``BGJOBS["UNIQUE_LOCK_TTL_S"]`` (24 h).
    lock_ttl = None
    # Define ``lock_args(self, *args, **kwargs)`` returning the arguments the lock covers
    # (default: all of them).
    _lock_options = None  # the checked lock options (unique.LockOptions), set at class creation by unique

    #: ActiveJob's ``retry_on``: a list of ``RetryOn(ExceptionClass, wait=..., attempts=...)``.
    retry_on = ()
    #: ActiveJob's ``discard_on``: exception classes that drop the job (no retry, no dead entry).
    discard_on = ()
    # Whether the class overrides a perform / enqueue hook (set at class creation, so jobs
    # without hooks skip them at no cost).
    _has_perform_callbacks = False
    _has_enqueue_callbacks = False
    #: True when ``perform`` is ``async def`` (set at class creation): the worker runs it on
    #: its event loop, up to ``BGJOBS["ASYNC_CONCURRENCY"]`` at once per process.
    is_async = False

    # Set on the instance by the executor before ``perform`` runs.
    jid = None
    payload = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        where = f"{cls.__module__}.{cls.__qualname__}"
        for wrong, right in _MISSPELLINGS.items():
            if wrong in cls.__dict__:
                raise ConfigurationError(f"{where} sets unknown option {wrong!r}; did you mean {right}?")
        if cls.__dict__.get("abstract", False):
            return
        cls.abstract = False  # not inherited from an abstract base
        if "name" not in cls.__dict__ or cls.__dict__["name"] is None:
            cls.name = where
        if not isinstance(cls.name, str) or not cls.name:
            raise ConfigurationError(f"{where}.name must be a non-empty string")
        try:
            check_queue_name(cls.queue)
            check_retry(cls.retry)
            check_timeout(cls.timeout)
            cls._expires_in_s = _expires_in_s(cls.expires_in)
            if not isinstance(cls.schedulable, bool):
                raise InvalidOptionError(f"schedulable must be True or False, not {cls.schedulable!r}")
        except ValueError as exc:
            raise ConfigurationError(f"{where}: {exc}") from None
        try:
            callbacks.check(cls, where)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        cls._has_perform_callbacks = callbacks.overrides(cls, callbacks.PERFORM_HOOKS, Job)
        cls._has_enqueue_callbacks = callbacks.overrides(cls, callbacks.ENQUEUE_HOOKS, Job)
        for check in class_checks:
            check(cls, where)
        perform = getattr(cls, "perform", None)
        if not callable(perform) or perform is Job.perform:
            raise ConfigurationError(f"{where} must define a perform(self, ...) method")
        cls.is_async = inspect.iscoroutinefunction(inspect.unwrap(perform))  # through functools.wraps
        try:
            callbacks.check_hooks(cls, where, Job)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        registry.register(cls)

    def perform(self, *args, **kwargs):
        raise NotImplementedError("subclasses of Job must define perform()")

    @property
    def retry_count(self):
        """How many times this job has failed before this attempt (None on the first try)."""
        return (self.payload or {}).get("retry_count")

    @property
    def queue_name(self):
        return (self.payload or {}).get("queue", self.queue)

    @property
    def bid(self):
        """The id of the batch this job belongs to, or None."""
        return (self.payload or {}).get("bid")

    # ``batch`` (the Batch of ``bid``, to add jobs to it from ``perform``) is added to this
    # class by django_bgjobs.batches, which imports this module: a feature extends the Job
    # API, the Job API does not import the feature.

    @classmethod
    def resolve(cls, payload):
        """``(job_class, args, kwargs)`` that runs ``payload``: this class and the payload's
        decoded arguments.  A wrapper's payload names another class (``activejob``)."""
        return (cls, *serialization.decode_args(payload["args"]))

    @classmethod
    def display_name(cls, payload):
        """The name the job metrics count ``payload`` under: the class's ``name``; a wrapper
        job (a ``django.tasks`` task) gives what it wraps, as Sidekiq's ``wrapped`` does."""
        return cls.name

    def retry_in(self, count, exception):
        """Seconds (or a timedelta) before retry number ``count``; None = exponential backoff;
        ``"kill"`` = dead set now; ``"discard"`` = drop.  Override to customise."""
        return None

    def retries_exhausted(self, job, exception):
        """Called with the payload dict once the job will not be retried again.  Override it."""

    # -- ActiveJob-style hooks (override the ones you need) ------------------------------------

    def before_perform(self):
        """Runs before ``perform``; raise ``Discard`` to drop the job without running it.
        May be ``async def`` on an async job."""

    def around_perform(self, perform):
        """Wraps ``perform``: call ``perform()`` (no arguments) and return its result.  On an
        async job write ``async def around_perform`` and ``return await perform()``."""
        return perform()

    def after_perform(self):
        """Runs after ``perform`` returned (not when it raised).  May be ``async def`` on an
        async job."""

    @classmethod
    def before_enqueue(cls, payload):
        """Runs before each payload is written (fields may be changed), in the client middleware
        chain (``EnqueueCallbacks``); raise ``Discard`` to not enqueue it (``perform_later``
        then returns None).  Runs at the commit when the push waits for one."""

    @classmethod
    def after_enqueue(cls, payload):
        """Runs after each payload is written to Redis (after the commit when deferred)."""

    # -- enqueueing -------------------------------------------------------------------------

    @classmethod
    def set(cls, *, wait=None, wait_until=None, queue=None, retry=None, expires_in=None):
        """Return a :class:`ConfiguredJob` with these options, like ActiveJob's ``set``
        (``expires_in``: Sidekiq Pro's, for this call)."""
        if wait is not None and wait_until is not None:
            raise InvalidOptionError("give wait or wait_until, not both")
        return ConfiguredJob(
            cls, _resolve_wait_until(wait_until), _option_queue(queue), _option_retry(retry), _resolve_wait_s(wait),
            _expires_in_s(expires_in),
        )

    @classmethod
    def perform_later(cls, *args, **kwargs):
        """Enqueue one job; return an :class:`EnqueuedJob` whose ``jid`` is known at once.

        Returns None when the class has a ``lock`` held by an equal job and ``on_conflict``
        is ``"log"`` or ``"reject"`` (``"raise"`` raises :class:`~django_bgjobs.UniqueJobError`).
        Inside ``transaction.atomic()`` the push waits for the commit, so a handle is returned
        and a conflict found then is only logged."""
        return ConfiguredJob(cls).perform_later(*args, **kwargs)

    @classmethod
    def perform_bulk(cls, args_list):
        """Enqueue many jobs in one round trip; ``args_list`` holds one args tuple per job.
        Returns one handle per job, None for a unique job not enqueued (see ``perform_later``)."""
        return ConfiguredJob(cls).perform_bulk(args_list)

    @classmethod
    def perform_now(cls, *args, **kwargs):
        """Run the job in this process, now, and return what ``perform`` returns.  No Redis."""
        return execution.perform_now(cls, args, kwargs)

    # -- from async code (async views, async jobs) ------------------------------------------
    # The push is a short blocking Redis call; it runs in Django's thread for sync code
    # (sync_to_async), so the event loop never waits on it and ``transaction.on_commit``
    # sees the same connection as the ORM's async methods.

    @classmethod
    async def aperform_later(cls, *args, **kwargs):
        """``perform_later`` for async code: ``await SendEmailJob.aperform_later(user_id)``."""
        return await ConfiguredJob(cls).aperform_later(*args, **kwargs)

    @classmethod
    async def aperform_bulk(cls, args_list):
        """``perform_bulk`` for async code."""
        return await ConfiguredJob(cls).aperform_bulk(args_list)

    @classmethod
    async def aperform_now(cls, *args, **kwargs):
        """``perform_now`` for async code: an async job is awaited here, a sync one runs in
        Django's thread for sync code."""
        return await execution.aperform_now(cls, args, kwargs)


@dataclass(frozen=True)
class ConfiguredJob:
    """An immutable Job class plus enqueue options, from ``Job.set(...)``."""

    job_class: type
    at_s: float | None = None
    queue: str | None = None
    retry: object = None
    #: ``set(wait=...)`` in seconds: counted from each ``perform_later``, as ActiveJob does, so a
    #: ``ConfiguredJob`` kept in a variable does not drift into the past.
    wait_s: float | None = None
    #: ``set(expires_in=...)`` in seconds (None: the class's ``expires_in``).
    expires_in_s: float | None = None

    def scheduled_at_s(self, now_s):
        """Epoch seconds to run at for a job enqueued at ``now_s``, or None for "now"."""
        return now_s + self.wait_s if self.wait_s else self.at_s

    def build_payloads(self, items, **options):
        """The payloads for ``items`` (``(args, kwargs)`` pairs), checked and encoded, each with
        what the features stamp on it (``payload_stamps``: a ``lock``'s digest); nothing written.  Every producer of a
        Job's payloads (``perform_later``, recurring ticks, ``django.tasks``) builds them here.
        ``options``: those of ``client.build_payloads``."""
        payloads = client.build_payloads(self, items, **options)
        for stamp in payload_stamps:
            for payload, (args, kwargs) in zip(payloads, items):
                stamp(payload, self.job_class, args, kwargs)
        return payloads

    def perform_later(self, *args, **kwargs):
        return self._enqueue([(args, kwargs)])[0]

    def perform_bulk(self, args_list):
        items = []
        for index, args in enumerate(args_list):
            if not isinstance(args, (list, tuple)):
                raise InvalidOptionError(f"perform_bulk item {index} is a {type(args).__name__}; give a tuple of args")
            items.append((tuple(args), _NO_KWARGS))
        if len(items) <= BULK_CHUNK_JOBS:
            return self._enqueue(items)
        return self._enqueue_in_chunks(items)

    def _enqueue_in_chunks(self, items):
        """A bulk of more than :data:`BULK_CHUNK_JOBS` jobs: every argument encoded and checked
        first (a mistake raises with nothing written), then one push per chunk, so the client
        holds one chunk's payloads, encoded JSON and Redis command at a time, not the whole
        bulk's (a million jobs took 1.7 GB at once).  Each chunk is written all or nothing, and
        in order: when one fails, the chunks before it stay written (the exception says how
        many jobs).  Inside ``atomic()`` each chunk waits for the commit, as one push would."""
        job_class = self.job_class
        handle = EnqueuedJob._of
        encoded = client.encode_bulk(self, items)
        created_at = now_s()
        handles = []
        for start in range(0, len(items), BULK_CHUNK_JOBS):
            end = start + BULK_CHUNK_JOBS
            payloads = self.build_payloads(items[start:end], encoded=encoded[start:end], created_at=created_at)
            try:
                written = client.push(job_class, payloads)
            except Exception as exc:
                if start:
                    exc.add_note(f"perform_bulk: jobs 0 to {start - 1} of {len(items)} were written before this "
                                 f"chunk (jobs {start} to {min(end, len(items)) - 1}) failed; the rest were not")
                raise
            handles += [None if p is None else handle(p, job_class) for p in written]
        return handles

    def _enqueue(self, items):
        """Push one job per item through :func:`client.push`; an :class:`EnqueuedJob` for each,
        None for one not written (stopped by a middleware, or its lock held)."""
        if not items:
            return []
        job_class = self.job_class
        handle = EnqueuedJob._of
        return [None if p is None else handle(p, job_class) for p in client.push(job_class, self.build_payloads(items))]

    def perform_now(self, *args, **kwargs):
        return self.job_class.perform_now(*args, **kwargs)

    async def aperform_later(self, *args, **kwargs):
        return await sync_to_async(self.perform_later)(*args, **kwargs)

    async def aperform_bulk(self, args_list):
        return await sync_to_async(self.perform_bulk)(args_list)

    async def aperform_now(self, *args, **kwargs):
        return await self.job_class.aperform_now(*args, **kwargs)


@dataclass(frozen=True)
class EnqueuedJob:
    """What ``perform_later`` returns: the job's id and where it went."""

    jid: str
    job_class: type
    queue: str
    args: list
    scheduled_at: float | None = None

    @classmethod
    def _of(cls, payload, job_class):
        """The handle of a payload as written.  A frozen dataclass's ``__init__`` sets each field
        through ``object.__setattr__``, which costs more than the client middleware chain of a
        bulk push per payload; filling the instance's ``__dict__`` gives the same object in
        half the time."""
        handle = object.__new__(cls)
        fields = handle.__dict__
        fields["jid"] = payload["jid"]
        fields["job_class"] = job_class
        fields["queue"] = payload["queue"]
        fields["args"] = payload["args"]
        fields["scheduled_at"] = payload.get("at")
        return handle


def _option_queue(queue):
    if queue is not None:
        check_queue_name(queue)
    return queue


def _option_retry(retry):
    check_retry(retry)
    return retry


def _resolve_wait_s(wait):
    """Check ``wait`` and return it in seconds (None when no wait)."""
    return option_seconds("wait", wait, ">= 0") or None


def _expires_in_s(expires_in):
    """Check ``expires_in`` and return it in seconds (None: no expiry)."""
    return option_seconds("expires_in", expires_in, "> 0")


def _resolve_wait_until(wait_until):
    """Turn ``wait_until`` into epoch seconds (None: now)."""
    from django.conf import settings
    from django.utils import timezone

    if wait_until is None:
        return None
    if not isinstance(wait_until, datetime.datetime):
        raise InvalidOptionError(f"wait_until must be a datetime, not {type(wait_until).__name__}")
    if timezone.is_naive(wait_until):
        if settings.USE_TZ:
            raise InvalidOptionError("wait_until is a naive datetime while USE_TZ=True; give an aware datetime")
        wait_until = timezone.make_aware(wait_until, timezone.get_default_timezone())
    return wait_until.timestamp()


class EnqueueCallbacks:
    """Client middleware (built in, :data:`conf.CLIENT_BUILTINS`): runs the job class's
    ``before_enqueue`` on each payload; one that raises ``Discard`` is not written (like
    ActiveJob's ``throw :abort``) and leaves a None in ``perform_later``'s answer.  Classes
    that define no enqueue hook pass straight through.  ``after_enqueue`` is not here: the
    core calls it once the payload is written."""

    def __init__(self, call_next):
        self.call_next = call_next

    def __call__(self, payload):
        push = client.current_push()
        job_class = push.job_class if push is not None else None  # None: a chain called by hand
        if job_class is None or not job_class._has_enqueue_callbacks:
            return self.call_next(payload)
        try:
            job_class.before_enqueue(payload)
        except Discard as exc:
            logger.info("%s jid=%s not enqueued: before_enqueue discarded it (%s)", job_class.name,
                        payload.get("jid"), exc)
            return None
        return self.call_next(payload)
