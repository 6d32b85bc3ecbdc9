"""RQ: ``Queue.enqueue`` / ``enqueue_many``; ``rq worker -w rq.worker.SimpleWorker``.

RQ runs one job at a time per process (no threads); SimpleWorker skips the fork per job
that the default ``Worker`` does.  Two processes are two copies.
"""


import redis
import rq
from rq import Queue

from adapters import common

LABEL = "RQ (SimpleWorker)"
BULK = True  # Queue.enqueue_many, one pipeline
MULTIPROCESS = "copies"

_queue = None


def available():
    return None


def version():
    return rq.__version__ if hasattr(rq, "__version__") else rq.VERSION


def connect():
    global _queue
    conn = redis.Redis.from_url(common.redis_url())
    conn.ping()
    _queue = Queue("default", connection=conn)


def enqueue(t):
    _queue.enqueue(common.noop, t)


def enqueue_bulk(n):
    _queue.enqueue_many([Queue.prepare_data(common.noop, (0,)) for _ in range(n)])


def worker_argv(processes, threads, index):
    return [common.script("rq"), "worker", "-w", "rq.worker.SimpleWorker", "--url", common.redis_url(), "default"]
