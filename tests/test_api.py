"""The monitoring API (``django_bgjobs.api``) against the test run's throwaway redis-server.

Jobs are enqueued through the real client; failed jobs reach the retry and dead
sets through a unit of work's ``fail`` (``retry.fail``) or a ``ZADD`` of payloads built with ``payload.dumps``.
"""

import base64
import datetime
import json
import os
import subprocess
import sys
import threading
import time
import zlib

import pytest
from django.conf import settings
from django.test import override_settings

from django_bgjobs import InvalidPayloadError, Job, keys
from django_bgjobs.api import (
    DeadSet,
    JobRecord,
    Process,
    ProcessSet,
    Queue,
    RetrySet,
    ScheduledSet,
    SortedEntry,
    Stats,
    WorkSet,
)
from django_bgjobs.job_end import Outcome
from django_bgjobs.payload import dumps, loads, new_jid, now_s
from tests.helpers import REPO_ROOT, register_process, snapshot, unit_in_flight


class Noop(Job):
    name = "tests.api.Noop"

    def perform(self, *args, **kwargs):
        pass


class LowNoop(Job):
    name = "tests.api.LowNoop"
    queue = "low"

    def perform(self, n):
        pass


class Fragile(Job):
    name = "tests.api.Fragile"

    def perform(self, n):
        raise RuntimeError("boom")


# -- helpers -------------------------------------------------------------------------------


def fail_job(job_class=Fragile, *args, dead=False, message="boom"):
    """Enqueue one job, take it from its queue as a worker would, and fail it: to retry or dead set."""
    configured = job_class.set(retry=0) if dead else job_class
    handle = configured.perform_later(*args)
    from django_bgjobs.connection import get_redis

    inflight = keys.inflight("test-host:1:api", handle.queue)
    raw = get_redis().lmove(keys.queue(handle.queue), inflight, "LEFT", "LEFT")  # the head: the job just pushed
    assert loads(raw)["jid"] == handle.jid
    outcome = unit_in_flight(raw, "test-host:1:api", handle.queue).fail(RuntimeError(message))
    assert outcome == (Outcome.DEAD if dead else Outcome.RETRIED)
    return handle.jid


def sorted_payload(index, **fields):
    """A payload for ZADD into a sorted set; its jid ends with the index for easy checks."""
    payload = {
        "class": "tests.api.Fragile", "args": [index], "retry": True, "queue": "default",
        "jid": f"{index:024x}", "created_at": 1_700_000_000.0, "enqueued_at": 1_700_000_000.0,
    }
    payload.update(fields)
    return dumps(payload)


def fill_set(redis, key, count, base_score=1_000, **fields):
    redis.zadd(key, {sorted_payload(i, **fields): base_score + i for i in range(count)})


def bgjobs_settings(**changes):
    return override_settings(BGJOBS={**settings.BGJOBS, **changes})


# -- JobRecord -----------------------------------------------------------------------------


def test_job_record_exposes_payload_fields_when_enqueued_by_client(redis):
    # Given
    handle = Noop.perform_later(1, "two")

    # When
    (record,) = Queue("default").page()

    # Then
    assert record.jid == handle.jid
    assert record.klass == "tests.api.Noop"
    assert record.args == [1, "two"]
    assert record.queue == "default"
    assert record.item["jid"] == handle.jid
    assert record.enqueued_at == pytest.approx(time.time(), abs=5)
    assert record.created_at == pytest.approx(time.time(), abs=5)
    assert record.parse_error is None
    assert record.error_class is None and record.error_backtrace == [] and record.retry_count is None
    assert 0.0 <= record.latency < 5
    assert record.raw == redis.lindex(keys.queue("default"), 0).encode()


def test_job_record_keeps_raw_and_sets_parse_error_when_payload_is_not_json():
    record = JobRecord(b"\x00not json", "default")

    assert record.raw == b"\x00not json"
    assert record.item == {}
    assert "not valid JSON" in record.parse_error
    assert record.jid is None and record.klass is None and record.args == []
    assert record.latency == 0.0
    assert "not json" in record.display_args


