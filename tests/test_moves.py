"""django_bgjobs.moves: jobs already in Redis move from a sorted set to their queues, once.

``due`` is the poller's move (every member due at ``now_s``); ``member`` / ``members`` are the
monitoring API's (exact members, each moved only if still in the set).
"""

import json
import threading

import pytest
import redis as redis_lib
from django.conf import settings
from django.test import override_settings

from django_bgjobs import keys, moves
from django_bgjobs.connection import get_redis
from django_bgjobs.payload import dumps
from tests.helpers import snapshot

NOW_S = 1_700_000_000.5
BIG = [2**63 - 1, 12345678901234567890, -(2**63), 9_007_199_254_740_993]


def job(index, queue="default", **fields):
    """A payload as the client writes it to the schedule set (its ``at`` last)."""
    return {"class": "tests.moves.Job", "args": [index], "retry": True, "queue": queue, "jid": f"{index:024x}",
            "created_at": 1_600_000_000.0, **fields, "at": 1_600_000_100.0}


def queued(redis, queue="default"):
    """The payloads of ``queue`` in the order workers take them (from the tail)."""
    return [json.loads(raw) for raw in reversed(redis.lrange(f"queue:{queue}", 0, -1))]


class RecordingClientMiddleware:
    """A client middleware that records every payload it is given."""

    seen = []

    def __init__(self, call_next):
        self.call_next = call_next

    def __call__(self, payload):
        self.seen.append(payload)
        return self.call_next(payload)


# -- due: the poller's move ----------------------------------------------------------------


def test_due_moves_only_members_scored_up_to_now_when_some_are_later(redis):
    # Given
    redis.zadd("schedule", {dumps(job(1)): NOW_S - 10, dumps(job(2)): NOW_S, dumps(job(3)): NOW_S + 0.001})

    # When
    moved = moves.due(get_redis(), keys.schedule(), now_s=NOW_S, limit=100)

    # Then
    assert moved == 2
    assert [payload["args"] for payload in queued(redis)] == [[1], [2]]
    assert [json.loads(raw)["args"] for raw in redis.zrange("schedule", 0, -1)] == [[3]]
    assert redis.smembers("queues") == {"default"}


def test_due_moves_lowest_scores_first_and_at_most_limit_when_more_are_due(redis):
    # Given: added in an order unlike their scores
    redis.zadd("retry", {dumps(job(index)): NOW_S - index for index in (5, 1, 4, 2, 3)})

    # When
    first = moves.due(get_redis(), keys.retry(), now_s=NOW_S, limit=3)

    # Then: the three due longest ago, oldest first in the queue; the rest wait for the next call
    assert first == 3
    assert [payload["args"] for payload in queued(redis)] == [[5], [4], [3]]
    assert redis.zcard("retry") == 2
    assert moves.due(get_redis(), keys.retry(), now_s=NOW_S, limit=3) == 2
    assert [payload["args"] for payload in queued(redis)] == [[5], [4], [3], [2], [1]]


def test_due_keeps_each_queue_in_score_order_when_due_jobs_alternate_between_queues(redis):
    # Given: six due jobs, alternately for default and low, and one for a third queue
    redis.zadd("schedule", {dumps(job(index, queue="low" if index % 2 else "default")): NOW_S - 10 + index
                            for index in range(6)} | {dumps(job(9, queue="critical")): NOW_S - 20})

    # When
    moved = moves.due(get_redis(), keys.schedule(), now_s=NOW_S, limit=100)

    # Then
    assert moved == 7
    assert [payload["args"] for payload in queued(redis, "default")] == [[0], [2], [4]]
    assert [payload["args"] for payload in queued(redis, "low")] == [[1], [3], [5]]
    assert [payload["args"] for payload in queued(redis, "critical")] == [[9]]
    assert redis.smembers("queues") == {"default", "low", "critical"}


