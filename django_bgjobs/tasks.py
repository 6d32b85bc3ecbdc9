"""A production backend for Django's Tasks framework: ``@task`` functions run on ``runjobs``.

::

    TASKS = {"default": {"BACKEND": "django_bgjobs.tasks.RedisTaskBackend", "QUEUES": ["default", "emails"],
                         "OPTIONS": {"RESULT_TTL_S": 86400, "RETRY": 0}}}

Works with ``django.tasks`` (Django 6) and the ``django-tasks`` backport (Django 5.2)
through :mod:`django_bgjobs._tasks_compat`.  How a task run maps onto this library:

1. **Enqueue** (client side).  ``enqueue`` validates the task, normalises the arguments
   to JSON (a ``TypeError``/``ValueError`` before anything is written) and pushes one
   payload of :class:`TaskJob` whose ``args`` are ``[module_path, backend_alias, args,
   kwargs]``.  The result id is the payload's jid.  ``priority > 0`` puts the payload at the
   front of its queue; ``run_after`` puts it in the schedule set.  The push is the one every
   job takes (``client.push``): a client middleware that stops it leaves no result either
   (``get_result`` then raises ``TaskResultDoesNotExist``).
2. **Result** in Redis at ``keys.task_result(id)``: one JSON document with a TTL
   (``OPTIONS["RESULT_TTL_S"]``, one day by default, counted from the last change).
   ``READY`` is a write attached to the push of the payload (``client.push``), done in its
   atomic step, so a rolled-back transaction (or a client middleware that stops the payload)
   leaves no result and a worker's ``RUNNING`` can never be overwritten by a late ``READY``.
3. **Run** (worker side, in the processor thread): :meth:`TaskJob.perform` finds the task
   in the registry of validated tasks (never by importing the payload's path), writes
   ``RUNNING``, calls the function, and writes ``SUCCESSFUL`` with the return value or
   ``FAILED`` with the error.  An ``async def`` task is pushed as :class:`AsyncTaskJob`
   instead, which the worker awaits on its event loop, many at once (``docs/async.rst``).  With
   ``OPTIONS["RETRY"]`` above 0 a failed attempt appends its error, goes back to
   ``READY`` and waits in the retry set like any job.
4. **Read**: ``get_result`` builds a ``TaskResult`` from the document.

The registry is filled by :meth:`RedisTaskBackend.validate_task`, which Django calls when
a ``@task`` is defined; ``apps.py`` imports each installed app's ``tasks.py`` so a worker
knows every task.  A payload naming a task that is not registered goes to the dead set.
"""

import asyncio
import copy
import datetime
import inspect
import json
import logging
import os
import re
import socket
import time
import traceback

import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from django_bgjobs import client, conf, keys, retry, signals
from django_bgjobs._tasks_compat import (
    BaseTaskBackend,
    InvalidTask,
    InvalidTaskBackend,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    normalize_json,
    task_backends,
    task_enqueued,
    task_finished,
    task_started,
)
from django_bgjobs.connection import get_redis
from django_bgjobs.errors import BgJobsError, Shutdown, UnknownJobError
from django_bgjobs.job import Job
from django_bgjobs.payload import epoch_s, now_s, valid_queue_name

logger = logging.getLogger(__name__)

#: ``OPTIONS`` of a ``RedisTaskBackend`` and their defaults.
OPTION_DEFAULTS = {
    # Seconds a result is kept after its last change (plus the wait of a deferred or retried task).
    "RESULT_TTL_S": 24 * 60 * 60,
    # Retries of a failed task before it is FAILED and in the dead set; 0 is Django's semantics.
    "RETRY": 0,
}

#: The most characters of one error's traceback kept in a result (the end is kept).
MAX_TRACEBACK_CHARS = 64 * 1024

#: How long the worker keeps trying a result read or write while Redis fails.
REDIS_PATIENCE_S = 30

_RESULT_ID_RE = re.compile(r"[0-9a-f]{24}")  # fullmatch: "$" would accept a trailing newline

# module_path -> Task, filled by RedisTaskBackend.validate_task.  The worker runs only these.
_tasks = {}


class ReturnValueNotJSON(BgJobsError, TypeError):
    """A task returned a value that cannot be stored as JSON: the task is FAILED, not retried."""


class TaskExited(BgJobsError):
    """A task raised ``SystemExit`` (or another ``BaseException`` that is not an interrupt):
    the task is FAILED, and the worker thread carries on."""


def register_task(task):
    """Remember ``task`` under its module path so the worker may run it."""
    known = _tasks.get(task.module_path)
    if known is None or known.func is not task.func:
        _tasks[task.module_path] = task


