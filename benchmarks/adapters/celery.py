"""Celery with the Redis transport: ``noop.delay``; ``celery worker -P threads -c T``.

No result backend (the no-op returns nothing).  Mingle and gossip are off: with two
workers they only add start-up time, and the benchmark counts from worker start.
"""


from celery import Celery, __version__

from adapters import common

LABEL = "Celery"
BULK = False
MULTIPROCESS = "copies"  # one threads-pool process per worker command

app = Celery("bench", broker=common.redis_url())
app.conf.task_default_queue = "default"
app.conf.broker_connection_retry_on_startup = True


@app.task(name="bench.noop")
def noop(t):
    common.noop(t)


def available():
    return None


def version():
    return __version__


def connect():
    with app.connection_for_write() as conn:
        conn.ensure_connection()


def enqueue(t):
    noop.delay(t)


def worker_argv(processes, threads, index):
    return [
        common.script("celery"), "-A", "adapters.celery:app", "worker", "-P", "threads", "-c", str(threads),
        "-Q", "default", "-n", f"bench{index}@%h", "--without-mingle", "--without-gossip",
    ]
