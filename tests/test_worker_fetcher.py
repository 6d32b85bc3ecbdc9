"""django_bgjobs.worker.fetcher: reliable fetch into the in-flight list, queue order, paused queues."""

import json
import random
import threading
import time

import pytest

from django_bgjobs import keys
from django_bgjobs.worker.fetcher import Fetcher
from django_bgjobs.worker.queues import QueueOrder
from tests.testapp.jobs import RecordJob

IDENTITY = "test-host:4242:fetcher"
QUEUES = ["critical", "default", "low"]


def make_fetcher(queues=QUEUES):
    return Fetcher(IDENTITY, QueueOrder(queues))


def enqueue(queue, *args):
    return RecordJob.set(queue=queue).perform_later(*args).jid


def jid_of(fetched):
    return json.loads(fetched[1])["jid"]


def test_fetch_moves_the_job_into_the_inflight_list_when_a_queue_has_one(redis):
    # Given
    jid = enqueue("default", 1)
    fetcher = make_fetcher()

    # When
    fetched = fetcher.fetch(block=False)

    # Then: it left the queue and sits in flight until acknowledged
    assert fetched[0] == "default"
    assert jid_of(fetched) == jid
    assert redis.llen("queue:default") == 0
    assert redis.lrange(f"inflight:{IDENTITY}:default", 0, -1) == [fetched[1].decode()]


def test_inflight_key_names_identity_and_queue():
    assert make_fetcher().inflight_key("low") == keys.inflight(IDENTITY, "low") == f"inflight:{IDENTITY}:low"


def test_fetch_takes_the_oldest_job_first_when_a_queue_has_several(redis):
    # Given
    jids = [enqueue("default", n) for n in range(3)]
    fetcher = make_fetcher()

    # When
    fetched = [jid_of(fetcher.fetch(block=False)) for _ in range(3)]

    # Then
    assert fetched == jids
    assert redis.llen(f"inflight:{IDENTITY}:default") == 3


def test_fetch_returns_none_and_moves_nothing_when_every_queue_is_empty(redis):
    assert make_fetcher().fetch(block=False) is None
    assert redis.keys("inflight:*") == []


def test_fetch_drains_critical_then_default_then_low_when_order_is_strict(redis):
    # Given: pushed in the reverse of their priority
    low = enqueue("low", "l")
    default = [enqueue("default", "d1"), enqueue("default", "d2")]
    critical = enqueue("critical", "c")
    fetcher = make_fetcher()

    # When
    fetched = [fetcher.fetch(block=False) for _ in range(5)]

    # Then
    assert [(queue, json.loads(raw)["jid"]) for queue, raw in fetched[:4]] == [
        ("critical", critical), ("default", default[0]), ("default", default[1]), ("low", low),
    ]
    assert fetched[4] is None


def test_fetch_share_follows_weights_when_queues_are_weighted(redis):
    # Given: both queues always have jobs
    random.seed(11)
    for queue in ("heavy", "light"):
        redis.lpush(f"queue:{queue}", *[json.dumps({"class": "x", "n": n}) for n in range(1_000)])
    fetcher = make_fetcher(["heavy,3", "light,1"])

    # When
    taken = [fetcher.fetch(block=False)[0] for _ in range(1_000)]

    # Then: about 75% from heavy (a standard deviation is 1.4%)
    share = taken.count("heavy") / len(taken)
    assert 0.69 <= share <= 0.81, share
    assert redis.llen(f"inflight:{IDENTITY}:heavy") + redis.llen(f"inflight:{IDENTITY}:light") == 1_000


def test_fetch_skips_a_paused_queue_when_it_has_jobs(redis):
    # Given
    paused_jid = enqueue("critical", "paused")
    low_jid = enqueue("low", "served")
    redis.sadd("paused", "critical")
    fetcher = make_fetcher()

    # When
    first = fetcher.fetch(block=False)
    second = fetcher.fetch(block=False)

    # Then
    assert (first[0], jid_of(first)) == ("low", low_jid)
    assert second is None
    assert [json.loads(raw)["jid"] for raw in redis.lrange("queue:critical", 0, -1)] == [paused_jid]


def test_fetch_serves_a_queue_again_when_it_is_resumed(redis):
    # Given
    jid = enqueue("default", 1)
    redis.sadd("paused", "default")
    fetcher = make_fetcher()
    assert fetcher.fetch(block=False) is None

    # When
    redis.srem("paused", "default")

    # Then
    assert jid_of(fetcher.fetch(block=False)) == jid


def test_fetch_returns_none_after_the_fetch_timeout_when_blocking_on_empty_queues(redis):
    # Given
    fetcher = make_fetcher()

    # When
    started = time.monotonic()
    fetched = fetcher.fetch(slot=1, block=True)
    waited = time.monotonic() - started

    # Then: FETCH_TIMEOUT_S is 0.2 in the test settings
    assert fetched is None
    assert 0.15 <= waited < 1.5


def test_fetch_takes_a_job_pushed_while_it_blocks_when_blocking(redis):
    # Given: slot 1 waits on queue "default" (slot mod number of queues)
    fetcher = make_fetcher()
    pusher = threading.Timer(0.05, enqueue, args=("default", "late"))

    # When
    pusher.start()
    fetched = fetcher.fetch(slot=1, block=True)
    pusher.join()

    # Then: even the blocking path lands the job in flight
    assert fetched is not None and fetched[0] == "default"
    assert redis.lrange(f"inflight:{IDENTITY}:default", 0, -1) == [fetched[1].decode()]


@pytest.mark.parametrize("slot", [0, 3])
def test_fetch_does_not_take_from_a_paused_queue_when_blocking_on_it(redis, slot):
    # Given: slots 0 and 3 wait on "critical", which is paused
    redis.sadd("paused", "critical")
    fetcher = make_fetcher()
    pusher = threading.Timer(0.05, enqueue, args=("critical", "held"))

    # When
    pusher.start()
    fetched = fetcher.fetch(slot=slot, block=True)
    pusher.join()

    # Then
    assert fetched is None
    assert redis.llen("queue:critical") == 1
    assert redis.keys("inflight:*") == []
