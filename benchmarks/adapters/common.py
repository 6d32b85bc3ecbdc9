"""What every adapter shares: the bench Redis, the no-op job body, and the client loops.

The no-op job is the same everywhere: note the time ``perform`` starts, then add one to
``bench:done`` (the harness polls it to see when a run is complete); a job enqueued for the
latency run carries its enqueue time ``t`` and also pushes ``start - t`` to ``bench:latency``,
in the same pipeline.  ``sidekiq_job.rb`` does exactly this in Ruby.
"""

import json
import os
import sys
import threading
import time

DONE = "bench:done"
LATENCY = "bench:latency"

_client = None
_lock = threading.Lock()


def redis_url():
    return os.environ["BENCH_REDIS_URL"]


def client():
    """The job bodies' own Redis client (redis-py, with hiredis when installed), one pool per process."""
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                import redis

                _client = redis.Redis.from_url(redis_url())
    return _client


def noop(t=0):
    """The job: count it done, and record its latency when ``t`` (enqueue time) is given."""
    started = time.time()
    if t:
        client().pipeline(transaction=False).incr(DONE).rpush(LATENCY, started - t).execute()
    else:
        client().incr(DONE)


def run_enqueue(adapter, n, mode):
    """Time ``n`` enqueues (``single``: one call per job; ``bulk``: one bulk call); print JSON."""
    adapter.connect()
    started, cpu_started = time.perf_counter(), time.process_time()
    if mode == "bulk":
        adapter.enqueue_bulk(n)
    else:
        enqueue = adapter.enqueue
        for _ in range(n):
            enqueue(0)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    print(json.dumps({"jobs": n, "seconds": elapsed, "cpu_seconds": cpu}))


def run_latency(adapter, n, rate):
    """Enqueue ``n`` jobs at ``rate`` per second, each carrying its enqueue time."""
    adapter.connect()
    interval = 1.0 / rate
    due = time.monotonic()
    for _ in range(n):
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        adapter.enqueue(time.time())
        due += interval
    print(json.dumps({"jobs": n}))


def script(name):
    """A console script installed next to this interpreter (the venv's ``bin/``, which is not on PATH)."""
    return os.path.join(os.path.dirname(sys.executable), name)
