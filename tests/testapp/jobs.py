"""Job classes the test suite enqueues and runs; the app's ``ready()`` autodiscovers this module.

Jobs that leave a trace write it to Redis, not to memory, so a test can count what a
worker *subprocess* did as easily as what ran in-process.  The ledger is the Redis
list :data:`PERFORMED_KEY`: one JSON object ``{"jid": ..., "args": [...]}`` per run,
appended in the order the runs finished (read it with :func:`performed`).  The
test database is flushed before every test, so the ledger starts empty.
"""

import asyncio
import json
import time

from django_bgjobs import Job
from django_bgjobs.connection import get_redis

PERFORMED_KEY = "test:performed"
#: Sorted set: jid -> Redis's clock (epoch seconds) when its first ledger row was written.
FINISHED_KEY = "test:finished"

_RECORD_FINISHED = """
local now = redis.call('TIME')
redis.call('ZADD', KEYS[2], 'NX', tonumber(now[1]) + tonumber(now[2]) / 1000000, ARGV[1])
return redis.call('RPUSH', KEYS[1], ARGV[2])
"""


def record(jid, args, **extra):
    """Append one run to the ledger (used by every recording job)."""
    get_redis().rpush(PERFORMED_KEY, json.dumps({"jid": jid, "args": list(args), **extra}))


def record_finished(jid, args, **extra):
    """:func:`record`, and note in :data:`FINISHED_KEY` when, by Redis's clock (one atomic step):
    the kill tests compare it with the kill to see how long a finished job waited for its ack."""
    get_redis().eval(_RECORD_FINISHED, 2, PERFORMED_KEY, FINISHED_KEY, jid,
                     json.dumps({"jid": jid, "args": list(args), **extra}))


def performed(client=None):
    """The ledger as a list of dicts, oldest first."""
    client = client or get_redis()
    return [json.loads(raw) for raw in client.lrange(PERFORMED_KEY, 0, -1)]


class JobFailure(Exception):
    """What the failing test jobs raise, so a test can tell it from a real error."""


class NoopJob(Job):
    """Takes any arguments and does nothing."""

    def perform(self, *args, **kwargs):
        return None


class RecordJob(Job):
    """Appends its jid and args to the ``test:performed`` ledger."""

    def perform(self, *args):
        get_redis().rpush(PERFORMED_KEY, json.dumps({"jid": self.jid, "args": list(args)}))


class RecordKwargsJob(Job):
    """Like :class:`RecordJob`, with keyword arguments recorded under ``kwargs``."""

    def perform(self, *args, **kwargs):
        record(self.jid, args, kwargs=kwargs)


class ReturnJob(Job):
    """Returns its argument, for tests that look at ``perform``'s result."""

    def perform(self, value):
        return value


class FailingJob(Job):
    """Always raises :class:`JobFailure` (with ``message``), after noting the attempt in the ledger."""

    def perform(self, message="FailingJob always fails"):
        record(self.jid, [message], failed=True)
        raise JobFailure(message)


class SlowJob(Job):
    """Sleeps ``seconds``, then records (shutdown and busy-worker tests)."""

    def perform(self, seconds):
        time.sleep(seconds)
        record(self.jid, [seconds])


class FlakyJob(Job):
    """Fails its first ``fail_times`` attempts, then records.

    Attempts are counted in the Redis key ``test:flaky:<key>``, so they add up across
    retries and across worker processes.
    """

    def perform(self, key, fail_times):
        attempt = get_redis().incr(f"test:flaky:{key}")
        if attempt <= fail_times:
            raise JobFailure(f"FlakyJob {key!r} attempt {attempt} of {fail_times} failing")
        record(self.jid, [key, fail_times], attempt=attempt)


class LowQueueJob(Job):
    """Records, and is routed to the ``low`` queue by its class option."""

    queue = "low"

    def perform(self, *args):
        record(self.jid, args)


class NoRetryJob(Job):
    """``retry = False``: a failure drops it (no retry set, no dead set)."""

    retry = False

    def perform(self):
        raise JobFailure("NoRetryJob fails once and is dropped")


class AuthorJob(Job):
    """Takes an ``Author`` instance (stored as a reference) and records its current name."""

    def perform(self, author):
        record(self.jid, [author.pk, author.name])


class RenameAuthorJob(Job):
    """Renames an ``Author``: a job whose effect is visible in the database."""

    def perform(self, author, name):
        author.name = name
        author.save(update_fields=["name"])


class ChainJob(Job):
    """Records, then enqueues itself with ``remaining - 1`` until it reaches 0 (job-enqueues-job tests)."""

    def perform(self, remaining):
        record(self.jid, [remaining])
        if remaining > 0:
            ChainJob.perform_later(remaining - 1)


class LoopJob(Job):
    """Enqueues itself forever: the test helpers' depth guard must stop it."""

    def perform(self):
        LoopJob.perform_later()


# The unique-job and batch test jobs live in their own module; imported here so that
# worker subprocesses, which autodiscover jobs.py, know them too.
from tests.testapp import unique_batch_jobs  # noqa: E402,F401


class AsyncSleepJob(Job):
    """``async def perform``: sleeps ``seconds`` on the event loop, then appends
    ``{jid, args, started, ended}`` to the ledger (from a thread, so the loop never blocks)."""

    async def perform(self, seconds):
        started = time.time()
        await asyncio.sleep(seconds)
        await asyncio.to_thread(record_finished, self.jid, [seconds], started=started, ended=time.time())


class AsyncFailOnceJob(Job):
    """Like :class:`AsyncSleepJob`, then fails on its first attempt; its retry is an hour away,
    so each job ends in the retry set after one ledger row (a second row: two attempts for
    one failure)."""

    def retry_in(self, count, exception):
        return 3600

    async def perform(self, seconds):
        started = time.time()
        await asyncio.sleep(seconds)
        await asyncio.to_thread(record_finished, self.jid, [seconds], started=started, ended=time.time())
        if self.retry_count is None:
            raise JobFailure("first attempt fails")

# The jobs the Ruby interop tests share with Sidekiq, for worker subprocesses too.
from tests.testapp import interop_jobs  # noqa: E402,F401
