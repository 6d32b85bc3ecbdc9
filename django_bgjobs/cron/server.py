"""Scheduler: enqueues each tick of every recurring job exactly once across all workers.

Runs in one thread per worker process (unless ``runjobs --no-schedule``), started by the
:class:`~django_bgjobs.worker.launcher.Launcher`.  There is no leader and no separate
beat process: every worker checks every schedule, and one call takes each tick, because
the tick's job is pushed through the one push (``client.push``) with a guard that claims
the tick only if it is later than the schedule's ``last_tick``: the claim and the push are
one atomic step.  Each worker offers the ticks of a schedule in ascending order, so none is
skipped by a faster peer.

A tick's job is built and pushed as any enqueue is: the client middleware runs, its unique
lock is taken (when the lock is held, the tick is used up and nothing is pushed: logged),
its size is checked and ``job_enqueued`` is sent.

Duties:

1. :meth:`sync` at start: write the schedules from settings, the YAML file and the
   database into ``cron:schedules``, remove those that left the settings or the file,
   and start a new schedule's clock at now (so it does not fire for the past).
2. :meth:`enqueue_due`, every second or so: read the definitions from Redis (so a row
   edited in the admin takes effect without a restart) and, for each enabled schedule,
   enqueue the ticks due since its last tick.  A tick older than ``CRON_GRACE_S`` was
   missed while no worker ran: the last missed one is enqueued if the schedule has
   ``catch_up``, and skipped otherwise (claimed without a job); never a backlog.

A schedule that cannot be used (unknown class, bad cron) is logged and skipped, never
raised: one bad entry must not stop the others or the worker.
"""

import logging
import threading

import redis

from django_bgjobs import client, conf, keys
from django_bgjobs.cron import definitions as schedules
from django_bgjobs.connection import get_redis
from django_bgjobs.errors import BgJobsError, EnqueueError, UniqueJobError
from django_bgjobs.payload import now_s, printable
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
                source = schedules.CronDefinition.from_json(raw).source
            except (ValueError, TypeError):
                source = "unknown"
            if source != "database" or database_ok:
                pipe.hdel(keys.cron_schedules(), name)
        for schedule in wanted.values():
            schedules.store(schedule, pipe, now)
        pipe.execute()
        if wanted:
            logger.info("recurring jobs loaded: %s", ", ".join(printable(name) for name in sorted(wanted)))
        return wanted

    def load(self):
        """The schedules now in Redis, by name (unreadable entries are logged and left out)."""
        loaded = {}
        for name, raw in self.client.hgetall(keys.cron_schedules()).items():
            name = name.decode()
            try:
                loaded[name] = schedules.CronDefinition.from_json(raw)
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
            except EnqueueError as exc:
                if isinstance(exc.__cause__, redis.RedisError):
                    raise exc.__cause__  # Redis is down: the thread's loop waits it out
                self._report(schedule.name, str(exc))
            except BgJobsError as exc:
                self._report(schedule.name, str(exc))
            except (ValueError, KeyError) as exc:
                self._report(schedule.name, f"cannot compute its ticks: {exc}")
            except redis.RedisError:
                raise
            except Exception as exc:  # a client middleware's error must not end the thread
                self._report(schedule.name, f"{type(exc).__name__}: {exc}")
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
                    logger.info("recurring job %s: tick at %s was missed; skipped", printable(schedule.name), missed)
        for tick in schedule.ticks_between(max(last_tick, cutoff), now):
            enqueued += self._offer(schedule, tick, now)
        return enqueued

    def _offer(self, schedule, tick, now, mark_only=False):
        """Try to take ``tick`` for ``schedule`` and push its job (``mark_only``: a missed tick,
        only taken); return 1 if this call pushed a job, else 0."""
        if mark_only:
            self._claim(schedule, tick)
            return 0
        job_class = schedule.job_class()
        configured = job_class.set(queue=schedule.queue) if schedule.queue else job_class.set()
        [payload] = configured.build_payloads([(tuple(schedule.args), dict(schedule.kwargs))])
        payload["cron"] = schedule.name
        payload["cron_at"] = tick  # the tick this run stands for
        jid, state = payload["jid"], keys.cron_state(schedule.name)
        try:
            [written] = client.push(
                job_class, [payload], defer=False, redis_client=self.client,
                guards={jid: [client.Guard.above(state, "last_tick", tick)]},
                writes={jid: [("HSET", state, "last_enqueued_at", repr(float(now)), "last_jid", jid)]},
            )
        except UniqueJobError as exc:  # on_conflict = "raise": the tick is used up, no job
            logger.info("recurring job %s: tick at %s not enqueued: %s", printable(schedule.name), tick, exc)
            return 0
        if written is None:
            # Taken by another worker, or its lock was held (the tick is used up then), or a
            # client middleware stopped it: the tick must not be offered again either way.
            self._claim(schedule, tick)
            return 0
        logger.info("recurring job %s enqueued %s jid=%s", printable(schedule.name), printable(schedule.job_name), jid)
        return 1

    def _claim(self, schedule, tick):
        """Take ``tick`` without a job, if no later one is taken: True when this call took it."""
        key = keys.cron_state(schedule.name)
        with self.client.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    last = pipe.hget(key, "last_tick")
                    if last is not None and float(last) >= tick:
                        pipe.unwatch()
                        return False
                    pipe.multi()
                    pipe.hset(key, "last_tick", repr(float(tick)))
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue

    def _report(self, name, message):
        if name not in self._reported:
            logger.error("recurring job %s skipped: %s", printable(name), printable(message))
            self._reported.add(name)

    # -- thread ----------------------------------------------------------------------------

    def start(self):
        self.thread = threading.Thread(target=self.run, name="bgjobs-scheduler", daemon=True)
        self.thread.start()

    def run(self):
        repeat(self.enqueue_due, self.interval_s, self.stop_event, self._reconnect)