def test_display_args_is_short_and_readable_when_args_are_tagged():
    raw = dumps({
        "class": "X", "jid": new_jid(), "queue": "default",
        "args": [
            7, "a", {"__bgjobs__": "model", "value": ["auth", "user", 3]},
            {"__bgjobs__": "kwargs", "value": {"when": {"__bgjobs__": "date", "value": "2024-01-02"}}},
        ],
    })
    assert JobRecord(raw).display_args == "7, 'a', auth.user#3, when=date(2024-01-02)"

    long_record = JobRecord(dumps({"class": "X", "args": ["x" * 500]}))
    assert len(long_record.display_args) == 120 and long_record.display_args.endswith("…")


def test_error_backtrace_is_a_list_of_lines_when_sidekiq_compressed_it():
    lines = ["app/jobs/x.rb:3:in `perform'", "lib/sidekiq.rb:10"]
    compressed = base64.b64encode(zlib.compress(json.dumps(lines).encode())).decode()
    record = JobRecord(dumps({"class": "HardJob", "args": [], "error_backtrace": compressed}))

    assert record.error_backtrace == lines


def test_latency_reads_milliseconds_when_sidekiq_wrote_integer_timestamps():
    enqueued_ms = int((time.time() - 20) * 1000)
    record = JobRecord(dumps({"class": "HardJob", "args": [], "enqueued_at": enqueued_ms}))

    assert record.latency == pytest.approx(20, abs=2)
    assert record.enqueued_at == pytest.approx(enqueued_ms / 1000)


# -- Queue ---------------------------------------------------------------------------------


def test_size_counts_waiting_jobs_when_jobs_are_enqueued(redis):
    Noop.perform_bulk([(i,) for i in range(3)])
    LowNoop.perform_later(1)

    assert Queue("default").size() == 3
    assert len(Queue("default")) == 3
    assert Queue("low").size() == 1
    assert Queue("nothing").size() == 0


def test_latency_is_zero_when_queue_is_empty(redis):
    assert Queue("default").latency() == 0.0


def test_latency_measures_oldest_job_when_queue_has_several(redis):
    # Given: the tail (oldest) job was enqueued 30 s ago, the head one just now
    now = now_s()
    redis.lpush(keys.queue("default"), dumps({"class": "X", "args": [], "jid": "old", "enqueued_at": now - 30}))
    redis.lpush(keys.queue("default"), dumps({"class": "X", "args": [], "jid": "new", "enqueued_at": now}))

    # When
    latency = Queue("default").latency()

    # Then
    assert latency == pytest.approx(30, abs=2)


def test_page_reads_with_offsets_when_queue_holds_1000_jobs(redis):
    # Given: arg i was pushed i-th, so 999 is the newest (head) and 0 the oldest (tail)
    Noop.perform_bulk([(i,) for i in range(1000)])
    queue = Queue("default")

    # Then
    assert [r.args[0] for r in queue.page(0, 10)] == list(range(999, 989, -1))
    assert [r.args[0] for r in queue.page(500, 3)] == [499, 498, 497]
    assert [r.args[0] for r in queue.page(990, 20)] == list(range(9, -1, -1))
    assert [r.args[0] for r in queue.page(0, 10, newest_first=False)] == list(range(10))
    assert [r.args[0] for r in queue.page(500, 3, newest_first=False)] == [500, 501, 502]
    assert [r.args[0] for r in queue.page(995, 10, newest_first=False)] == [995, 996, 997, 998, 999]
    assert queue.page(1000, 10) == [] and queue.page(1000, 10, newest_first=False) == []
    assert queue.page(0, 0) == []
    with pytest.raises(ValueError):
        queue.page(-1, 10)


def test_iteration_visits_every_job_once_when_queue_spans_many_pages(redis):
    Noop.perform_bulk([(i,) for i in range(1000)])
    queue = Queue("default")

    assert [r.args[0] for r in queue] == list(range(999, -1, -1))
    assert [r.args[0] for r in queue.jobs(newest_first=False, page_size=7)] == list(range(1000))