def registered_task(module_path):
    """The ``Task`` registered under ``module_path``, or None."""
    return _tasks.get(module_path)


def autodiscover():
    """Import every installed app's ``tasks.py`` when a backend of this module is configured.

    Called by ``apps.py``.  Only then: a project may have ``tasks.py`` modules for
    another queue (Celery's convention) that it does not expect Django to import.
    """
    from django.utils.module_loading import autodiscover_modules, import_string

    for params in task_backends.settings.values():
        try:
            backend_class = import_string(params["BACKEND"])
        except (ImportError, KeyError, TypeError):
            continue  # Django reports a bad TASKS entry when it is used
        if isinstance(backend_class, type) and issubclass(backend_class, RedisTaskBackend):
            autodiscover_modules("tasks")
            return


class RedisTaskBackend(BaseTaskBackend):
    """Runs tasks on ``runjobs`` workers and keeps their results in Redis.  See the module docstring."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias, params):
        super().__init__(alias, params)
        options = {**OPTION_DEFAULTS, **(self.options or {})}
        self.result_ttl_s = options["RESULT_TTL_S"]
        self.retry = options["RETRY"]

    def validate_task(self, task):
        """Django's checks, then this library's queue-name rule; a valid task is registered."""
        super().validate_task(task)
        if not valid_queue_name(task.queue_name):
            raise InvalidTask(
                f"Queue {task.queue_name!r} is not a valid queue name for django-bgjobs: "
                "use 1 to 128 letters, digits, '_', '-' or '.' (not '.' or '..')."
            )
        register_task(task)

    def enqueue(self, task, args, kwargs):
        self.validate_task(task)
        args, kwargs = _json_value(list(args)), _json_value(dict(kwargs))
        job_class = AsyncTaskJob if inspect.iscoroutinefunction(task.func) else TaskJob
        configured = job_class.set(queue=task.queue_name, retry=self.retry, wait_until=task.run_after)
        [payload] = configured.build_payloads([((task.module_path, self.alias, args, kwargs), {})])
        if task.priority:
            payload["priority"] = task.priority
        if task.run_after is not None:
            payload["run_after"] = task.run_after.isoformat()
        record = _record_from_payload(payload)
        result = _task_result(task, payload["jid"], record)
        client.push(job_class, [payload], writes={payload["jid"]: [self._ready_write(payload, record)]})
        return result

    def _ready_write(self, payload, record):
        """The write of the task's ``READY`` result, done in the atomic step that pushes its payload."""
        created_at = epoch_s(payload["created_at"])
        wait_s = max(payload.get("at", created_at) - created_at, 0)
        ttl_ms = max(int((self.result_ttl_s + wait_s) * 1000), 1)
        return ("SET", keys.task_result(payload["jid"]), json.dumps(record, separators=(",", ":")), "PX", ttl_ms)

    def get_result(self, result_id):
        result_id = str(result_id)
        raw = get_redis().get(keys.task_result(result_id)) if _RESULT_ID_RE.fullmatch(result_id) else None
        if raw is None:
            raise TaskResultDoesNotExist(result_id)
        record = json.loads(raw)
        task = registered_task(record["task"])
        if task is None:
            raise TaskResultDoesNotExist(
                f"{result_id}: its task {record['task']} is not registered in this process "
                "(import its module, e.g. from an installed app's tasks.py)"
            )
        return _task_result(task, result_id, record)

    def check(self, **kwargs):
        return _check_backend(self)