def test_due_replaces_a_trailing_at_by_enqueued_at_and_keeps_large_integers_byte_for_byte(redis):
    # Given: integers that a float, or Lua's cjson, would round
    original = dumps(job(1) | {"args": BIG})
    redis.zadd("schedule", {original: NOW_S})

    # When
    moves.due(get_redis(), keys.schedule(), now_s=NOW_S, limit=100)

    # Then: the same bytes, but for the trailing "at"
    [raw] = redis.lrange("queue:default", 0, -1)
    assert raw == original[: original.rindex(',"at":')] + f',"enqueued_at":{NOW_S!r}}}'
    assert "12345678901234567890" in raw and "9223372036854775807" in raw
    assert json.loads(raw)["args"] == BIG and "at" not in json.loads(raw)


def test_due_replaces_an_old_enqueued_at_when_a_retry_ends_with_one(redis):
    # Given: a payload as the worker writes it to the retry set (enqueued_at last, no at)
    original = dumps({"class": "tests.moves.Job", "args": BIG, "queue": "low", "retry_count": 2,
                      "enqueued_at": 1_600_000_000.25})
    redis.zadd("retry", {original: NOW_S})

    # When
    moves.due(get_redis(), keys.retry(), now_s=NOW_S, limit=100)

    # Then
    [raw] = redis.lrange("queue:low", 0, -1)
    assert raw == original.replace("1600000000.25", repr(NOW_S))
    assert redis.smembers("queues") == {"low"}


def test_due_appends_enqueued_at_when_the_payload_has_neither_field(redis):
    # Given: a payload another client wrote, with no at or enqueued_at
    original = '{"class":"tests.moves.Job","args":[12345678901234567890],"queue":"low"}'
    redis.zadd("schedule", {original: NOW_S})

    # When
    moves.due(get_redis(), keys.schedule(), now_s=NOW_S, limit=100)

    # Then
    assert redis.lrange("queue:low", 0, -1) == [original[:-1] + f',"enqueued_at":{NOW_S!r}}}']


@pytest.mark.parametrize(("member", "pushed"), [
    ("not json at all", "not json at all"),
    ('["tests.moves.Job", [1]]', '["tests.moves.Job", [1]]'),
    ('"tests.moves.Job"', '"tests.moves.Job"'),
    ("{}", "{}"),
    ('{"class":"tests.moves.Job","args":[1]}', '{"class":"tests.moves.Job","args":[1],"enqueued_at":%r}' % NOW_S),
    ('{"class":"tests.moves.Job","queue":""}', '{"class":"tests.moves.Job","queue":"","enqueued_at":%r}' % NOW_S),
    ('{"class":"tests.moves.Job","queue":7}', '{"class":"tests.moves.Job","queue":7,"enqueued_at":%r}' % NOW_S),
], ids=["not JSON", "a JSON list", "a JSON string", "an empty object", "no queue", "an empty queue",
        "a queue that is not a string"])
def test_due_moves_a_malformed_member_to_default_when_it_is_due(redis, member, pushed):
    # Given: a member some other tool wrote; the worker buries it with the reason once queued
    redis.zadd("schedule", {member: NOW_S})

    # When
    moved = moves.due(get_redis(), keys.schedule(), now_s=NOW_S, limit=100)

    # Then: in default, stamped only when it is an object with fields
    assert moved == 1
    assert redis.lrange("queue:default", 0, -1) == [pushed]
    assert redis.zcard("schedule") == 0 and redis.smembers("queues") == {"default"}


def test_due_writes_nothing_when_no_member_is_due(redis, raw_redis):
    # Given
    redis.zadd("schedule", {dumps(job(1)): NOW_S + 1})
    before = snapshot(raw_redis)

    # When
    moved = moves.due(get_redis(), keys.schedule(), now_s=NOW_S, limit=100)

    # Then
    assert moved == 0
    assert snapshot(raw_redis) == before