@pytest.mark.parametrize("newest_first", [True, False])
def test_iteration_skips_nothing_when_each_yielded_job_is_deleted(redis, newest_first):
    # Given
    Noop.perform_bulk([(i,) for i in range(250)])
    queue = Queue("default")

    # When
    seen = []
    for record in queue.jobs(newest_first=newest_first, page_size=10):
        if record.args[0] % 2 == 0:
            assert record.delete()
        seen.append(record.args[0])

    # Then
    assert sorted(seen) == list(range(250))
    assert sorted(r.args[0] for r in queue) == list(range(1, 250, 2))


def test_find_job_returns_record_when_jid_is_in_queue(redis):
    handles = Noop.perform_bulk([(i,) for i in range(300)])

    found = Queue("default").find_job(handles[42].jid)

    assert found is not None and found.args == [42]
    assert Queue("default").find_job("0" * 24) is None


def test_delete_job_removes_exactly_that_job_when_jid_matches(redis):
    # Given
    handles = Noop.perform_bulk([(i,) for i in range(5)])

    # When
    deleted = Queue("default").delete_job(handles[2].jid)

    # Then
    assert deleted is True
    assert [loads(raw)["args"][0] for raw in redis.lrange(keys.queue("default"), 0, -1)] == [4, 3, 1, 0]
    assert Queue("default").delete_job(handles[2].jid) is False


def test_job_record_delete_uses_exact_raw_when_payload_is_odd(redis):
    # Given: a member that is not JSON, next to a normal job
    redis.lpush(keys.queue("default"), "garbage{")
    Noop.perform_later(1)
    (odd,) = [r for r in Queue("default") if r.parse_error]

    # When
    removed = odd.delete()

    # Then
    assert removed is True
    assert redis.llen(keys.queue("default")) == 1
    assert odd.delete() is False


def test_clear_deletes_list_and_forgets_name_when_queue_has_jobs(redis):
    Noop.perform_bulk([(i,) for i in range(4)])
    LowNoop.perform_later(1)

    removed = Queue("default").clear()

    assert removed == 4
    assert not redis.exists(keys.queue("default"))
    assert redis.smembers(keys.queues()) == {"low"}


def test_pause_and_resume_toggle_paused_set_when_called(redis):
    queue = Queue("low")
    assert queue.paused is False

    queue.pause()
    assert queue.paused is True
    assert redis.smembers(keys.paused()) == {"low"}

    queue.resume()
    assert queue.paused is False
    assert redis.smembers(keys.paused()) == set()


def test_all_lists_pushed_and_configured_queues_when_some_never_pushed(redis):
    # Given
    redis.sadd(keys.queues(), "mailers", "default")

    # When
    with bgjobs_settings(QUEUES=["critical,3", "default,2", "low"]):
        names = [q.name for q in Queue.all()]

    # Then
    assert names == ["critical", "default", "low", "mailers"]


# -- sorted sets ---------------------------------------------------------------------------


@pytest.mark.parametrize("job_set", [ScheduledSet, RetrySet, DeadSet])
def test_page_reads_in_score_order_with_offsets_when_set_holds_1000_entries(redis, job_set):
    # Given
    fill_set(redis, job_set().key, 1000)
    entries = job_set()

    # Then
    assert entries.size() == len(entries) == 1000
    assert [e.args[0] for e in entries.page(0, 5)] == [0, 1, 2, 3, 4]
    assert [e.args[0] for e in entries.page(500, 3)] == [500, 501, 502]
    assert [e.args[0] for e in entries.page(997, 10)] == [997, 998, 999]
    assert [e.args[0] for e in entries.page(0, 3, reverse=True)] == [999, 998, 997]
    assert [e.args[0] for e in entries.page(10, 2, reverse=True)] == [989, 988]
    assert entries.page(1000, 10) == []
    first = entries.page(0, 1)[0]
    assert first.score == first.at == 1000.0
    assert [e.args[0] for e in entries] == list(range(1000))
    assert [e.args[0] for e in entries.entries(reverse=True, page_size=33)] == list(range(999, -1, -1))


def test_iteration_skips_nothing_when_each_yielded_entry_is_deleted(redis):
    fill_set(redis, keys.retry(), 250)
    retries = RetrySet()

    seen = []
    for entry in retries.entries(page_size=10):
        if entry.args[0] % 3 == 0:
            assert entry.delete()
        seen.append(entry.args[0])

    assert seen == list(range(250))
    assert retries.size() == 250 - len(range(0, 250, 3))


