"""Scheduler: enqueues each tick of every recurring job exactly once across all workers.

Runs in one thread per worker process (unless ``runjobs --no-schedule``), started by the
:class:`~django_bgjobs.worker.launcher.Launcher`.  There is no leader and no separate
beat process: every worker checks every schedule, and ``lua/cron_enqueue.lua`` lets one
call take each tick, because a tick is taken only if it is later than the schedule's
``last_tick`` and the claim and the push are one atomic step.  Each worker offers the
ticks of a schedule in ascending order, so none is skipped by a faster peer.

Duties:

1. :meth:`sync` at start: write the schedules from settings, the YAML file and the
   database into ``cron:schedules``, remove those that left the settings or the file,
   and start a new schedule's clock at now (so it does not fire for the past).
2. :meth:`enqueue_due`, every second or so: read the definitions from Redis (so a row
   edited in the admin takes effect without a restart) and, for each enabled schedule,
   enqueue the ticks due since its last tick.  A tick older than ``CRON_GRACE_S`` was
   missed while no worker ran: the last missed one is enqueued if the schedule has
   ``catch_up``, and skipped otherwise; never a backlog.

A schedule that cannot be used (unknown class, bad cron) is logged and skipped, never
raised: one bad entry must not stop the others or the worker.
"""

import logging
import threading

from django_bgjobs import client, conf, keys, schedules, scripts
from django_bgjobs.connection import get_redis
from django_bgjobs.errors import BgJobsError
from django_bgjobs.payload import dumps, now_s
from django_bgjobs.worker.backoff import Reconnect, repeat

logger = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, client=None, stop_event=None):
        self.client = client or get_redis()
        self.stop_event = stop_event or threading.Event()
        self.interval_s = min(1.0, conf.get("POLL_INTERVAL_S"))
        self.thread = None
        self._reported = set()  # schedules already logged as broken, so the log is not flooded
        self._reconnect = Reconnect("scheduler", conf.get("RECONNECT_MAX_WAIT_S"), self.stop_event)

    # -- loading ---------------------------------------------------------------------------

    def sync(self, now=None):
        """Load the configured schedules into Redis (see the module docstring); return them."""
        now = now_s() if now is None else now
        errors = []
        wanted = schedules.configured(include_database=False, errors=errors)
        database_ok = True
        try:
            for schedule in schedules.from_database(errors):
                wanted[schedule.name] = schedule
        except Exception as exc:  # e.g. no table yet: migrations not run
            database_ok = False
            logger.error("recurring jobs from the database not loaded: %s", exc)
        for error in errors:
            logger.error("recurring job not loaded: %s", error)
        pipe = self.client.pipeline(transaction=True)
        for name, raw in self.client.hgetall(keys.cron_schedules()).items():
            name = name.decode()
            if name in wanted:
                continue
            try:
                source = schedules.Schedule.from_json(raw).source
            except (ValueError, TypeError):
                source = "unknown"
            if source != "database" or database_ok:
                pipe.hdel(keys.cron_schedules(), name)
        for schedule in wanted.values():
            schedules.store(schedule, pipe, now)
        pipe.execute()
        if wanted:
            logger.info("recurring jobs loaded: %s", ", ".join(sorted(wanted)))
        return wanted

    def load(self):
        """The schedules now in Redis, by name (unreadable entries are logged and left out)."""
        loaded = {}
        for name, raw in self.client.hgetall(keys.cron_schedules()).items():
            name = name.decode()
            try:
                loaded[name] = schedules.Schedule.from_json(raw)
            except (ValueError, TypeError) as exc:
                self._report(name, f"unreadable definition in Redis: {exc}")
        return loaded

    # -- one step --------------------------------------------------------------------------

    def enqueue_due(self, now=None):
        """Enqueue every tick due at ``now`` (epoch seconds); return how many this call enqueued."""
        now = now_s() if now is None else now
        grace_s = conf.get("CRON_GRACE_S")
        loaded = list(self.load().values())
        if not loaded:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for schedule in loaded:
            pipe.hmget(keys.cron_state(schedule.name), "last_tick", "enabled")
        enqueued = 0
        for schedule, (last_tick, override) in zip(loaded, pipe.execute()):
            # "enabled" in the state hash is the admin's switch; it wins over the definition.
            if not (schedule.enabled if override is None else override == b"1"):
                continue
            try:
                enqueued += self._enqueue_schedule(schedule, last_tick, now, grace_s)
            except BgJobsError as exc:
                self._report(schedule.name, str(exc))
            except (ValueError, KeyError) as exc:
                self._report(schedule.name, f"cannot compute its ticks: {exc}")
        return enqueued

    def _enqueue_schedule(self, schedule, last_tick, now, grace_s):
        last_tick = float(last_tick) if last_tick is not None else None
        if last_tick is None:  # created behind our back (e.g. Redis flushed): start now
            self.client.hsetnx(keys.cron_state(schedule.name), "last_tick", repr(now))
            return 0
        enqueued = 0
        cutoff = now - grace_s
        if last_tick < cutoff:
            missed = schedule.previous_tick(cutoff)
            if missed > last_tick:
                if schedule.catch_up:
                    enqueued += self._offer(schedule, missed, now)
                else:
                    self._offer(schedule, missed, now, mark_only=True)
                    logger.info("recurring job %s: tick at %s was missed; skipped", schedule.name, missed)
        for tick in schedule.ticks_between(max(last_tick, cutoff), now):
            enqueued += self._offer(schedule, tick, now)
        return enqueued

    def _offer(self, schedule, tick, now, mark_only=False):
        """Try to take ``tick`` for ``schedule``; push its job if this call took it."""
        raw, jid, queue = "", "", schedule.queue or "default"
        if not mark_only:
            job_class = schedule.job_class()
            configured = job_class.set(queue=schedule.queue) if schedule.queue else job_class.set()
            payload = client.build_payloads(configured, [(tuple(schedule.args), dict(schedule.kwargs))])[0]
            payload["cron"] = schedule.name
            payload["cron_at"] = tick  # the tick this run stands for
            payload["enqueued_at"] = now
            raw, jid, queue = dumps(payload), payload["jid"], payload["queue"]
        taken = scripts.run(
            "cron_enqueue", [keys.cron_state(schedule.name), keys.queue(queue), keys.queues()],
            [repr(float(tick)), raw, queue, jid, repr(float(now))], client=self.client,
        )
        if taken and not mark_only:
            logger.info("recurring job %s enqueued %s jid=%s", schedule.name, schedule.job_name, jid)
        return int(taken) if not mark_only else 0

    def _report(self, name, message):
        if name not in self._reported:
            logger.error("recurring job %s skipped: %s", name, message)
            self._reported.add(name)

    # -- thread ----------------------------------------------------------------------------

    def start(self):
        self.thread = threading.Thread(target=self.run, name="bgjobs-scheduler", daemon=True)
        self.thread.start()

    def run(self):
        repeat(self.enqueue_due, self.interval_s, self.stop_event, self._reconnect)
