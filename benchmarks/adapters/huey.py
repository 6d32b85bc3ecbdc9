"""Huey with Redis: ``noop(t)`` enqueues; ``huey_consumer adapters.huey.huey -k thread -w T``."""

from importlib.metadata import version as _version

from huey import RedisHuey

from adapters import common

LABEL = "Huey"
BULK = False
MULTIPROCESS = "copies"  # -k process runs processes without threads; N copies of the thread consumer instead

huey = RedisHuey("bench", url=common.redis_url())


@huey.task()
def noop(t):
    common.noop(t)


def available():
    return None


def version():
    return _version("huey")


def connect():
    huey.storage.conn.ping()


def enqueue(t):
    noop(t)


def worker_argv(processes, threads, index):
    return [common.script("huey_consumer"), "adapters.huey.huey", "-k", "thread", "-w", str(threads)]
