"""Unique-job locks held in Redis: list them, release one by hand.

A lock is a hash (``unique:DIGEST`` for an enqueue lock, ``unique:DIGEST:run`` for a
``while_executing`` run lock) naming the job holding it, with a TTL; see
``django_bgjobs.unique``.  Listing walks the keys with ``SCAN`` (the server filters, no call
loads them all); releasing deletes the key, whatever job holds it.
"""

from django_bgjobs import keys
from django_bgjobs.api._common import DEFAULT_PAGE_SIZE, RedisUser, glob_escape, text, to_float


class UniqueLock:
    """One held lock: ``key``, ``digest``, ``kind`` (``"enqueue"`` or ``"run"``), the holder's
    ``jid`` and ``klass``, ``lock`` type, ``queue``, ``locked_at`` (epoch seconds), ``ttl_s``
    (seconds left) and, for a run lock, ``heartbeat`` (the holder process's heartbeat key)."""

    def __init__(self, key, fields, ttl_ms):
        self.key = key
        prefix = keys.unique_lock("")
        run_suffix = keys.unique_run_lock("")[len(prefix):]
        self.kind = "run" if key.endswith(run_suffix) else "enqueue"
        self.digest = key[len(prefix):len(key) - (len(run_suffix) if self.kind == "run" else 0)]
        fields = {text(k): text(v) for k, v in fields.items()}
        self.jid = fields.get("jid")
        self.klass = fields.get("class")
        self.lock = fields.get("lock") or ("while_executing" if self.kind == "run" else None)
        self.queue = fields.get("queue")
        self.bid = fields.get("bid") or None
        self.scheduled_at = to_float(fields.get("at"))
        self.locked_at = to_float(fields.get("locked_at"))
        self.heartbeat = fields.get("heartbeat")
        self.ttl_s = ttl_ms / 1000 if ttl_ms is not None and ttl_ms >= 0 else None

    def __repr__(self):
        return f"<UniqueLock {self.kind} {self.digest} jid={self.jid} {self.klass}>"


class UniqueLocks(RedisUser):
    """Every unique-job lock held now.  ``UniqueLocks().release(key)`` frees one."""

    def scan(self, count=DEFAULT_PAGE_SIZE, klass=None):
        """Iterate the held locks (:class:`UniqueLock`), optionally of one job class, in no order."""
        pattern = glob_escape(keys.unique_lock("")) + "*"
        seen = set()
        batch = []
        for key in self.redis.scan_iter(match=pattern, count=count):
            key = text(key)
            if key in seen or not self.is_lock_key(key):  # SCAN may return a key twice; another program's key
                continue
            seen.add(key)
            batch.append(key)
            if len(batch) >= count:
                yield from self._read(batch, klass)
                batch = []
        if batch:
            yield from self._read(batch, klass)

    def __iter__(self):
        return self.scan()

    def _read(self, batch, klass):
        pipe = self.redis.pipeline(transaction=False)
        for key in batch:
            pipe.type(key)
            pipe.hgetall(key)
            pipe.pttl(key)
        results = pipe.execute(raise_on_error=False)
        for index, key in enumerate(batch):
            kind, fields, ttl_ms = results[3 * index:3 * index + 3]
            if text(kind) != "hash" or not isinstance(fields, dict) or not fields:
                continue  # expired meanwhile, or a key of another program under the prefix
            lock = UniqueLock(key, fields, ttl_ms)
            if klass is None or lock.klass == klass:
                yield lock

    def find(self, jid):
        """The locks held by job ``jid`` (a list; at most an enqueue and a run lock)."""
        return [lock for lock in self.scan() if lock.jid == jid]

    def get(self, key):
        """The :class:`UniqueLock` at ``key``, or None."""
        if not self.is_lock_key(key):
            return None
        return next(iter(self._read([key], None)), None)

    def is_lock_key(self, key):
        """True when ``key`` names a unique lock (and not some other key)."""
        prefix = keys.unique_lock("")
        rest = key[len(prefix):] if isinstance(key, str) and key.startswith(prefix) else ""
        digest = rest[: -len(":run")] if rest.endswith(":run") else rest
        return bool(digest) and all(c in "0123456789abcdef" for c in digest)

    def release(self, key):
        """Delete the lock at ``key``, whatever job holds it; True when it was held.  Writes.

        The job holding it is not touched: an enqueue lock released by hand lets an equal
        job be enqueued; a run lock released by hand lets an equal job start while it runs.
        """
        if not self.is_lock_key(key):
            raise ValueError(f"{key!r} is not a unique-job lock key")
        return bool(self.redis.delete(key))