class TaskJob(Job):
    """The Job that runs one Django task.  ``args``: ``[module_path, backend_alias, args, kwargs]``."""

    name = "django_bgjobs.tasks.TaskJob"
    retry = 0  # each payload carries its backend's OPTIONS["RETRY"]
    schedulable = False  # internal: a task is enqueued through django.tasks

    @classmethod
    def display_name(cls, payload):
        """The task's module path: the job metrics count each task apart."""
        args = payload.get("args")
        return args[0] if isinstance(args, list) and args and isinstance(args[0], str) else cls.name

    def perform(self, task_path, backend_alias, args, kwargs):
        task, backend, record, context = self._start(task_path, backend_alias)
        try:
            value = task.call(*context, *args, **kwargs)
        except (KeyboardInterrupt, Shutdown):
            raise  # the job stays in flight and is pushed back at shutdown: not the task's failure
        except BaseException as exc:
            self._record_failure(task, backend, record, exc)
            if isinstance(exc, Exception):
                raise
            # SystemExit and friends: FAILED, as Django's backends say, and the worker thread lives on.
            raise TaskExited(f"the task raised {type(exc).__name__}: {exc}") from exc
        return self._record_success(task, backend, record, value)

    def _start(self, task_path, backend_alias):
        """Find the task, write ``RUNNING``, send ``task_started``; return ``(task, backend,
        record, context)``, ``context`` being the leading arguments (a ``TaskContext`` when the
        task takes one)."""
        task, backend = registered_task(task_path), _backend(backend_alias)
        record = _read(self.jid) or _record_from_payload(self.payload)
        if task is None or backend is None:
            self._cannot_run(record, task_path, backend_alias)
        started = now_s()
        record.update(status=TaskResultStatus.RUNNING.value, last_attempted_at=started, finished_at=None)
        record["started_at"] = record.get("started_at") or started
        record["worker_ids"] = [*record.get("worker_ids", []), _worker_id()]
        _store(self.jid, record, backend.result_ttl_s, must=True)
        result = _task_result(task, self.jid, record)
        _send(task_started, backend, result)
        return task, backend, record, ((TaskContext(task_result=result),) if task.takes_context else ())

    def _record_success(self, task, backend, record, value):
        """Write ``SUCCESSFUL`` with the return value (``FAILED`` when JSON cannot hold it)."""
        try:
            value = _json_value(value)
        except (TypeError, ValueError) as exc:
            self._failed(task, backend, record, exc, will_retry=False)
            raise ReturnValueNotJSON(f"the task returned a value that cannot be stored as JSON: {exc}") from exc
        record.update(status=TaskResultStatus.SUCCESSFUL.value, finished_at=now_s(), return_value=value)
        _store(self.jid, record, backend.result_ttl_s)
        _send(task_finished, backend, _task_result(task, self.jid, record))
        return value

    def _record_failure(self, task, backend, record, exc, error=None):
        """Append the error (``error``: already formatted) and write FAILED or READY again."""
        will_retry, wait_s = self._retry_plan(exc)
        self._failed(task, backend, record, exc, will_retry, wait_s, error)

    def retry_in(self, count, exception):
        # perform wrote FAILED for a return value JSON cannot hold (running it again would repeat
        # its side effects to the same end): the retry rules must agree.
        return "kill" if isinstance(exception, ReturnValueNotJSON) else None

    def _retry_plan(self, exc):
        """``(will_retry, wait_s)``: whether the worker will retry this attempt -- the retry
        rules' own decision (:func:`django_bgjobs.retry.decide`) -- and the longest it may
        wait in the retry set."""
        count = self.payload["retry_count"] + 1 if "retry_count" in self.payload else 0
        decision = retry.decide(self, exc, count)
        if isinstance(decision, retry.RetryIn):
            return True, decision.longest_s
        return False, 0

    def _failed(self, task, backend, record, exc, will_retry, wait_s=0, error=None):
        """Append the error; FAILED (and ``task_finished``) unless the attempt will be retried,
        else READY again, kept until the retry has had time to run.

        Called while ``exc`` is being handled (``sync_to_async`` carries that into its thread
        too), so Django's ``task_finished`` log receiver, ``logger.exception``, sees it.
        """
        record["errors"] = [*record.get("errors", []), error or _error(exc)]
        if will_retry:
            record["status"] = TaskResultStatus.READY.value
            _store(self.jid, record, backend.result_ttl_s + wait_s)
            return
        record.update(status=TaskResultStatus.FAILED.value, finished_at=now_s())
        _store(self.jid, record, backend.result_ttl_s)
        _send(task_finished, backend, _task_result(task, self.jid, record))

    def _cannot_run(self, record, task_path, backend_alias):
        if registered_task(task_path) is None:
            reason = (
                f"task {task_path!r} is not registered in this worker: define it in an installed app's "
                "tasks.py (or import its module from one), and restart the worker"
            )
        else:
            reason = f"task backend {backend_alias!r} is not a RedisTaskBackend in this worker's TASKS setting"
        record["errors"] = [*record.get("errors", []), {
            "exception_class_path": "django_bgjobs.errors.UnknownJobError", "traceback": reason,
        }]
        record.update(status=TaskResultStatus.FAILED.value, finished_at=now_s())
        _store(self.jid, record, _ttl_s(None))
        raise UnknownJobError(reason)


