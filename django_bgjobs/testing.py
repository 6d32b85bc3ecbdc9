"""Test helpers: see what a block of code enqueued, or run those jobs at once.

Two context managers, both switched on only for the ``with`` block (importing
this module changes nothing)::

    from django_bgjobs.testing import capture_jobs, perform_enqueued_jobs

    def test_signup_sends_welcome_email():
        with capture_jobs() as jobs:
            signup("ada@example.com")
        jobs.assert_enqueued(WelcomeEmailJob, args=["ada@example.com"], queue="default")
        jobs.perform_all()              # run them (and any jobs they enqueue), in order

    @perform_enqueued_jobs()            # or: with perform_enqueued_jobs(): ...
    def test_signup_creates_profile():
        signup("ada@example.com")       # WelcomeEmailJob ran inside perform_later
        assert Profile.objects.exists()

:func:`capture_jobs` is ActiveJob's ``assert_enqueued_with`` / RSpec's
``have_enqueued_job`` and Sidekiq's ``Sidekiq::Testing.fake!`` with ``drain``;
:func:`perform_enqueued_jobs` is ActiveJob's helper of that name, and behaves like
the ``inline`` backend within its block.  With pytest, the ``bgjobs_capture``
fixture (``django_bgjobs.pytest_plugin``) wraps a test in :func:`capture_jobs`.

What is captured is exactly what would have been written to Redis: each payload
goes through the client's argument checks and a JSON round trip, so a
non-serializable argument still raises at ``perform_later``.  Running a captured
job goes through ``django_bgjobs.execution.perform_inline``, the code path the
worker uses, so class lookup, argument decoding and signals behave the same.

Two differences from Redis, on purpose:

* Jobs are captured at once, even inside ``transaction.atomic()`` (no wait for the
  commit, and a rollback does not un-capture them); Django's ``TestCase`` never
  commits, so waiting would hide every job.
* Captures are process-wide: jobs enqueued by other threads during the block are
  captured too.  Nested blocks: the innermost one sees the jobs.
"""

import threading
from collections.abc import Sequence
from contextlib import ContextDecorator, contextmanager

from django_bgjobs import client, execution, registry, serialization
from django_bgjobs.errors import BgJobsError
from django_bgjobs.payload import now_s, timestamp

__all__ = [
    "CapturedJob", "CapturedJobs", "EnqueueLoopError", "capture_jobs", "perform_enqueued_jobs",
]

#: How many generations of jobs-enqueued-by-jobs run before the helpers assume a loop.
DEFAULT_MAX_DEPTH = 10

# The generation of the job this thread is running inside a helper (0 = test code).
_running = threading.local()


class EnqueueLoopError(BgJobsError):
    """Jobs kept enqueuing jobs deeper than ``max_depth``: probably a job that enqueues itself."""


class CapturedJob:
    """One captured job: its payload, as the worker would have read it from Redis.

    ``args`` and ``kwargs`` are decoded on first access (model instances are then
    fetched from the database); ``raw_args`` is the payload's JSON ``args`` list.
    """

    def __init__(self, payload, depth=0):
        self.payload = payload
        #: 0 for a job the test code enqueued, 1 for one enqueued by such a job when it ran, ...
        self.depth = depth
        #: True once a helper has run the job (whether or not ``perform`` raised).
        self.performed = False
        #: What ``perform`` returned, once performed.
        self.result = None
        self._decoded = None

    @property
    def job_class(self):
        """The registered ``Job`` class named by the payload."""
        return registry.get(self.payload["class"])

    @property
    def name(self):
        """The payload's ``class`` string (the job's registered name)."""
        return self.payload["class"]

    @property
    def raw_args(self):
        return self.payload["args"]

    @property
    def args(self):
        """Positional arguments, decoded to Python values (a list)."""
        return self._decode()[0]

    @property
    def kwargs(self):
        """Keyword arguments, decoded to Python values (a dict)."""
        return self._decode()[1]

    @property
    def queue(self):
        return self.payload["queue"]

    @property
    def jid(self):
        return self.payload["jid"]

    @property
    def retry(self):
        return self.payload.get("retry")

    @property
    def scheduled_at(self):
        """Epoch seconds the job was scheduled for (``set(wait=...)``), or None for "now"."""
        return self.payload.get("at")

    def _decode(self):
        if self._decoded is None:
            self._decoded = serialization.decode_args(self.payload["args"])
        return self._decoded

    def __repr__(self):
        return f"<CapturedJob {_describe(self.payload)}>"