def test_find_job_scans_the_set_when_it_holds_1000_entries(redis):
    fill_set(redis, keys.dead(), 1000)

    found = DeadSet().find_job(f"{777:024x}")

    assert isinstance(found, SortedEntry)
    assert found.args == [777] and found.score == 1777.0
    assert DeadSet().find_job("f" * 24) is None


def test_fetch_returns_entries_at_score_when_several_share_it(redis):
    # Given: two entries at one score, one elsewhere
    redis.zadd(keys.retry(), {sorted_payload(1): 50.5, sorted_payload(2): 50.5, sorted_payload(3): 60})
    retries = RetrySet()

    # Then
    assert sorted(e.args[0] for e in retries.fetch(50.5)) == [1, 2]
    assert [e.args[0] for e in retries.fetch(50.5, jid=f"{2:024x}")] == [2]
    assert sorted(e.args[0] for e in retries.fetch((50, 60))) == [1, 2, 3]
    assert retries.fetch(51) == []


def test_delete_by_jid_removes_entry_when_found_with_or_without_score(redis):
    redis.zadd(keys.schedule(), {sorted_payload(1): 10, sorted_payload(2): 20})
    scheduled = ScheduledSet()

    assert scheduled.delete_by_jid(f"{1:024x}") is True
    assert scheduled.delete_by_jid(f"{2:024x}", score=20) is True
    assert scheduled.delete_by_jid(f"{2:024x}") is False
    assert redis.zcard(keys.schedule()) == 0


def test_retry_moves_job_to_head_of_its_queue_when_in_retry_set(redis):
    # Given: a failed job in the retry set and another job already waiting
    jid = fail_job(Fragile, 1)
    Noop.perform_later("waiting")
    redis.srem(keys.queues(), "default")
    (entry,) = RetrySet().page()
    assert entry.retry_count == 0 and entry.error_class == "RuntimeError"

    # When
    moved = entry.retry()

    # Then
    assert moved is True
    assert redis.zcard(keys.retry()) == 0
    assert redis.sismember(keys.queues(), "default")
    assert redis.llen(keys.queue("default")) == 2
    head = loads(redis.lindex(keys.queue("default"), 0))
    assert head["jid"] == jid
    assert head["enqueued_at"] == pytest.approx(time.time(), abs=5)
    assert head["retry_count"] == -1  # Sidekiq: a manual retry does not use up an attempt
    assert head["error_message"] == "boom"
    assert redis.lindex(keys.queue("default"), 0).endswith(f',"enqueued_at":{head["enqueued_at"]}}}')


def test_retry_queues_job_once_when_two_admins_retry_it(redis):
    # Given: two admins each loaded the same entry
    jid = fail_job(Fragile, 1)
    first = RetrySet().find_job(jid)
    second = RetrySet().find_job(jid)

    # When
    results = [first.retry(), second.retry()]

    # Then
    assert results == [True, False]
    assert redis.llen(keys.queue("default")) == 1
    assert redis.zcard(keys.retry()) == 0


def test_retry_queues_job_once_when_many_threads_retry_it_at_once(redis):
    # Given
    jid = fail_job(Fragile, 1, dead=True)
    entries = [DeadSet().find_job(jid) for _ in range(8)]
    barrier = threading.Barrier(len(entries))
    results = []

    def click(entry):
        barrier.wait()
        results.append(entry.retry())

    # When
    threads = [threading.Thread(target=click, args=(e,)) for e in entries]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Then
    assert sorted(results) == [False] * 7 + [True]
    assert redis.llen(keys.queue("default")) == 1
    assert redis.zcard(keys.dead()) == 0


def test_add_to_queue_enqueues_now_when_job_is_scheduled(redis):
    # Given
    handle = LowNoop.set(wait=3600).perform_later(5)
    (entry,) = ScheduledSet().page()
    assert entry.jid == handle.jid and entry.at == pytest.approx(time.time() + 3600, abs=5)

    # When
    moved = entry.add_to_queue()

    # Then
    assert moved is True and entry.add_to_queue() is False
    assert redis.zcard(keys.schedule()) == 0
    payload = loads(redis.lindex(keys.queue("low"), 0))
    assert payload["jid"] == handle.jid and "at" not in payload and "retry_count" not in payload
    assert payload["enqueued_at"] == pytest.approx(time.time(), abs=5)
    assert redis.sismember(keys.queues(), "low")