def test_due_moves_nothing_and_loses_nothing_when_a_queue_key_is_not_a_list(redis, raw_redis):
    # Given: due jobs for default and for a queue whose key holds a hash
    redis.hset("queue:broken", "field", "value")
    redis.zadd("schedule", {dumps(job(1)): NOW_S - 1, dumps(job(2, queue="broken")): NOW_S})
    before = snapshot(raw_redis)

    # When
    with pytest.raises(redis_lib.ResponseError, match="queue:broken holds a hash, not a list"):
        moves.due(get_redis(), keys.schedule(), now_s=NOW_S, limit=100)

    # Then: both stay in the set until the key is fixed
    assert snapshot(raw_redis) == before
    redis.delete("queue:broken")
    assert moves.due(get_redis(), keys.schedule(), now_s=NOW_S, limit=100) == 2


# -- member / members: the monitoring API's move ----------------------------------------------


def test_member_pushes_the_given_payload_with_a_fresh_enqueued_at_and_no_at(redis):
    # Given: the payload to push differs from the member (the API took one off retry_count)
    payload = job(1, queue="low", retry_count=3, enqueued_at=1_600_000_000.0) | {"args": BIG}
    raw = dumps(payload)
    redis.zadd("dead", {raw: NOW_S - 60})

    # When
    moved = moves.member(get_redis(), keys.dead(), raw, payload=dict(payload, retry_count=2), now_s=NOW_S)

    # Then: the payload, byte for byte as payload.dumps writes it, ending with the new enqueued_at
    assert moved is True
    fresh = {name: value for name, value in payload.items() if name not in ("at", "enqueued_at")}
    assert redis.lrange("queue:low", 0, -1) == [dumps(dict(fresh, retry_count=2, enqueued_at=NOW_S))]
    assert "12345678901234567890" in redis.lindex("queue:low", 0)
    assert redis.zcard("dead") == 0 and redis.smembers("queues") == {"low"}


def test_member_moves_once_and_writes_nothing_the_second_time_when_called_twice(redis, raw_redis):
    # Given
    payload = job(1)
    redis.zadd("retry", {dumps(payload): NOW_S})
    first = moves.member(get_redis(), keys.retry(), dumps(payload), payload=payload, now_s=NOW_S)
    after_first = snapshot(raw_redis)

    # When
    second = moves.member(get_redis(), keys.retry(), dumps(payload), payload=payload, now_s=NOW_S + 1)

    # Then
    assert (first, second) == (True, False)
    assert snapshot(raw_redis) == after_first
    assert len(queued(redis)) == 1


def test_member_leaves_the_set_alone_when_the_member_is_gone(redis, raw_redis):
    # Given: the set holds the same job as other bytes (its score and retry_count changed since)
    seen = job(1, retry_count=0)
    redis.zadd("retry", {dumps(job(1, retry_count=1)): NOW_S, dumps(job(2)): NOW_S})
    before = snapshot(raw_redis)

    # When
    moved = moves.member(get_redis(), keys.retry(), dumps(seen), payload=seen, now_s=NOW_S)

    # Then
    assert moved is False
    assert snapshot(raw_redis) == before


def test_member_moves_a_job_once_when_the_poller_moved_it_first(redis):
    # Given: an admin read the entry, then the poller found it due
    payload = job(1)
    redis.zadd("schedule", {dumps(payload): NOW_S})
    assert moves.due(get_redis(), keys.schedule(), now_s=NOW_S, limit=100) == 1

    # When
    moved = moves.member(get_redis(), keys.schedule(), dumps(payload), payload=payload, now_s=NOW_S)

    # Then
    assert moved is False
    assert len(queued(redis)) == 1