class CapturedJobs(Sequence):
    """A list of :class:`CapturedJob`, oldest first, with assertions.  Thread-safe to append to."""

    def __init__(self, jobs=()):
        self._lock = threading.Lock()
        self._jobs = list(jobs)

    # -- the Sequence protocol ------------------------------------------------------------

    def __len__(self):
        return len(self._jobs)

    def __getitem__(self, index):
        with self._lock:
            if isinstance(index, slice):
                return CapturedJobs(self._jobs[index])
            return self._jobs[index]

    def __iter__(self):
        with self._lock:
            snapshot = list(self._jobs)
        return iter(snapshot)

    def __repr__(self):
        return f"<CapturedJobs {len(self)} job(s)>"

    @property
    def payloads(self):
        """The payload dicts, oldest first."""
        return [job.payload for job in self]

    @property
    def jids(self):
        return [job.jid for job in self]

    # -- queries and assertions -----------------------------------------------------------

    def filter(self, job_class=None, *, args=None, kwargs=None, queue=None):
        """The captured jobs matching every given criterion (None = any), as a new ``CapturedJobs``.

        ``job_class`` is a ``Job`` subclass or its registered name.  ``args`` (a list or
        tuple) and ``kwargs`` (a dict) must match exactly, compared in their stored JSON
        form, so ``args=[author]`` matches a job enqueued with that row without a query.
        """
        match = _Matcher(job_class, args, kwargs, queue)
        return CapturedJobs(job for job in self if match(job.payload))

    def assert_enqueued(self, job_class, *, args=None, kwargs=None, queue=None, count=None):
        """Assert that a matching job was captured (exactly ``count`` of them, if given).

        Returns the matching jobs.  On failure the ``AssertionError`` lists every job
        that was captured, with what differs for each job of the same class.
        """
        match = _Matcher(job_class, args, kwargs, queue)
        found = CapturedJobs(job for job in self if match(job.payload))
        if (count is None and not found) or (count is not None and len(found) != count):
            wanted = "at least 1 job" if count is None else f"{count} job{'' if count == 1 else 's'}"
            raise AssertionError(
                f"expected {wanted} matching {match}, found {len(found)}.\n{self._report(match)}"
            )
        return found

    def assert_not_enqueued(self, job_class=None, *, args=None, kwargs=None, queue=None):
        """Assert that no captured job matches (with no criteria: that nothing was captured)."""
        match = _Matcher(job_class, args, kwargs, queue)
        found = [job for job in self if match(job.payload)]
        if found:
            raise AssertionError(
                f"expected no job matching {match}, found {len(found)}.\n{self._report(match)}"
            )

    def _report(self, match):
        jobs = list(self)
        if not jobs:
            return "Nothing was enqueued."
        lines = [f"Enqueued ({len(jobs)}):"]
        for number, job in enumerate(jobs, 1):
            line = f"  {number}. {_describe(job.payload)}"
            differences = match.differences(job.payload)
            if differences is None:
                line += "  <- matches"
            elif differences:
                line += "  <- " + "; ".join(differences)
            lines.append(line)
        return "\n".join(lines)

    # -- running --------------------------------------------------------------------------

    def perform_all(self, max_depth=DEFAULT_MAX_DEPTH):
        """Run every captured job not run yet, in capture order, and the jobs they enqueue.

        Like Sidekiq's ``drain``: jobs enqueued while this runs are captured here (never
        pushed to Redis, even after the ``with`` block) and run after the ones already
        waiting; scheduled jobs run too, at once.  An exception from ``perform``
        propagates; the job that raised counts as performed.  Raises
        :class:`EnqueueLoopError` when jobs enqueue jobs more than ``max_depth`` levels
        deep.  Returns the jobs it ran.
        """
        ran = []
        relay = _CaptureSink(self)
        client.install_capture(relay)
        try:
            index = 0
            while True:
                with self._lock:
                    if index >= len(self._jobs):
                        break
                    job = self._jobs[index]
                index += 1
                if job.performed:
                    continue
                if job.depth > max_depth:
                    raise EnqueueLoopError(
                        f"jobs enqueued jobs {job.depth} levels deep (max_depth={max_depth}); "
                        f"does {job.name} enqueue itself? Next was {_describe(job.payload)}"
                    )
                job.performed = True
                job.result = _run(job)
                ran.append(job)
        finally:
            client.remove_capture(relay)
        return ran

    def clear(self):
        """Forget every captured job."""
        with self._lock:
            self._jobs.clear()

    def _append(self, jobs):
        with self._lock:
            self._jobs.extend(jobs)