def test_retry_refuses_when_entry_does_not_parse(redis):
    redis.zadd(keys.dead(), {"not json": 5})
    (entry,) = DeadSet().page()

    with pytest.raises(InvalidPayloadError, match="does not parse"):
        entry.retry()
    assert redis.zcard(keys.dead()) == 1


def test_kill_moves_entry_to_dead_set_once_when_called_twice(redis):
    # Given
    jid = fail_job(Fragile, 1)
    first, second = RetrySet().find_job(jid), RetrySet().find_job(jid)

    # When
    results = [first.kill(), second.kill()]

    # Then
    assert results == [True, False]
    assert redis.zcard(keys.retry()) == 0
    (raw, score), = redis.zrange(keys.dead(), 0, -1, withscores=True)
    assert loads(raw)["jid"] == jid
    assert loads(raw)["dead_reason"] == "killed from the monitoring API"
    assert score == pytest.approx(time.time(), abs=5)


def test_kill_moves_entry_once_when_many_threads_kill_it_at_once(redis):
    # Given
    jid = fail_job(Fragile, 1)
    entries = [RetrySet().find_job(jid) for _ in range(8)]
    barrier = threading.Barrier(len(entries))
    results = []

    def click(entry):
        barrier.wait()
        results.append(entry.kill())

    # When
    threads = [threading.Thread(target=click, args=(e,)) for e in entries]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Then
    assert sorted(results) == [False] * 7 + [True]
    assert redis.zcard(keys.retry()) == 0
    assert redis.zcard(keys.dead()) == 1


def test_kill_trims_dead_set_when_it_is_full(redis):
    # Given: three recent deaths
    an_hour_ago = int(time.time()) - 3600
    fill_set(redis, keys.dead(), 3, base_score=an_hour_ago)
    fill_set(redis, keys.retry(), 1)
    (entry,) = RetrySet().page()

    # When
    with bgjobs_settings(DEAD_MAX_JOBS=3):
        assert entry.kill()

    # Then: the oldest death made room
    assert redis.zcard(keys.dead()) == 3
    assert [e.args[0] for e in DeadSet().page()] == [1, 2, 0]
    assert DeadSet().page()[2].jid == entry.jid


def test_retry_all_moves_every_entry_when_set_spans_pages(redis):
    # Given: 250 jobs in two queues, and one entry that does not parse
    redis.zadd(keys.retry(), {sorted_payload(i, queue="low" if i % 2 else "default", retry_count=3): i
                             for i in range(250)})
    redis.zadd(keys.retry(), {"not json": 100.5})

    # When
    moved = RetrySet().retry_all()

    # Then
    assert moved == 250
    assert redis.zrange(keys.retry(), 0, -1) == ["not json"]
    assert redis.llen(keys.queue("default")) == 125 and redis.llen(keys.queue("low")) == 125
    assert {loads(raw)["retry_count"] for raw in redis.lrange(keys.queue("low"), 0, -1)} == {2}
    assert redis.smembers(keys.queues()) == {"default", "low"}


def test_add_all_to_queue_keeps_retry_count_when_set_is_scheduled(redis):
    fill_set(redis, keys.schedule(), 120, retry_count=1, at=1000.0)

    assert ScheduledSet().add_all_to_queue() == 120
    payloads = [loads(raw) for raw in redis.lrange(keys.queue("default"), 0, -1)]
    assert len(payloads) == 120
    assert {p["retry_count"] for p in payloads} == {1}
    assert not any("at" in p for p in payloads)


def test_kill_all_moves_every_entry_to_dead_set_when_retry_set_spans_pages(redis):
    # Given
    fill_set(redis, keys.retry(), 230)
    redis.zadd(keys.retry(), {"odd entry": 3})

    # When
    moved = RetrySet().kill_all()

    # Then
    assert moved == 231
    assert redis.zcard(keys.retry()) == 0
    assert redis.zcard(keys.dead()) == 231
    assert redis.zscore(keys.dead(), "odd entry") is not None