def test_member_moves_a_job_once_when_many_threads_move_it_at_once(redis):
    # Given
    payload = job(1)
    redis.zadd("dead", {dumps(payload): NOW_S})
    barrier = threading.Barrier(8)
    results = []

    def click():
        barrier.wait()
        results.append(moves.member(get_redis(), keys.dead(), dumps(payload), payload=payload, now_s=NOW_S))

    # When
    threads = [threading.Thread(target=click) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    # Then
    assert sorted(results) == [False] * 7 + [True]
    assert len(queued(redis)) == 1 and redis.zcard("dead") == 0


def test_members_moves_each_member_still_in_the_set_when_some_are_gone(redis):
    # Given: three entries read by the API, one of them since deleted
    payloads = [job(1), job(2, queue="low"), job(3)]
    redis.zadd("retry", {dumps(payload): NOW_S for payload in payloads})
    redis.zrem("retry", dumps(payloads[1]))

    # When
    moved = moves.members(get_redis(), keys.retry(), [(dumps(p), p) for p in payloads], now_s=NOW_S)

    # Then
    assert moved == 2
    assert [payload["args"] for payload in queued(redis)] == [[1], [3]]
    assert redis.llen("queue:low") == 0 and redis.smembers("queues") == {"default"}
    assert redis.zcard("retry") == 0


def test_members_writes_nothing_when_given_no_jobs(redis, raw_redis):
    redis.zadd("retry", {dumps(job(1)): NOW_S})
    before = snapshot(raw_redis)

    assert moves.members(get_redis(), keys.retry(), [], now_s=NOW_S) == 0
    assert snapshot(raw_redis) == before


def test_member_moves_nothing_when_a_queue_key_is_not_a_list(redis, raw_redis):
    # Given: the key of one of the queues holds a string
    redis.set("queue:broken", "oops")
    payloads = [job(1), job(2, queue="broken")]
    redis.zadd("retry", {dumps(payload): NOW_S for payload in payloads})
    before = snapshot(raw_redis)

    # When
    with pytest.raises(redis_lib.ResponseError, match="queue:broken holds a string, not a list"):
        moves.members(get_redis(), keys.retry(), [(dumps(p), p) for p in payloads], now_s=NOW_S)

    # Then: neither job left the set
    assert snapshot(raw_redis) == before


# -- both ------------------------------------------------------------------------------------


def test_moves_use_prefixed_keys_when_key_prefix_is_set(redis):
    # Given
    redis.zadd("app:schedule", {dumps(job(1)): NOW_S})
    redis.zadd("app:dead", {dumps(job(2, queue="low")): NOW_S})

    # When
    with override_settings(BGJOBS={**settings.BGJOBS, "KEY_PREFIX": "app"}):
        due = moves.due(get_redis(), keys.schedule(), now_s=NOW_S, limit=100)
        member = moves.member(get_redis(), keys.dead(), dumps(job(2, queue="low")), payload=job(2, queue="low"),
                              now_s=NOW_S)

    # Then
    assert (due, member) == (1, True)
    assert redis.llen("app:queue:default") == 1 and redis.llen("app:queue:low") == 1
    assert redis.smembers("app:queues") == {"default", "low"}
    assert not redis.exists("queue:default", "queue:low", "queues")


def test_moves_run_no_client_middleware_when_a_job_already_in_redis_moves(redis):
    # Given: a client middleware that would see any push
    RecordingClientMiddleware.seen = []
    redis.zadd("schedule", {dumps(job(1)): NOW_S})
    redis.zadd("dead", {dumps(job(2)): NOW_S})

    # When
    with override_settings(BGJOBS={**settings.BGJOBS,
                                   "CLIENT_MIDDLEWARE": ["tests.test_moves.RecordingClientMiddleware"]}):
        moves.due(get_redis(), keys.schedule(), now_s=NOW_S, limit=100)
        moves.member(get_redis(), keys.dead(), dumps(job(2)), payload=job(2), now_s=NOW_S)

    # Then: both moved, and no middleware saw them
    assert len(queued(redis)) == 2
    assert RecordingClientMiddleware.seen == []