@contextmanager
def capture_jobs():
    """Capture, instead of enqueueing, every job enqueued in the block; yield :class:`CapturedJobs`."""
    jobs = CapturedJobs()
    sink = _CaptureSink(jobs)
    client.install_capture(sink)
    try:
        yield jobs
    finally:
        client.remove_capture(sink)


class PerformEnqueuedJobs(ContextDecorator):
    """What :func:`perform_enqueued_jobs` returns: a context manager and a decorator."""

    def __init__(self, only=None, max_depth=DEFAULT_MAX_DEPTH):
        self.only = only
        self.max_depth = max_depth
        self.jobs = None
        self._sink = None

    def __enter__(self):
        self.jobs = CapturedJobs()
        self._sink = _PerformSink(self.jobs, _Matcher(self.only) if self.only is not None else None, self.max_depth)
        client.install_capture(self._sink)
        return self.jobs

    def __exit__(self, *exc_info):
        client.remove_capture(self._sink)
        return False

    def _recreate_cm(self):
        # Each call of a decorated function gets its own block (and its own job list).
        return type(self)(self.only, self.max_depth)


def perform_enqueued_jobs(only=None, max_depth=DEFAULT_MAX_DEPTH):
    """Run every job enqueued in the block at once, inside ``perform_later``, like the inline backend.

    Use as ``with perform_enqueued_jobs() as jobs:`` (``jobs`` is a :class:`CapturedJobs`
    of everything enqueued, each marked ``performed``) or as a decorator, with or
    without parentheses.  ``only`` (a ``Job`` class or name) runs just that class;
    other jobs are only captured.  Exceptions from ``perform`` propagate out of
    ``perform_later``.  Jobs enqueued by running jobs run at once too, up to
    ``max_depth`` levels deep (then :class:`EnqueueLoopError`).
    """
    if callable(only) and not isinstance(only, type):
        return PerformEnqueuedJobs()(only)  # bare @perform_enqueued_jobs
    return PerformEnqueuedJobs(only, max_depth)


# -- internals ------------------------------------------------------------------------------


class _CaptureSink:
    """What ``client.install_capture`` gets: ``extend`` receives the round-tripped payload dicts."""

    def __init__(self, jobs):
        self.jobs = jobs

    def extend(self, payloads):
        self.jobs._append(self._records(payloads))

    @staticmethod
    def _records(payloads):
        depth = getattr(_running, "depth", 0)
        records = []
        for payload in payloads:
            if "at" not in payload:
                payload.setdefault("enqueued_at", timestamp(now_s()))  # as ``client.push`` would stamp it
            records.append(CapturedJob(payload, depth))
        return records


class _PerformSink(_CaptureSink):
    """Records each payload, then runs it at once in the enqueuing thread."""

    def __init__(self, jobs, only, max_depth):
        super().__init__(jobs)
        self.only = only
        self.max_depth = max_depth

    def extend(self, payloads):
        records = self._records(payloads)
        self.jobs._append(records)
        for job in records:
            if self.only is not None and not self.only(job.payload):
                continue
            if job.depth > self.max_depth:
                raise EnqueueLoopError(
                    f"jobs enqueued jobs {job.depth} levels deep (max_depth={self.max_depth}); "
                    f"does {job.name} enqueue itself?"
                )
            job.performed = True
            job.result = _run(job)