def test_kill_all_keeps_dead_set_within_its_cap_when_many_entries_move(redis):
    fill_set(redis, keys.retry(), 150)

    with bgjobs_settings(DEAD_MAX_JOBS=40):
        assert RetrySet().kill_all() == 150

    assert redis.zcard(keys.dead()) == 40


def test_moves_use_prefixed_keys_when_key_prefix_is_set(redis):
    # Given
    with bgjobs_settings(KEY_PREFIX="app"):
        jid = fail_job(Fragile, 1)
        assert redis.zcard("app:retry") == 1

        # When
        assert RetrySet().find_job(jid).retry()
        Queue("default").pause()
        stats = Stats()

    # Then
    assert redis.llen("app:queue:default") == 1
    assert redis.smembers("app:queues") == {"default"}
    assert redis.smembers("app:paused") == {"default"}
    assert stats.queues["default"] == 1
    assert not redis.exists("queue:default", "queues", "retry", "paused")


def test_clear_deletes_set_when_it_has_entries(redis):
    fill_set(redis, keys.dead(), 12)

    assert DeadSet().clear() == 12
    assert not redis.exists(keys.dead())


def test_scan_finds_entries_by_class_jid_or_error_text_when_searching(redis):
    # Given
    fail_job(Fragile, 1, message="database is locked")
    jid = fail_job(Fragile, 2, message="timeout *talking* to [smtp]")
    fill_set(redis, keys.retry(), 50)
    retries = RetrySet()

    # Then
    assert len(list(retries.scan("database is locked"))) == 1
    assert [e.jid for e in retries.scan("*talking* to [smtp]")] == [jid]
    assert [e.jid for e in retries.scan(jid)] == [jid]
    assert len(list(retries.scan("tests.api.Fragile"))) == 52
    assert list(retries.scan("no such text")) == []


def test_dead_set_kill_adds_job_and_trims_when_given_dict_or_raw(redis):
    # Given: one death older than the dead set keeps
    redis.zadd(keys.dead(), {sorted_payload(1): time.time() - 100})
    dead = DeadSet()

    # When
    with bgjobs_settings(DEAD_TIMEOUT_S=50):
        dead.kill({"class": "X", "args": [1], "jid": "a" * 24}, reason="given up")
        dead.kill(sorted_payload(2))

    # Then
    entries = dead.page()
    assert [e.jid for e in entries] == ["a" * 24, f"{2:024x}"]
    assert entries[0].dead_reason == "given up"


# -- processes -----------------------------------------------------------------------------


def test_process_set_lists_live_processes_when_one_is_stale(redis):
    # Given
    register_process(redis, "host-1:4242:b", busy=2, quiet=True)
    register_process(redis, "host-1:4242:a", busy=1)
    register_process(redis, "gone:1:x", alive=False)

    # When
    processes = list(ProcessSet())

    # Then
    assert [p.identity for p in processes] == ["host-1:4242:a", "host-1:4242:b"]
    a, b = processes
    assert isinstance(a, Process)
    assert (a.hostname, a.pid, a.tag, a.concurrency) == ("host-1", 4242, "app", 5)
    assert a.queues == ["critical", "default"]
    assert a.started_at == 1_700_000_000.5 and a.beat == 1_700_000_100.25
    assert (a.busy, a.is_quiet, b.busy, b.is_quiet) == (1, False, 2, True)
    assert ProcessSet().size() == 2
    assert ProcessSet().total_concurrency() == 10
    assert ProcessSet().get("host-1:4242:a").busy == 1
    assert ProcessSet().get("gone:1:x") is None
    assert redis.sismember(keys.processes(), "gone:1:x")


def test_served_queues_are_those_a_live_process_that_is_not_quiet_fetches_from(redis, raw_redis):
    # Given
    register_process(redis, "host-1:1:a", queues=["critical", "default"])
    register_process(redis, "host-1:2:b", queues=["default", "emails"])
    register_process(redis, "host-1:3:c", queues=["low"], quiet=True)
    register_process(redis, "gone:1:x", queues=["reports"], alive=False)
    before = snapshot(raw_redis)

    # When
    served = ProcessSet().served_queues()

    # Then: read only
    assert served == {"critical", "default", "emails"}
    assert snapshot(raw_redis) == before


