"""Recurring jobs as stored in Redis: list them, enqueue one now, disable or enable one."""

from django_bgjobs import keys
from django_bgjobs.cron import definitions as schedules
from django_bgjobs.api._common import RedisUser, answers, text, to_float, unless_wrong_type
from django_bgjobs.payload import now_s


class CronEntry(RedisUser):
    """One recurring job: its definition plus the state the schedulers keep."""

    def __init__(self, schedule, state, client=None):
        super().__init__(client)
        self.schedule = schedule
        self.name = schedule.name
        self.last_tick = to_float(state.get("last_tick"))
        self.last_enqueued_at = to_float(state.get("last_enqueued_at"))
        self.last_jid = text(state.get("last_jid")) or None
        override = text(state.get("enabled"))
        #: Enabled unless disabled in the definition or from the admin/API (which wins).
        self.enabled = schedule.enabled if override is None else override == "1"

    @property
    def description(self):
        return self.schedule.describe()

    def next_run(self, now=None):
        """Epoch seconds of the next tick (None when disabled)."""
        if not self.enabled:
            return None
        try:
            return self.schedule.next_tick(now_s() if now is None else now)
        except (ValueError, KeyError, TypeError):  # a cron or zone this host cannot use: the worker logs it
            return None

    def enqueue_now(self):
        """Enqueue one run now, outside the schedule; return its jid.  Writes."""
        job_class = self.schedule.job_class()
        configured = job_class.set(queue=self.schedule.queue) if self.schedule.queue else job_class.set()
        handle = configured.perform_later(*self.schedule.args, **self.schedule.kwargs)
        self.redis.hset(keys.cron_state(self.name), mapping={"last_enqueued_at": now_s(), "last_jid": handle.jid})
        return handle.jid

    def disable(self):
        """Stop enqueueing this job until :meth:`enable` (survives worker restarts).  Writes."""
        self.redis.hset(keys.cron_state(self.name), "enabled", "0")
        self.enabled = False

    def enable(self):
        """Undo :meth:`disable`.  Writes."""
        self.redis.hset(keys.cron_state(self.name), "enabled", "1")
        self.enabled = True


class CronSet(RedisUser):
    """Every recurring job in Redis, sorted by name.  ``CronSet().get(name)`` finds one."""

    def entries(self):
        """Every recurring job whose definition reads; :meth:`unreadable` lists the others."""
        by_name = self._definitions()
        names = sorted(by_name)
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(keys.cron_state(name))
        states = answers(pipe)
        entries = []
        for name, state in zip(names, states):
            schedule = _definition(by_name[name])
            if schedule is not None:
                entries.append(CronEntry(schedule, {text(k): v for k, v in (state or {}).items()}, self._client))
        return entries

    def unreadable(self):
        """``[(name, raw)]`` of the definitions that do not read (not JSON, missing fields),
        sorted by name; :meth:`delete` removes one by its exact name."""
        return [(name, raw) for name, raw in sorted(self._definitions().items()) if _definition(raw) is None]

    def delete(self, name):
        """Remove the definition named exactly ``name`` from Redis; True when it was there.  Writes.
        A worker starting with it still in its settings or file puts it back."""
        return bool(self.redis.hdel(keys.cron_schedules(), name))

    def _definitions(self):
        raw = unless_wrong_type({}, self.redis.hgetall, keys.cron_schedules())
        return {text(name): value for name, value in raw.items()}

    def __iter__(self):
        return iter(self.entries())

    def __len__(self):
        return unless_wrong_type(0, self.redis.hlen, keys.cron_schedules())

    def get(self, name):
        """The entry named ``name``, or None."""
        schedule = _definition(unless_wrong_type(None, self.redis.hget, keys.cron_schedules(), name))
        if schedule is None:
            return None
        state = unless_wrong_type({}, self.redis.hgetall, keys.cron_state(name))
        return CronEntry(schedule, {text(k): v for k, v in state.items()}, self._client)


def _definition(raw):
    """The :class:`CronDefinition` stored as ``raw``, or None when it does not read."""
    if raw is None:
        return None
    try:
        return schedules.CronDefinition.from_json(raw)
    except (ValueError, TypeError, RecursionError):
        return None
