"""django_bgjobs.worker.poller: due jobs move from ``schedule`` and ``retry`` to their queues, once."""

import json
import threading

import redis as redis_lib

from django_bgjobs.payload import dumps
from django_bgjobs.worker.poller import Poller
from tests.testapp.jobs import RecordJob

WAIT_S = 1_000  # far enough ahead that the real clock never makes a job due during a test


def schedule_record_job(*args, queue=None):
    """Schedule a RecordJob WAIT_S ahead; return ``(jid, due_at)``."""
    handle = RecordJob.set(wait=WAIT_S, queue=queue).perform_later(*args)
    return handle.jid, handle.scheduled_at


def retry_payload(due_at, **fields):
    """A payload as the worker writes it to the retry set (``enqueued_at`` last)."""
    return dumps({
        "class": RecordJob.name, "args": ["retried"], "retry": True, "queue": "default", "jid": "a" * 24,
        "created_at": due_at - 100, "retry_count": 0, "error_class": "JobFailure", "error_message": "boom",
        "failed_at": due_at - 30, "enqueued_at": due_at - 100, **fields,
    })


def queued(redis, queue="default"):
    return [json.loads(raw) for raw in redis.lrange(f"queue:{queue}", 0, -1)]


def test_enqueue_due_leaves_a_scheduled_job_when_it_is_due_one_second_later(redis):
    # Given
    _, due_at = schedule_record_job(1)

    # When
    moved = Poller().enqueue_due(now=due_at - 1)

    # Then
    assert moved == 0
    assert redis.zcard("schedule") == 1
    assert redis.llen("queue:default") == 0


def test_enqueue_due_moves_a_scheduled_job_when_now_is_its_time(redis):
    # Given
    jid, due_at = schedule_record_job(1)

    # When
    moved = Poller().enqueue_due(now=due_at)

    # Then
    assert moved == 1
    assert redis.zcard("schedule") == 0
    assert [job["jid"] for job in queued(redis)] == [jid]
    assert redis.smembers("queues") == {"default"}


def test_enqueue_due_moves_a_retry_when_now_is_its_time(redis):
    # Given
    due_at = 2_000_000_000.25
    redis.zadd("retry", {retry_payload(due_at): due_at})
    poller = Poller()

    # When
    early = poller.enqueue_due(now=due_at - 1)
    on_time = poller.enqueue_due(now=due_at)

    # Then
    assert (early, on_time) == (0, 1)
    assert redis.zcard("retry") == 0
    [job] = queued(redis)
    assert job["retry_count"] == 0 and job["error_message"] == "boom"


def test_enqueue_due_moves_both_sets_and_leaves_later_jobs_when_some_are_due(redis):
    # Given: in each set one job due now and one due 5 seconds later
    jid, due_at = schedule_record_job(1)
    later_jid = RecordJob.set(wait=WAIT_S + 5).perform_later(2).jid
    redis.zadd("retry", {retry_payload(due_at, jid="r" * 24): due_at, retry_payload(due_at, jid="s" * 24): due_at + 5})

    # When
    moved = Poller().enqueue_due(now=due_at)

    # Then
    assert moved == 2
    assert sorted(job["jid"] for job in queued(redis)) == sorted([jid, "r" * 24])
    assert redis.zcard("retry") == 1 and redis.zcard("schedule") == 1
    assert json.loads(redis.zrange("schedule", 0, -1)[0])["jid"] == later_jid


def test_enqueue_due_refreshes_enqueued_at_and_drops_at_when_moving_a_job(redis):
    # Given
    _, due_at = schedule_record_job(1)
    retry_at = due_at + 1
    redis.zadd("retry", {retry_payload(retry_at): retry_at})

    # When
    Poller().enqueue_due(now=retry_at)

    # Then: enqueued_at is the poll time for both, and a scheduled job's "at" is gone
    jobs = queued(redis)
    assert [job["enqueued_at"] for job in jobs] == [retry_at, retry_at]
    assert all("at" not in job for job in jobs)


def test_enqueue_due_keeps_large_integers_byte_for_byte_when_moving_a_job(redis):
    # Given: integers a float (or Lua's cjson) would round
    big = [2**62 + 1, -(2**63), 2**64 + 7, 9_007_199_254_740_993]
    _, due_at = schedule_record_job(*big)
    original = redis.zrange("schedule", 0, -1)[0]

    # When
    Poller().enqueue_due(now=due_at)

    # Then: the same bytes, with "enqueued_at" added
    [raw] = redis.lrange("queue:default", 0, -1)
    assert raw == original[:-1] + ',"enqueued_at":' + repr(float(due_at)) + "}"
    assert "4611686018427387905" in raw
    assert json.loads(raw)["args"] == big


def test_enqueue_due_pushes_to_the_jobs_own_queue_when_it_names_one(redis):
    # Given
    jid, due_at = schedule_record_job(1, queue="low")

    # When
    Poller().enqueue_due(now=due_at)

    # Then
    assert [job["jid"] for job in queued(redis, "low")] == [jid]
    assert redis.llen("queue:default") == 0
    assert "low" in redis.smembers("queues")


def test_enqueue_due_moves_an_unreadable_entry_unchanged_to_default_when_it_is_due(redis):
    # Given: garbage a third party wrote; the processor will bury it with a reason
    redis.zadd("schedule", {"not json at all": 100})

    # When
    moved = Poller().enqueue_due(now=100)

    # Then
    assert moved == 1
    assert redis.lrange("queue:default", 0, -1) == ["not json at all"]


def test_enqueue_due_moves_every_due_job_in_one_call_when_there_are_more_than_a_batch(redis):
    # Given: 250 jobs, more than two batches of 100
    handles = RecordJob.set(wait=WAIT_S).perform_bulk([(n,) for n in range(250)])
    due_at = handles[0].scheduled_at

    # When
    moved = Poller().enqueue_due(now=due_at)

    # Then
    assert moved == 250
    assert redis.zcard("schedule") == 0
    assert redis.llen("queue:default") == 250


def test_each_due_job_moves_exactly_once_when_two_pollers_race(redis, redis_url):
    # Given: 1,000 due jobs and two pollers, each with its own connection
    handles = RecordJob.set(wait=WAIT_S).perform_bulk([(n,) for n in range(1_000)])
    due_at = handles[0].scheduled_at
    clients = [redis_lib.Redis.from_url(redis_url) for _ in range(2)]
    pollers = [Poller(client) for client in clients]
    start = threading.Barrier(len(pollers))
    moved = [None] * len(pollers)

    def run(index):
        start.wait()
        moved[index] = pollers[index].enqueue_due(now=due_at)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(pollers))]

    # When
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    # Then: 1,000 moves between them, and each job is in the queue once
    assert sum(moved) == 1_000, moved
    jids = [job["jid"] for job in queued(redis)]
    assert len(jids) == 1_000
    assert set(jids) == {handle.jid for handle in handles}
    assert redis.zcard("schedule") == 0
    for client in clients:
        client.close()