def test_cleanup_removes_only_stale_identities_when_some_expired(redis):
    register_process(redis, "alive:1:a")
    register_process(redis, "gone:1:x", alive=False)
    register_process(redis, "gone:2:y", alive=False)

    assert ProcessSet().cleanup() == 2
    assert redis.smembers(keys.processes()) == {"alive:1:a"}
    assert ProcessSet().cleanup() == 0


@pytest.mark.parametrize("method, command", [("quiet", "TSTP"), ("stop", "TERM")])
def test_quiet_and_stop_push_a_command_with_ttl_when_called(redis, method, command):
    register_process(redis, "host-1:4242:a")
    process = ProcessSet().get("host-1:4242:a")

    getattr(process, method)()

    signals_key = keys.process_signals("host-1:4242:a")
    assert redis.lrange(signals_key, 0, -1) == [command]
    assert 0 < redis.ttl(signals_key) <= 60


def test_work_set_yields_each_running_job_when_processes_are_busy(redis):
    # Given
    payload = dumps({"class": "tests.api.Noop", "args": [1], "jid": "b" * 24, "queue": "default"})
    register_process(redis, "p:1:a", busy=2, work={
        "t2": {"queue": "default", "payload": payload, "run_at": 1_700_000_050.0},
        "t1": {"queue": "low", "payload": {"class": "tests.api.LowNoop", "args": [2], "jid": "c" * 24},
               "run_at": 1_700_000_060.0},
    })
    register_process(redis, "p:2:b", busy=0)

    # When
    work = list(WorkSet())

    # Then
    assert [(identity, tid) for identity, tid, _ in work] == [("p:1:a", "t1"), ("p:1:a", "t2")]
    _, _, first = work[0]
    assert first["queue"] == "low" and first["run_at"] == 1_700_000_060.0
    assert first["payload"]["jid"] == "c" * 24 and first["job"].klass == "tests.api.LowNoop"
    assert work[1][2]["payload"]["args"] == [1]
    assert WorkSet().size() == 2
    assert WorkSet().find_work_by_jid("b" * 24)[1] == "t2"
    assert WorkSet().find_work_by_jid("d" * 24) is None


# -- Stats ---------------------------------------------------------------------------------


def test_stats_reads_every_number_when_all_structures_have_data(redis):
    # Given
    redis.set(keys.stat("processed"), 120)
    redis.set(keys.stat("failed"), 7)
    Noop.perform_bulk([(i,) for i in range(3)])
    LowNoop.perform_bulk([(i,) for i in range(5)])
    Noop.set(wait=60).perform_later(1)
    fail_job(Fragile, 1)
    fail_job(Fragile, 2, dead=True)
    fail_job(Fragile, 3, dead=True)
    register_process(redis, "p:1:a", busy=3)
    register_process(redis, "p:2:b", busy=1)
    register_process(redis, "gone:1:x", alive=False)
    redis.lset(keys.queue("default"), -1, dumps({"class": "X", "args": [], "enqueued_at": time.time() - 40}))

    # When
    stats = Stats()

    # Then
    assert (stats.processed, stats.failed) == (120, 7)
    assert (stats.scheduled_size, stats.retry_size, stats.dead_size) == (1, 1, 2)
    assert (stats.processes_size, stats.workers_size) == (2, 4)
    assert stats.enqueued == 8
    assert stats.queues == {"low": 5, "default": 3, "critical": 0}
    assert list(stats.queues) == ["low", "default", "critical"]
    assert stats.default_queue_latency == pytest.approx(40, abs=2)


def test_stats_are_zero_when_redis_is_empty(redis):
    stats = Stats()

    assert (stats.processed, stats.failed, stats.enqueued, stats.workers_size, stats.processes_size) == (0,) * 5
    assert stats.default_queue_latency == 0.0
    assert stats.queues == {"critical": 0, "default": 0, "low": 0}


