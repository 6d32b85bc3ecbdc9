"""django_bgjobs.worker.backoff: the loop of the worker's periodic threads, and its backoff."""

import threading
import time

import redis

from django_bgjobs.worker.backoff import Reconnect, repeat


def test_repeat_tries_a_step_again_after_a_redis_error_and_ends_when_told():
    stop = threading.Event()
    calls = []

    def step():
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise redis.ConnectionError("Redis is down")
        if len(calls) == 3:
            stop.set()

    reconnect = Reconnect("test", 0.01, stop)
    repeat(step, 0.001, stop, reconnect)

    assert len(calls) == 3
    assert reconnect.errors == 0  # the success after the error reset the backoff


def test_repeat_waits_one_interval_before_the_first_step_when_asked():
    stop = threading.Event()
    started = time.monotonic()
    first = []

    def step():
        first.append(time.monotonic() - started)
        stop.set()

    repeat(step, 0.2, stop, Reconnect("test", 0.01, stop), wait_first=True)

    assert len(first) == 1 and first[0] >= 0.2


def test_repeat_takes_a_callable_interval_for_jitter():
    stop = threading.Event()
    waits = []

    def interval():
        waits.append(1)
        if len(waits) == 2:
            stop.set()
        return 0.001

    repeat(lambda: None, interval, stop, Reconnect("test", 0.01, stop))

    assert len(waits) == 2
