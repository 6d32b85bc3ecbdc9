"""Recurring jobs as stored in Redis: list them, enqueue one now, disable or enable one."""

from django_bgjobs import keys
from django_bgjobs.cron import definitions as schedules
from django_bgjobs.api._common import RedisUser, text, to_float
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
        return self.schedule.next_tick(now_s() if now is None else now)

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
        raw = self.redis.hgetall(keys.cron_schedules())
        names = sorted(text(name) for name in raw)
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(keys.cron_state(name))
        states = pipe.execute()
        by_name = {text(name): value for name, value in raw.items()}
        entries = []
        for name, state in zip(names, states):
            try:
                schedule = schedules.CronDefinition.from_json(by_name[name])
            except (ValueError, TypeError):
                continue
            entries.append(CronEntry(schedule, {text(k): v for k, v in state.items()}, self._client))
        return entries

    def __iter__(self):
        return iter(self.entries())

    def __len__(self):
        return self.redis.hlen(keys.cron_schedules())

    def get(self, name):
        """The entry named ``name``, or None."""
        raw = self.redis.hget(keys.cron_schedules(), name)
        if raw is None:
            return None
        state = {text(k): v for k, v in self.redis.hgetall(keys.cron_state(name)).items()}
        return CronEntry(schedules.CronDefinition.from_json(raw), state, self._client)
