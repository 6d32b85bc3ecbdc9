"""Dramatiq with its Redis broker: ``noop.send``; ``dramatiq adapters.dramatiq -p N -t T``."""


import dramatiq
from dramatiq.brokers.redis import RedisBroker

from adapters import common

LABEL = "Dramatiq"
BULK = False  # no bulk enqueue call (group() sends one by one)
MULTIPROCESS = "native"  # dramatiq -p N

broker = RedisBroker(url=common.redis_url())
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="default")
def noop(t):
    common.noop(t)


def available():
    return None


def version():
    return dramatiq.__version__


def connect():
    broker.client.ping()


def enqueue(t):
    noop.send(t)


def worker_argv(processes, threads, index):
    return [common.script("dramatiq"), "adapters.dramatiq", "-p", str(processes), "-t", str(threads)]
