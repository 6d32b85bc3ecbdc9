"""Recurring jobs: their definitions, where they come from, and when they are due.

A schedule is a named entry ``{cron, class, queue, args, kwargs, description, enabled,
timezone, catch_up}`` from one of three sources, merged by name:

* ``settings``: the dict ``BGJOBS["SCHEDULE"]``;
* ``file``: the YAML file ``BGJOBS["SCHEDULE_FILE"]``;
* ``database``: rows of the ``Schedule`` model, edited in the admin.

Cron expressions are parsed by ``croniter``: five fields, an optional sixth, after them,
for the seconds (``* * * * * */10``: every ten seconds), and aliases such as ``@daily``.  Times are wall-clock times in
the schedule's time zone (``settings.TIME_ZONE`` by default).  Across daylight-saving
changes every wall-clock time fires once: a time that does not exist (02:30 on the
spring-forward night) fires at the instant the clocks jump to (03:30); a time that
occurs twice (02:30 on the fall-back night) fires at its first occurrence only.

This module is shared by the worker's scheduler, the admin and the system checks; it
opens no connection and starts no thread.
"""

import datetime
import json
import logging
from dataclasses import asdict, dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import redis
from croniter import croniter

from django_bgjobs import conf, execution, keys, registry
from django_bgjobs.connection import get_redis
from django_bgjobs.errors import ConfigurationError, UnknownJobError
from django_bgjobs.job import check_queue_name
from django_bgjobs.payload import now_s

logger = logging.getLogger(__name__)

SOURCES = ("settings", "file", "database")
_FIELDS = {"cron", "class", "queue", "args", "kwargs", "description", "enabled", "timezone", "catch_up"}


class ScheduleError(ConfigurationError):
    """A recurring-job definition is invalid (bad cron, unknown class, bad field)."""


@dataclass(frozen=True)
class CronDefinition:
    name: str
    cron: str
    job_name: str
    queue: str | None = None
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    description: str = ""
    enabled: bool = True
    timezone: str = ""
    catch_up: bool = False
    source: str = "settings"

    # -- conversion ----------------------------------------------------------------------

    @classmethod
    def from_definition(cls, name, data, source):
        """Build and check a schedule from a settings/YAML mapping; raise :class:`ScheduleError`."""
        where = f"recurring job {name!r} ({source})"
        if not isinstance(name, str) or not name or len(name) > 200:
            raise ScheduleError(f"{where}: the name must be a non-empty string of at most 200 characters")
        if not isinstance(data, dict):
            raise ScheduleError(f"{where}: expected a mapping with 'cron' and 'class', got {type(data).__name__}")
        unknown = set(data) - _FIELDS
        if unknown:
            raise ScheduleError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_FIELDS))}")
        args = data.get("args", [])
        if args is None:
            args = []
        if not isinstance(args, list):
            args = [args]  # sidekiq-cron accepts a single value
        kwargs = data.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise ScheduleError(f"{where}: 'kwargs' must be a mapping")
        schedule = cls(
            name=name, cron=str(data.get("cron", "")).strip(), job_name=str(data.get("class", "")).strip(),
            queue=data.get("queue") or None, args=args, kwargs=kwargs, description=str(data.get("description") or ""),
            enabled=bool(data.get("enabled", True)), timezone=str(data.get("timezone") or ""),
            catch_up=bool(data.get("catch_up", False)), source=source,
        )
        schedule.check()
        return schedule

    @classmethod
    def from_json(cls, raw):
        data = json.loads(raw)
        return cls(**data)

    def to_json(self):
        return json.dumps(asdict(self), sort_keys=True)

    # -- checks --------------------------------------------------------------------------

    def check(self, check_class=True):
        """Raise :class:`ScheduleError` unless the cron, zone, queue and class are usable, and
        ``args`` / ``kwargs`` fit the class's ``perform``."""
        where = f"recurring job {self.name!r} ({self.source})"
        if not self.cron or not croniter.is_valid(self.cron):
            raise ScheduleError(f"{where}: invalid cron expression {self.cron!r}")
        try:
            self.zone()
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(f"{where}: unknown time zone {self.timezone!r}") from None
        if self.queue is not None:
            try:
                check_queue_name(self.queue)
            except ValueError as exc:
                raise ScheduleError(f"{where}: {exc}") from None
        if check_class:
            try:
                job_class = self.job_class()
            except UnknownJobError:
                raise ScheduleError(
                    f"{where}: class {self.job_name!r} is not a registered Job (use its dotted path or its `name`)"
                ) from None
            try:
                execution.check_arguments(job_class, self.args, self.kwargs)
            except TypeError as exc:
                raise ScheduleError(f"{where}: {exc}") from None

    def job_class(self):
        return registry.get(self.job_name)

    def zone(self):
        if self.timezone:
            return ZoneInfo(self.timezone)
        from django.conf import settings

        return ZoneInfo(settings.TIME_ZONE or "UTC")

    # -- time ----------------------------------------------------------------------------

    def ticks_between(self, start_s, end_s, limit=10_000):
        """Epoch seconds of the ticks ``t`` with ``start_s < t <= end_s``, ascending, once each."""
        zone = self.zone()
        wall = datetime.datetime.fromtimestamp(start_s, zone).replace(tzinfo=None)
        it = croniter(self.cron, wall)
        ticks = []
        for _ in range(limit):
            tick = it.get_next(datetime.datetime).replace(tzinfo=zone).timestamp()
            if tick > end_s:
                break
            if tick > start_s and (not ticks or tick > ticks[-1]):
                ticks.append(tick)
        return ticks

    def previous_tick(self, at_s):
        """The latest tick at or before ``at_s`` (epoch seconds)."""
        zone = self.zone()
        wall = datetime.datetime.fromtimestamp(at_s, zone).replace(tzinfo=None)
        it = croniter(self.cron, wall + datetime.timedelta(microseconds=1))
        tick = it.get_prev(datetime.datetime).replace(tzinfo=zone).timestamp()
        # A wall time in a DST gap maps past ``at_s``; step back once more.
        return it.get_prev(datetime.datetime).replace(tzinfo=zone).timestamp() if tick > at_s else tick

    def next_tick(self, after_s):
        """The first tick after ``after_s`` (epoch seconds)."""
        ticks = self.ticks_between(after_s, after_s + 400 * 86400, limit=100)
        return ticks[0] if ticks else None

    def describe(self):
        """The cron in words, e.g. "At 06:00" (cron-descriptor), or the expression itself."""
        return describe_cron(self.cron)