def test_history_reads_per_day_counters_when_some_days_are_missing(redis):
    # Given
    redis.set(keys.stat("processed", "2024-03-10"), 10)
    redis.set(keys.stat("failed", "2024-03-10"), 2)
    redis.set(keys.stat("processed", "2024-03-08"), 4)

    # When
    history = Stats.history(days=3, start_date=datetime.date(2024, 3, 10))

    # Then
    assert history == [
        (datetime.date(2024, 3, 10), 10, 2),
        (datetime.date(2024, 3, 9), 0, 0),
        (datetime.date(2024, 3, 8), 4, 0),
    ]


def test_history_starts_today_utc_when_no_start_date(redis):
    today = datetime.datetime.now(datetime.timezone.utc).date()
    redis.set(keys.stat("processed", today.isoformat()), 5)

    history = Stats.history()

    assert len(history) == 30
    assert history[0] == (today, 5, 0)
    with pytest.raises(ValueError):
        Stats.history(days=0)


def test_reset_zeroes_only_named_counters_when_names_are_given(redis):
    redis.set(keys.stat("processed"), 10)
    redis.set(keys.stat("failed"), 3)
    redis.set(keys.stat("processed", "2024-01-01"), 10)

    Stats.reset("failed")
    assert (redis.get(keys.stat("processed")), redis.get(keys.stat("failed"))) == ("10", "0")

    Stats.reset()
    assert redis.get(keys.stat("processed")) == "0"
    assert redis.get(keys.stat("processed", "2024-01-01")) == "10"
    with pytest.raises(ValueError):
        Stats.reset("enqueued")


# -- reads write nothing, imports stay light ----------------------------------------------


def test_read_methods_write_nothing_when_every_structure_is_populated(redis, raw_redis):
    # Given: data in every structure, including a stale process and an odd dead entry
    Noop.perform_bulk([(i,) for i in range(30)])
    LowNoop.perform_later(1)
    Noop.set(wait=60).perform_later(1)
    jid = fail_job(Fragile, 1)
    fail_job(Fragile, 2, dead=True)
    redis.zadd(keys.dead(), {"odd entry": 5})
    redis.set(keys.stat("processed"), 9)
    redis.set(keys.stat("processed", datetime.date.today().isoformat()), 9)
    register_process(redis, "p:1:a", busy=1, work={"t1": {"queue": "default", "payload": "{}", "run_at": 1.0}})
    register_process(redis, "gone:1:x", alive=False)
    redis.sadd(keys.paused(), "low")
    before = snapshot(raw_redis)

    # When: every read method runs
    for queue in Queue.all():
        queue.size(), queue.latency(), queue.paused, list(queue), queue.page(5, 5, newest_first=False)
        queue.find_job(jid)
        for record in queue.page(0, 3):
            record.latency, record.display_args, record.error_backtrace
    for job_set in (ScheduledSet(), RetrySet(), DeadSet()):
        job_set.size(), list(job_set), job_set.page(0, 10, reverse=True), job_set.find_job(jid)
        job_set.fetch(1000), list(job_set.scan("Fragile"))
    RetrySet().find_job(jid).latency
    list(ProcessSet()), ProcessSet().size(), ProcessSet().get("p:1:a"), ProcessSet().total_concurrency()
    list(WorkSet()), WorkSet().size()
    Stats(), Stats.history(days=7)

    # Then
    assert snapshot(raw_redis) == before


def test_import_opens_no_connection_and_loads_no_worker_when_api_is_imported():
    # Without django.contrib.admin, whose setup autodiscovers django_bgjobs.admin on its own.
    code = (
        "import sys, django\n"
        "from django.conf import settings\n"
        "settings.configure(INSTALLED_APPS=['django.contrib.auth', 'django.contrib.contenttypes',"
        " 'django_bgjobs'], BGJOBS={'REDIS_URL': 'redis://127.0.0.1:1/0'})\n"
        "django.setup()\n"
        "import django_bgjobs.api, django_bgjobs.connection as c\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('django_bgjobs.worker', 'django_bgjobs.admin',"
        " 'django_bgjobs.management')))\n"
        "print(bad, c._client)\n"
    )
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="tests.settings")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=60)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] None"