class AsyncTaskJob(TaskJob):
    """The Job that runs one ``async def`` task: awaited on the worker's event loop, many at
    once (``BGJOBS["ASYNC_CONCURRENCY"]``, ``docs/async.rst``), with the result bookkeeping
    -- Redis writes and the task signals, whose receivers may use the ORM -- done in threads."""

    name = "django_bgjobs.tasks.AsyncTaskJob"

    async def perform(self, task_path, backend_alias, args, kwargs):
        task, backend, record, context = await _in_thread(self._start, task_path, backend_alias)
        try:
            value = await task.acall(*context, *args, **kwargs)
        except (KeyboardInterrupt, Shutdown, asyncio.CancelledError):
            raise  # shutdown: pushed back, not the task's failure
        except BaseException as exc:
            traceback_, error = exc.__traceback__, _error(exc)
            await _in_thread(self._record_failure, task, backend, record, exc, error)
            exc.__traceback__ = traceback_  # sync_to_async raised it again in its thread: drop that frame
            if isinstance(exc, Exception):
                raise
            raise TaskExited(f"the task raised {type(exc).__name__}: {exc}") from exc
        return await _in_thread(self._record_success, task, backend, record, value)


async def _in_thread(function, *args):
    """Run blocking bookkeeping off the event loop (not in Django's one sync thread: it is Redis
    work, and many tasks end at once)."""
    return await sync_to_async(function, thread_sensitive=False)(*args)


# -- the result document --------------------------------------------------------------------


def _record_from_payload(payload):
    """The READY result document for a freshly built payload."""
    task_path, alias, args, kwargs = payload["args"]
    return {
        "task": task_path, "backend": alias, "queue_name": payload["queue"],
        "priority": payload.get("priority", 0), "run_after": payload.get("run_after"),
        "status": TaskResultStatus.READY.value, "args": args, "kwargs": kwargs,
        "enqueued_at": epoch_s(payload["created_at"]), "started_at": None, "finished_at": None,
        "last_attempted_at": None, "errors": [], "worker_ids": [], "return_value": None,
    }


def _task_result(task, result_id, record):
    """A ``TaskResult`` of ``task`` (with the options it was enqueued with) from a document."""
    run_after = record.get("run_after")
    task = _with_options(
        task, backend=record["backend"], queue_name=record["queue_name"], priority=record.get("priority", 0),
        run_after=datetime.datetime.fromisoformat(run_after) if run_after else None,
    )
    result = TaskResult(
        task=task, id=result_id, status=TaskResultStatus(record["status"]),
        enqueued_at=_datetime(record.get("enqueued_at")), started_at=_datetime(record.get("started_at")),
        finished_at=_datetime(record.get("finished_at")),
        last_attempted_at=_datetime(record.get("last_attempted_at")),
        args=record["args"], kwargs=record["kwargs"], backend=record["backend"],
        errors=[TaskError(exception_class_path=e["exception_class_path"], traceback=e["traceback"])
                for e in record.get("errors", [])],
        worker_ids=list(record.get("worker_ids", [])),
    )
    object.__setattr__(result, "_return_value", record.get("return_value"))
    return result


def _with_options(task, **options):
    """``task`` with other enqueue options, without running validation again (a copy, then the
    fields set as ``dataclasses.replace`` would, minus ``__post_init__``): reading a result must
    not fail because the settings changed since it was enqueued."""
    changed = {name: value for name, value in options.items() if getattr(task, name) != value}
    if not changed:
        return task
    task = copy.copy(task)
    for name, value in changed.items():
        object.__setattr__(task, name, value)
    return task


def _datetime(epoch_s):
    if epoch_s is None:
        return None
    value = datetime.datetime.fromtimestamp(epoch_s, tz=datetime.timezone.utc)
    return value if settings.USE_TZ else timezone.make_naive(value)


def _error(exc):
    cls = type(exc)
    text = "".join(traceback.format_exception(exc))
    if len(text) > MAX_TRACEBACK_CHARS:
        text = "...\n" + text[-MAX_TRACEBACK_CHARS:]
    return {"exception_class_path": f"{cls.__module__}.{cls.__qualname__}", "traceback": text}


def _json_value(value):
    """``value`` as Django normalises it, then through JSON (so keys become strings and NaN is refused)."""
    return json.loads(json.dumps(normalize_json(value), allow_nan=False))


def _read(result_id):
    raw = _patiently(lambda: get_redis().get(keys.task_result(result_id)))
    return json.loads(raw) if raw is not None else None


def _write(pipe, result_id, record, ttl_s):
    pipe.set(keys.task_result(result_id), json.dumps(record, separators=(",", ":")), px=max(int(ttl_s * 1000), 1))


def _store(result_id, record, ttl_s, must=False):
    """Write a result from the worker.  ``must``: raise if Redis does not take it (the task has
    not started, so the attempt fails by the usual rules); otherwise log, because the task has
    run and must not run again only because its result could not be written."""
    try:
        _patiently(lambda: _write(get_redis(), result_id, record, ttl_s))
    except redis.RedisError as exc:
        if must:
            raise
        logger.error("could not write the %s result of task %s: %s", record["status"], result_id, exc)