def describe_cron(expression):
    try:
        from cron_descriptor import Options, get_description
    except ImportError:  # pragma: no cover - a dependency; keep the admin working without it
        return expression
    parts = expression.split()
    if len(parts) == 6:  # croniter puts seconds last; cron-descriptor wants them first
        parts = [parts[5]] + parts[:5]
    options = Options()
    options.use_24hour_time_format = True
    try:
        return get_description(" ".join(parts), options)
    except Exception:  # cron-descriptor raises its own types for expressions it can't word
        return expression


# -- sources ---------------------------------------------------------------------------------


def _build_all(raw, source, errors):
    built = []
    for name, data in raw.items():
        try:
            built.append(CronDefinition.from_definition(str(name), data, source))
        except ScheduleError as exc:
            if errors is None:
                raise
            errors.append(exc)
    return built


def from_settings(errors=None):
    """Schedules from ``BGJOBS["SCHEDULE"]``.  Bad entries raise :class:`ScheduleError`, or,
    when ``errors`` is a list, are appended to it and left out."""
    raw = conf.get("SCHEDULE") or {}
    if not isinstance(raw, dict):
        return _fail(ScheduleError("BGJOBS['SCHEDULE'] must be a dict of name -> definition"), errors)
    return _build_all(raw, "settings", errors)


def from_file(errors=None):
    """Schedules from the YAML file ``BGJOBS["SCHEDULE_FILE"]`` (none when unset); ``errors`` as above."""
    path = conf.get("SCHEDULE_FILE")
    if not path:
        return []
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle) or {}
    except OSError as exc:
        return _fail(ScheduleError(f"BGJOBS['SCHEDULE_FILE'] cannot be read: {exc}"), errors)
    except yaml.YAMLError as exc:
        return _fail(ScheduleError(f"BGJOBS['SCHEDULE_FILE'] {path} is not valid YAML: {exc}"), errors)
    if not isinstance(raw, dict):
        return _fail(ScheduleError(f"BGJOBS['SCHEDULE_FILE'] {path} must hold a mapping of name -> definition"), errors)
    return _build_all(raw, "file", errors)


def from_database(errors=None):
    """Schedules from the ``Schedule`` model's rows; ``errors`` as above."""
    from django.apps import apps

    built = []
    # Through the app registry: models.py imports this module (a row is checked as a CronDefinition).
    for row in apps.get_model("django_bgjobs", "Schedule").objects.all():
        try:
            built.append(row.to_schedule())
        except ScheduleError as exc:
            if errors is None:
                raise
            errors.append(exc)
    return built


def _fail(exc, errors):
    if errors is None:
        raise exc
    errors.append(exc)
    return []


def configured(include_database=True, errors=None):
    """Every schedule from all sources, by name (a later source wins: settings < file < database)."""
    merged = {}
    sources = [from_settings, from_file] + ([from_database] if include_database else [])
    for source in sources:
        for schedule in source(errors):
            merged[schedule.name] = schedule
    return merged


# -- Redis ---------------------------------------------------------------------------------


def store(schedule, pipe, now):
    """Queue on ``pipe`` the writes that make ``schedule`` live: its definition, and its clock
    started at ``now`` if it is new (so it never fires for the past)."""
    pipe.hset(keys.cron_schedules(), schedule.name, schedule.to_json())
    pipe.hsetnx(keys.cron_state(schedule.name), "last_tick", repr(float(now)))


def unstore(name, pipe):
    """Queue on ``pipe`` the removal of recurring job ``name`` and its state."""
    pipe.hdel(keys.cron_schedules(), name)
    pipe.delete(keys.cron_state(name))


def sync_row(row, deleted=False):
    """Write a ``Schedule`` row's change to Redis at once, so workers pick it up without a
    restart.  Called after the transaction commits; a Redis error is logged (the next worker
    start loads the row anyway), never raised into the admin."""
    try:
        pipe = get_redis().pipeline(transaction=True)
        previous = getattr(row, "_loaded_name", None)
        if previous and (deleted or previous != row.name):
            unstore(previous, pipe)
        if deleted:
            unstore(row.name, pipe)
        else:
            try:
                schedule = row.to_schedule()
            except ScheduleError as exc:
                logger.error("recurring job row %s not loaded: %s", row.pk, exc)
                unstore(row.name, pipe)
            else:
                store(schedule, pipe, now_s())
                # A row edit is the newer decision: it replaces an enable/disable from the admin page.
                pipe.hdel(keys.cron_state(schedule.name), "enabled")
        pipe.execute()
        row._loaded_name = None if deleted else row.name
    except redis.RedisError as exc:
        logger.error(
            "recurring job %r saved, but Redis could not be told (%s); workers load it at their next start",
            row.name, exc,
        )