def _run(job):
    """Run one captured job through the worker's code path, at ``job.depth + 1`` for its children."""
    payload = dict(job.payload)
    payload.setdefault("enqueued_at", timestamp(now_s()))
    outer = getattr(_running, "depth", 0)
    _running.depth = job.depth + 1
    try:
        return execution.perform_inline(payload)
    finally:
        _running.depth = outer


class _Matcher:
    """Criteria for captured payloads, compared on the stored (JSON) form of the arguments."""

    def __init__(self, job_class=None, args=None, kwargs=None, queue=None):
        self.job_class = job_class
        self.name = _job_name(job_class)
        self.args = args
        self.kwargs = kwargs
        self.queue = queue
        self.raw_args = None if args is None else _encoded(args, "args")
        self.raw_kwargs = None if kwargs is None else _encoded_kwargs(kwargs)

    def __call__(self, payload):
        return self.differences(payload) is None

    def differences(self, payload):
        """None when ``payload`` matches; else what differs ([] when it is another class)."""
        if self.name is not None and payload.get("class") != self.name:
            return []
        raw_args, raw_kwargs = _split(payload.get("args", []))
        found = []
        if self.raw_args is not None and raw_args != self.raw_args:
            found.append(f"args differ: expected {_show(self.raw_args)}")
        if self.raw_kwargs is not None and raw_kwargs != self.raw_kwargs:
            found.append(f"kwargs differ: expected {_show(self.raw_kwargs)}")
        if self.queue is not None and payload.get("queue") != self.queue:
            found.append(f"queue differs: expected {self.queue!r}")
        return found or None

    def __str__(self):
        parts = []
        if self.raw_args is not None:
            parts.append(f"args={_show(self.raw_args)}")
        if self.raw_kwargs is not None:
            parts.append(f"kwargs={_show(self.raw_kwargs)}")
        if self.queue is not None:
            parts.append(f"queue={self.queue!r}")
        return f"{self.name or 'any job'}({', '.join(parts)})"


def _job_name(job_class):
    if job_class is None or isinstance(job_class, str):
        return job_class
    name = getattr(job_class, "name", None) if isinstance(job_class, type) else None
    if not isinstance(name, str):
        raise TypeError(f"give a Job subclass or its registered name, not {job_class!r}")
    return name


def _encoded(args, what):
    if not isinstance(args, (list, tuple)):
        raise TypeError(f"{what} must be a list or tuple, not {type(args).__name__}")
    return serialization.encode_args(args)


def _encoded_kwargs(kwargs):
    if not isinstance(kwargs, dict):
        raise TypeError(f"kwargs must be a dict, not {type(kwargs).__name__}")
    encoded = serialization.encode_args((), kwargs)
    return encoded[0]["value"] if encoded else {}


def _split(raw_args):
    """A payload's raw ``args`` as (positional list, keyword dict), still in JSON form."""
    if raw_args and isinstance(raw_args[-1], dict) and raw_args[-1].get(serialization.TAG) == "kwargs":
        return raw_args[:-1], raw_args[-1].get("value", {})
    return list(raw_args), {}


def _show(raw):
    """A short readable form of a JSON-form argument value (tagged values shown by type)."""
    if isinstance(raw, list):
        return "[" + ", ".join(_show(item) for item in raw) + "]"
    if isinstance(raw, dict):
        tag = raw.get(serialization.TAG)
        if tag == "model" and isinstance(raw.get("value"), list) and len(raw["value"]) == 3:
            app_label, model_name, pk = raw["value"]
            return f"<{app_label}.{model_name} pk={_show(pk)}>"
        if tag is not None:
            return f"{tag}({raw.get('value')!r})"
        return "{" + ", ".join(f"{key!r}: {_show(value)}" for key, value in raw.items()) + "}"
    return repr(raw)


def _describe(payload):
    raw_args, raw_kwargs = _split(payload.get("args", []))
    text = f"{payload.get('class')} args={_show(raw_args)}"
    if raw_kwargs:
        text += f" kwargs={_show(raw_kwargs)}"
    text += f" queue={payload.get('queue')!r} jid={payload.get('jid')}"
    if payload.get("at") is not None:
        text += f" at={payload['at']:.3f}"
    return text