def _patiently(call):
    """``call()``, tried again with backoff for up to ``REDIS_PATIENCE_S`` while Redis fails (a blip, a
    failover), as the worker retries its acknowledgements; then the last error is raised."""
    deadline, wait_s = time.monotonic() + REDIS_PATIENCE_S, 0.05
    while True:
        try:
            return call()
        except redis.RedisError:
            if time.monotonic() + wait_s > deadline:
                raise
            time.sleep(wait_s)
            wait_s = min(wait_s * 2, 2.0)


def _ttl_s(backend):
    return backend.result_ttl_s if backend is not None else OPTION_DEFAULTS["RESULT_TTL_S"]


def _backend(alias):
    """The ``RedisTaskBackend`` configured as ``alias``, or None."""
    try:
        backend = task_backends[alias]
    except (InvalidTaskBackend, KeyError, TypeError):
        return None
    return backend if isinstance(backend, RedisTaskBackend) else None


def _worker_id():
    """``hostname:pid`` of this worker process (its ``ProcessSet`` identity starts so)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _send(signal, backend, result):
    """Send a task signal from the worker; a receiver's error is logged, never fails the task."""
    for receiver, response in signal.send_robust(sender=type(backend), task_result=result):
        if isinstance(response, Exception):
            logger.error("%s receiver %r raised", signal, receiver, exc_info=response)


def _announce_enqueued(sender, payload, **kwargs):
    """``job_enqueued`` of a TaskJob (sent once the payload is in Redis) -> Django's ``task_enqueued``."""
    record = _record_from_payload(payload)
    task, backend = registered_task(record["task"]), _backend(record["backend"])
    if task is not None and backend is not None:
        task_enqueued.send(sender=type(backend), task_result=_task_result(task, payload["jid"], record))


for _job_class in (TaskJob, AsyncTaskJob):
    signals.job_enqueued.connect(_announce_enqueued, sender=_job_class,
                                 dispatch_uid=f"django_bgjobs.tasks.task_enqueued.{_job_class.__name__}")


def _check_backend(backend):
    """The system checks of one :class:`RedisTaskBackend` (its ``check()``, which Django's tasks
    check calls):

    * ``django_bgjobs.E020``: an unknown or invalid ``OPTIONS`` entry;
    * ``django_bgjobs.E021``: ``QUEUES`` holds a name that is not a valid queue name;
    * ``django_bgjobs.W020``: a queue is not in ``BGJOBS["QUEUES"]``, so a worker started without
      ``-q`` never runs its tasks.
    """
    from django.core.checks import Error, Warning

    from django_bgjobs.checks import served_queue_names
    from django_bgjobs.job import check_queue_name

    where = f"TASKS[{backend.alias!r}]"
    errors = []
    options = backend.options if isinstance(backend.options, dict) else {}
    for key in sorted(set(options) - set(OPTION_DEFAULTS), key=str):
        errors.append(Error(
            f"{where}['OPTIONS'] has an unknown key {key!r}.",
            hint="Known keys: " + ", ".join(sorted(OPTION_DEFAULTS)), id="django_bgjobs.E020",
        ))
    ttl_s, retry = backend.result_ttl_s, backend.retry
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, (int, float)) or not ttl_s > 0:
        errors.append(Error(
            f"{where}['OPTIONS']['RESULT_TTL_S'] is {ttl_s!r}.", hint="Seconds to keep a result, e.g. 86400.",
            id="django_bgjobs.E020",
        ))
    if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
        errors.append(Error(
            f"{where}['OPTIONS']['RETRY'] is {retry!r}.",
            hint="Retries of a failed task: 0 (Django's semantics: FAILED at once) or more.", id="django_bgjobs.E020",
        ))
    served = served_queue_names()
    for queue in sorted(backend.queues, key=str):
        try:
            check_queue_name(queue)
        except ValueError as exc:
            errors.append(Error(f"{where}['QUEUES']: {exc}.", hint="e.g. 'default', 'emails'", id="django_bgjobs.E021"))
            continue
        if queue not in served:
            errors.append(Warning(
                f"{where} has the queue {queue!r}, which is not in BGJOBS['QUEUES'], so a worker started "
                "without -q never runs its tasks.",
                hint=f"Add {queue!r} to BGJOBS['QUEUES'], or start the worker with -q {queue} -q ...",
                id="django_bgjobs.W020",
            ))
    return errors
