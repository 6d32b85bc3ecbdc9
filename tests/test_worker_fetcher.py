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
    """The jid of a fetched unit of work, or of a ``(queue, raw)`` pair the fetcher holds."""
    raw = fetched[1] if isinstance(fetched, tuple) else fetched.raw
    return json.loads(raw)["jid"]


def test_fetch_moves_the_job_into_the_inflight_list_when_a_queue_has_one(redis):
    # Given
    jid = enqueue("default", 1)
    fetcher = make_fetcher()

    # When
    fetched = fetcher.fetch(block=False)

    # Then: it left the queue and sits in flight until acknowledged
    assert fetched.queue == "default"
    assert jid_of(fetched) == jid
    assert redis.llen("queue:default") == 0
    assert redis.lrange(f"inflight:{IDENTITY}:default", 0, -1) == [fetched.raw.decode()]


def test_inflight_list_names_identity_and_queue(redis):
    enqueue("low", 1)

    make_fetcher().fetch(block=False)

    assert redis.keys("inflight:*") == [keys.inflight(IDENTITY, "low")] == [f"inflight:{IDENTITY}:low"]


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
    assert [(unit.queue, json.loads(unit.raw)["jid"]) for unit in fetched[:4]] == [
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
    taken = [fetcher.fetch(block=False).queue for _ in range(1_000)]

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
    assert (first.queue, jid_of(first)) == ("low", low_jid)
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
    assert fetched is not None and fetched.queue == "default"
    assert redis.lrange(f"inflight:{IDENTITY}:default", 0, -1) == [fetched.raw.decode()]


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


# -- prefetch and acknowledgements -----------------------------------------------------------


def inflight_jids(redis, queue="default"):
    return [json.loads(raw)["jid"] for raw in redis.lrange(f"inflight:{IDENTITY}:{queue}", 0, -1)]


def test_fetch_takes_prefetch_more_into_the_inflight_list_when_prefetch_is_set(redis):
    # Given
    jids = [enqueue("default", n) for n in range(10)]
    fetcher = Fetcher(IDENTITY, QueueOrder(QUEUES), prefetch=3)

    # When
    first = fetcher.fetch(block=False)

    # Then: the oldest is handed out; three more wait here, already in flight
    assert jid_of(first) == jids[0]
    assert [jid_of(job) for job in fetcher.prefetched()] == jids[1:4]
    assert sorted(inflight_jids(redis)) == sorted(jids[:4])
    assert redis.llen("queue:default") == 6


def test_fetch_hands_out_prefetched_jobs_oldest_first_before_taking_more(redis):
    # Given
    jids = [enqueue("default", n) for n in range(6)]
    fetcher = Fetcher(IDENTITY, QueueOrder(QUEUES), prefetch=2)

    # When
    fetched = [jid_of(fetcher.fetch(block=False)) for _ in range(3)]

    # Then: the second and third came from memory: nothing more was taken meanwhile
    assert fetched == jids[:3]
    assert redis.llen("queue:default") == 3 and fetcher.prefetched() == []


def test_ack_removes_the_job_from_flight_and_takes_the_next_in_the_same_call(redis):
    # Given
    jids = [enqueue("default", n) for n in range(3)]
    fetcher = make_fetcher()
    unit = fetcher.fetch(block=False)
    queue, raw = unit.queue, unit.raw

    # When
    fetcher.ack(queue, raw, fetch_next=True)
    fetcher.write_acks()

    # Then: the finished job is gone and the next one is in flight, held for this thread
    assert inflight_jids(redis) == [jids[1]]
    assert [jid_of(job) for job in fetcher.prefetched()] == [jids[1]]
    assert jid_of(fetcher.fetch(block=False)) == jids[1]


def test_ack_takes_nothing_when_the_thread_will_not_fetch_again(redis):
    # Given
    enqueue("default", 1)
    enqueue("default", 2)
    fetcher = make_fetcher()
    unit = fetcher.fetch(block=False)
    queue, raw = unit.queue, unit.raw

    # When: a stopping thread acknowledges its last job
    fetcher.ack(queue, raw, fetch_next=False)
    fetcher.write_acks()

    # Then
    assert redis.llen(f"inflight:{IDENTITY}:default") == 0 and redis.llen("queue:default") == 1


def test_acks_stay_pending_and_are_written_by_the_next_call_when_the_connection_is_lost(redis):
    # Given: a job fetched, then the fetcher's connection killed before its ack is written
    import redis as redis_lib

    jid = enqueue("default", 1)
    fetcher = make_fetcher()
    unit = fetcher.fetch(block=False)
    queue, raw = unit.queue, unit.raw
    fetcher.ack(queue, raw)
    redis.client_kill_filter(_type="normal", skipme=True)
    with pytest.raises(redis_lib.ConnectionError):
        fetcher.write_acks()
    assert inflight_jids(redis) == [jid]

    # When: the next call, on a new connection
    fetcher.write_acks()

    # Then
    assert inflight_jids(redis) == []


def test_prefetched_jobs_stay_within_the_bound_when_threads_fetch_and_ack_at_once(redis):
    # Given: 300 jobs, 4 threads, prefetch 2
    RecordJob.perform_bulk([(n,) for n in range(300)])
    threads_n, prefetch = 4, 2
    fetcher = Fetcher(IDENTITY, QueueOrder(QUEUES), prefetch=prefetch)
    held, in_flight, done = [], [], []

    def work():
        while True:
            fetched = fetcher.fetch(block=False)
            if fetched is None:
                return
            held.append(len(fetcher.prefetched()))
            in_flight.append(redis.llen(f"inflight:{IDENTITY}:default"))
            done.append(fetched.raw)
            fetcher.ack(fetched.queue, fetched.raw, fetch_next=True)
            fetcher.write_acks()

    # When
    workers = [threading.Thread(target=work) for _ in range(threads_n)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(30)
    fetcher.flush()

    # Then: every job ran once; at most `prefetch` jobs waited here beyond one for each thread
    # about to ask, and the in-flight list held no more than those, the running jobs and the
    # finished ones whose ack was on its way
    assert len(done) == len(set(done)) == 300
    assert max(held) <= prefetch + threads_n
    assert max(in_flight) <= prefetch + 3 * threads_n
    assert redis.llen(f"inflight:{IDENTITY}:default") == len(fetcher.prefetched()) == 0


def test_give_back_returns_prefetched_jobs_to_the_tail_of_their_queue_oldest_last(redis):
    # Given: four jobs; one handed out, three prefetched
    jids = [enqueue("default", n) for n in range(5)]
    fetcher = Fetcher(IDENTITY, QueueOrder(QUEUES), prefetch=3)
    fetcher.fetch(block=False)

    # When
    moved = fetcher.give_back()

    # Then: back where workers take from, so they run next and in their order
    assert moved == 3 and fetcher.prefetched() == []
    assert inflight_jids(redis) == [jids[0]]
    assert [json.loads(raw)["jid"] for raw in redis.lrange("queue:default", 0, -1)][::-1] == jids[1:]


# -- the unit of work -------------------------------------------------------------------------


def test_a_unit_of_work_acknowledged_leaves_flight_with_the_next_fetch_call(redis):
    # Given
    jids = [enqueue("default", n) for n in range(2)]
    fetcher = make_fetcher()
    unit = fetcher.fetch(block=False)

    # When
    unit.acknowledge(fetch_next=True)

    # Then: the call that wrote the ack took the next job for this thread
    assert inflight_jids(redis) == [jids[1]]
    assert jid_of(fetcher.fetch(block=False)) == jids[1]


def test_a_unit_of_work_requeued_goes_back_to_the_tail_of_its_queue_once(redis):
    # Given
    first = enqueue("default", 1)
    unit = make_fetcher().fetch(block=False)
    later = enqueue("default", 2)

    # When
    assert unit.requeue() is True
    assert unit.requeue() is False  # no longer in flight: not pushed twice

    # Then: it runs next, before the job enqueued after it was taken
    assert inflight_jids(redis) == []
    assert [json.loads(raw)["jid"] for raw in redis.lrange("queue:default", 0, -1)] == [later, first]


def test_a_unit_of_work_rescheduled_moves_from_flight_to_the_schedule_set(redis):
    # Given
    jid = enqueue("default", 1)
    unit = make_fetcher().fetch(block=False)

    # When
    unit.reschedule(1_900_000_000.0, {**unit.payload, "at": 1_900_000_000.0})

    # Then
    assert inflight_jids(redis) == [] and redis.llen("queue:default") == 0
    [(raw, at)] = redis.zrange("schedule", 0, -1, withscores=True)
    assert json.loads(raw)["jid"] == jid and at == 1_900_000_000.0
