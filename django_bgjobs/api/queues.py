"""A queue as the monitoring API sees it: :class:`Queue`, over the list ``queue:NAME``.

The client LPUSHes at the head and the worker takes from the tail, so the tail
is the oldest job and the next to run.  Listing pages through the list with
``LRANGE`` offsets and never loads it whole; the data is live, so a page read
while workers take jobs may skip or repeat one.
"""

from django_bgjobs import client, keys, registry
from django_bgjobs.api._common import (
    DEFAULT_PAGE_SIZE, RedisUser, answers, configured_queue_names, text, unless_wrong_type,
)
from django_bgjobs.api.records import JobRecord, clear_jobs
from django_bgjobs.errors import UnknownJobError
from django_bgjobs.payload import dumps, unscheduled, valid_queue_name


class Queue(RedisUser):
    """The jobs waiting in one queue.

    ::

        queue = Queue("default")
        queue.size(), queue.latency()
        for job in queue.page(0, 25):
            print(job.klass, job.display_args)
        queue.find_job(jid).delete()
    """

    def __init__(self, name="default", client=None, member=None):
        super().__init__(client)
        self.name = name
        #: The name exactly as the ``queues`` set holds it (:meth:`all` keeps bytes that are not
        #: UTF-8, which ``name`` shows with replacement characters), for :meth:`forget`.
        self.member = name if member is None else member
        # Removals made through this object's records, so iteration does not skip entries.
        self._removed = 0

    def __repr__(self):
        return f"<Queue {self.name}>"

    def __eq__(self, other):
        return isinstance(other, Queue) and other.name == self.name

    def __hash__(self):
        return hash(self.name)

    @property
    def key(self):
        return keys.queue(self.name)

    @classmethod
    def all(cls, client=None):
        """Every queue known in Redis (``queues``) or configured in ``BGJOBS["QUEUES"]``, by name."""
        probe = RedisUser(client)
        members = {text(member): member for member in unless_wrong_type((), probe.redis.smembers, keys.queues())}
        names = set(members) | set(configured_queue_names())
        return [cls(name, client=client, member=members.get(name)) for name in sorted(names)]

    # -- reads ------------------------------------------------------------------------------

    def size(self):
        """How many jobs wait in the queue now (0 when its key holds another type: :meth:`problem`)."""
        return unless_wrong_type(0, self.redis.llen, self.key)

    def __len__(self):
        return self.size()

    def latency(self):
        """Seconds since the oldest waiting job was enqueued; 0.0 when the queue is empty."""
        raw = unless_wrong_type(None, self.redis.lindex, self.key, -1)
        return 0.0 if raw is None else JobRecord(raw, self.name).latency

    def page(self, offset=0, limit=DEFAULT_PAGE_SIZE, newest_first=True):
        """Up to ``limit`` :class:`JobRecord`, skipping the ``offset`` newest (or oldest) jobs."""
        if offset < 0:
            raise ValueError(f"offset must be >= 0, not {offset}")
        if limit <= 0:
            return []
        if newest_first:
            raws = unless_wrong_type([], self.redis.lrange, self.key, offset, offset + limit - 1)
        else:
            # Count from the tail; LRANGE returns head-to-tail, so reverse for oldest first.
            raws = unless_wrong_type([], self.redis.lrange, self.key, -(offset + limit), -(offset + 1))[::-1]
        return [JobRecord(raw, self.name, parent=self, client=self._client) for raw in raws]

    def jobs(self, newest_first=True, page_size=DEFAULT_PAGE_SIZE):
        """Iterate every job, a page at a time; removing the yielded record is safe."""
        position = 0
        removed_before = self._removed
        while True:
            records = self.page(position - (self._removed - removed_before), page_size, newest_first)
            yield from records
            if len(records) < page_size:
                return
            position += len(records)

    def __iter__(self):
        return self.jobs()

    def find_job(self, jid):
        """The :class:`JobRecord` with this jid, or None.  O(n): for operators, not app logic."""
        needle = jid.encode() if isinstance(jid, str) else jid
        for record in self.jobs():
            raw = record.raw if isinstance(record.raw, bytes) else record.raw.encode()
            if needle in raw and record.jid == jid:
                return record
        return None

    def find_member(self, member_id):
        """The :class:`JobRecord` whose exact member has this :attr:`~JobRecord.member_id`, or None
        (names any entry, a payload that does not parse included).  O(n), as :meth:`find_job`."""
        return next((record for record in self.jobs() if record.member_id == member_id), None)

    @property
    def paused(self):
        """True while workers skip this queue (its name is in the ``paused`` set)."""
        return bool(unless_wrong_type(False, self.redis.sismember, keys.paused(), self.name))

    def problem(self):
        """Why this is not a queue the admin can show and workers can serve (its name is not a
        valid queue name, or its key holds another type than a list), or None."""
        if not valid_queue_name(self.name):
            return "not a valid queue name"
        kind = text(self.redis.type(self.key))
        if kind not in ("list", "none"):
            return f"its key {self.key!r} holds a {kind}, not a list"
        return None

    # -- changes ----------------------------------------------------------------------------

    def delete_job(self, jid):
        """Remove the job with this jid; True when it was found and removed."""
        record = self.find_job(jid)
        return record is not None and record.delete()

    def clear(self):
        """Delete every waiting job and forget the queue name; return how many jobs were removed.
        Their unique locks are freed and their batches told (``records.clear_jobs``)."""
        return clear_jobs(self.redis, self.key, "list", more=lambda pipe: pipe.srem(keys.queues(), self.name))

    def push(self, item):
        """Push a copy of the payload dict ``item`` to the head of this queue, to run after the jobs
        already waiting; return the :class:`JobRecord` written, or None when it was not written.

        For re-running a job whose payload was kept elsewhere (a ``FailedJob`` row): its
        ``queue`` becomes this queue's name, ``at`` is dropped and ``enqueued_at`` is the time of
        the push.  It goes through the one push (``client.push``) as any new job does: the client
        middleware runs (and may stop it), its unique lock is taken when its class has one (a
        held lock refuses it as ``on_conflict`` says), its size is checked.  Its ``bid`` is kept
        but not counted again.  The payload is not checked against a Job class; a worker buries
        it if it cannot run.
        """
        if not valid_queue_name(self.name):
            raise ValueError(f"queue name {self.name!r} is invalid")
        payload = unscheduled(item)
        payload["queue"] = self.name
        try:
            job_class = registry.get(payload.get("class"))
        except UnknownJobError:
            job_class = None
        [written] = client.push(job_class, [payload], defer=False, redis_client=self.redis)
        if written is None:
            return None
        return JobRecord(dumps(written), self.name, parent=self, client=self._client)

    def forget(self):
        """Remove this exact name from the ``queues`` and ``paused`` sets (where queue names are
        listed); True when it was listed.  For a name that is no queue's (see :meth:`problem`):
        its key is left alone, as another program's may be; :meth:`clear` deletes a queue's jobs."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.srem(keys.queues(), self.member)
        pipe.srem(keys.paused(), self.member)
        return bool(answers(pipe)[0])

    def pause(self):
        """Make every worker skip this queue until :meth:`resume`."""
        self.redis.sadd(keys.paused(), self.name)

    def resume(self):
        """Let workers take jobs from this queue again."""
        self.redis.srem(keys.paused(), self.name)
