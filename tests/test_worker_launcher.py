"""django_bgjobs.worker.launcher: heartbeat, stats flush, remote commands, orphan recovery, leaving.

Tests call the one-step methods (:meth:`Launcher.beat`, :meth:`Launcher.act_on`,
:meth:`Launcher.recover_orphans`, :meth:`Launcher.stop` before any thread started)
with a fixed clock; no thread of the launcher is started here.
"""

import json
import os
import threading

import pytest
import redis as redis_lib

from django_bgjobs.worker.launcher import Launcher
from tests.testapp.jobs import FailingJob, RecordJob

# The processor recycles Django's database connections around every job, as in production;
# transaction=True because perform_later inside an open transaction waits for its commit.
pytestmark = pytest.mark.django_db(transaction=True)

NOW_S = 1_700_000_000.5  # 2023-11-14 22:13:20.5 UTC
DAY = "2023-11-14"
QUEUES = ["critical", "default", "low"]


def make_launcher(**options):
    return Launcher(queues=options.pop("queues", QUEUES), concurrency=options.pop("concurrency", 2), **options)


def fetch_into_flight(launcher, count):
    """Take ``count`` jobs into ``launcher``'s in-flight lists, as its processors would; return the jids."""
    return [json.loads(launcher.fetcher.fetch(block=False).raw)["jid"] for _ in range(count)]


def kill(redis, launcher):
    """What a ``kill -9`` leaves behind once the heartbeat has expired: the hash is gone."""
    redis.delete(launcher.identity)


def queued_jids(redis, queue="default"):
    """jids in the order workers will take them (from the tail)."""
    return [json.loads(raw)["jid"] for raw in reversed(redis.lrange(f"queue:{queue}", 0, -1))]


# -- heartbeat -----------------------------------------------------------------------------


def test_beat_adds_the_identity_to_processes_and_writes_its_hash_when_called(redis):
    # Given
    launcher = make_launcher(tag="blue")

    # When
    launcher.beat(now=NOW_S)

    # Then
    assert redis.smembers("processes") == {launcher.identity}
    process = redis.hgetall(launcher.identity)
    assert process["busy"] == "0"
    assert float(process["beat"]) == NOW_S
    assert process["quiet"] == "false"
    info = json.loads(process["info"])
    assert info["identity"] == launcher.identity
    assert info["pid"] == os.getpid()
    assert info["concurrency"] == 2
    assert info["async_concurrency"] == 100  # BGJOBS["ASYNC_CONCURRENCY"]'s default
    assert info["queues"] == QUEUES
    assert info["tag"] == "blue"
    assert json.loads(redis.hget("inflight-owners", launcher.identity)) == QUEUES


def test_beat_expires_the_hash_after_heartbeat_ttl_when_no_other_beat_follows(redis):
    # When
    launcher = make_launcher()
    launcher.beat(now=NOW_S)

    # Then: HEARTBEAT_TTL_S is 2 in the test settings
    assert 1_000 < redis.pttl(launcher.identity) <= 2_000


def test_beat_reports_busy_threads_and_their_work_when_processors_run_jobs(redis):
    # Given: processor 1 is running a job
    launcher = make_launcher()
    RecordJob.perform_later("busy")
    unit = launcher.fetcher.fetch(block=False)
    queue, raw = unit.queue, unit.raw
    launcher.manager.processors[1].current = (queue, raw, NOW_S - 3)

    # When
    launcher.beat(now=NOW_S)

    # Then
    assert redis.hget(launcher.identity, "busy") == "1"
    work = {thread: json.loads(value) for thread, value in redis.hgetall(f"{launcher.identity}:work").items()}
    assert work == {"p1": {"queue": "default", "payload": raw.decode(), "run_at": int(NOW_S - 3)}}  # whole seconds, as Sidekiq
    assert 0 < redis.ttl(f"{launcher.identity}:work") <= 2


def test_beat_clears_the_work_hash_when_the_job_is_done(redis):
    # Given
    launcher = make_launcher()
    launcher.manager.processors[0].current = ("default", b'{"class":"x"}', NOW_S)
    launcher.beat(now=NOW_S)

    # When
    launcher.manager.processors[0].current = None
    launcher.beat(now=NOW_S + 1)

    # Then
    assert redis.exists(f"{launcher.identity}:work") == 0
    assert redis.hget(launcher.identity, "busy") == "0"


def test_beat_flushes_processed_and_failed_counts_exactly_once_when_called_twice(redis):
    # Given: three jobs done, one of them failed (run by a processor, no thread)
    launcher = make_launcher()
    RecordJob.perform_bulk([(1,), (2,)])
    FailingJob.perform_later()
    processor = launcher.manager.processors[0]
    while processor.process_one(block=False):
        pass

    # When
    launcher.beat(now=NOW_S)
    launcher.beat(now=NOW_S + 0.2)

    # Then: Sidekiq counts a failure as processed too
    assert redis.mget("stat:processed", "stat:failed") == ["3", "1"]
    assert redis.mget(f"stat:processed:{DAY}", f"stat:failed:{DAY}") == ["3", "1"]
    assert redis.ttl(f"stat:processed:{DAY}") > 365 * 24 * 3600


def test_beat_adds_only_the_new_counts_when_more_jobs_ran_since_the_last_beat(redis):
    # Given
    launcher = make_launcher()
    processor = launcher.manager.processors[0]
    RecordJob.perform_later(1)
    processor.process_one(block=False)
    launcher.beat(now=NOW_S)

    # When
    RecordJob.perform_bulk([(2,), (3,)])
    while processor.process_one(block=False):
        pass
    launcher.beat(now=NOW_S + 86_400)

    # Then: the second day's key holds the second beat's delta only
    assert redis.get("stat:processed") == "3"
    assert redis.get(f"stat:processed:{DAY}") == "1"
    assert redis.get("stat:processed:2023-11-15") == "2"
    assert redis.get("stat:failed") is None


def test_beat_returns_remote_commands_oldest_first_and_clears_them_when_some_were_sent(redis):
    # Given: the admin pushes commands with LPUSH, as Sidekiq's Web UI does
    launcher = make_launcher()
    redis.lpush(f"{launcher.identity}-signals", "TSTP")
    redis.lpush(f"{launcher.identity}-signals", "TERM")

    # When
    first = launcher.beat(now=NOW_S)
    second = launcher.beat(now=NOW_S + 0.2)

    # Then
    assert first == ["TSTP", "TERM"]
    assert second == []
    assert redis.exists(f"{launcher.identity}-signals") == 0


def test_remote_tstp_makes_the_worker_quiet_when_the_beat_brings_it(redis):
    # Given
    launcher = make_launcher()
    redis.lpush(f"{launcher.identity}-signals", "TSTP")

    # When
    launcher.act_on(launcher.beat(now=NOW_S))
    launcher.beat(now=NOW_S + 0.2)

    # Then: processors stop fetching, the process keeps running, and the hash says so
    assert launcher.quiet
    assert launcher.manager.stop_event.is_set()
    assert not launcher.stopping.is_set()
    assert redis.hget(launcher.identity, "quiet") == "true"


def test_a_remote_command_is_obeyed_even_when_the_recovery_after_the_beat_fails(redis):
    # Given: a TSTP sent, and a dead worker whose in-flight "list" is a string, so pushing it
    # back fails in Redis (WRONGTYPE) after the beat has taken the command off its list
    launcher = make_launcher()
    redis.lpush(f"{launcher.identity}-signals", "TSTP")
    redis.hset("inflight-owners", "ghost:1:0123456789ab", json.dumps(["default"]))
    redis.set("inflight:ghost:1:0123456789ab:default", "not a list")

    # When: one heartbeat step (the heartbeat thread backs off and tries again after an error)
    with pytest.raises(redis_lib.ResponseError, match="WRONGTYPE"):
        launcher._heartbeat_step()

    # Then: the command was not lost with the error
    assert launcher.quiet and redis.exists(f"{launcher.identity}-signals") == 0


def test_remote_term_sets_stopping_when_the_beat_brings_it(redis):
    # Given
    launcher = make_launcher()
    redis.lpush(f"{launcher.identity}-signals", "TERM")

    # When
    launcher.act_on(launcher.beat(now=NOW_S))

    # Then
    assert launcher.stopping.is_set()


def test_act_on_ignores_an_unknown_command_when_one_is_sent():
    launcher = make_launcher()

    launcher.act_on(["KILL", "USR1"])

    assert not launcher.quiet and not launcher.stopping.is_set()


# -- orphan recovery -----------------------------------------------------------------------


def test_recover_orphans_pushes_back_the_inflight_jobs_of_a_worker_whose_heartbeat_is_gone(redis):
    # Given: a worker took three jobs and died; one job still waits in the queue
    dead = make_launcher()
    dead.beat(now=NOW_S)
    RecordJob.perform_bulk([(n,) for n in range(3)])
    RecordJob.set(queue="low").perform_later("low")
    taken = fetch_into_flight(dead, 4)
    waiting = RecordJob.perform_later("waiting").jid
    kill(redis, dead)
    survivor = make_launcher()
    survivor.beat(now=NOW_S)

    # When
    moved = survivor.recover_orphans()

    # Then: back at the tail, in their first fetch order, ahead of the waiting job
    assert moved == 4
    assert queued_jids(redis) == taken[:3] + [waiting]
    assert queued_jids(redis, "low") == taken[3:]
    assert redis.keys("inflight:*") == []
    assert redis.hkeys("inflight-owners") == [survivor.identity]


def test_recover_orphans_leaves_the_inflight_jobs_of_a_live_worker_alone(redis):
    # Given: another worker whose heartbeat is fresh
    busy = make_launcher()
    busy.beat(now=NOW_S)
    RecordJob.perform_bulk([(n,) for n in range(2)])
    fetch_into_flight(busy, 2)
    other = make_launcher()
    other.beat(now=NOW_S)

    # When
    moved = other.recover_orphans()

    # Then
    assert moved == 0
    assert redis.llen(f"inflight:{busy.identity}:default") == 2
    assert redis.llen("queue:default") == 0
    assert set(redis.hkeys("inflight-owners")) == {busy.identity, other.identity}


def test_recover_orphans_never_touches_its_own_inflight_jobs_when_its_own_hash_is_gone(redis):
    # Given: this worker's hash expired (say Redis was unreachable for a while)
    launcher = make_launcher()
    launcher.beat(now=NOW_S)
    RecordJob.perform_later(1)
    fetch_into_flight(launcher, 1)
    kill(redis, launcher)

    # When
    moved = launcher.recover_orphans()

    # Then: its own processor still runs that job
    assert moved == 0
    assert redis.llen(f"inflight:{launcher.identity}:default") == 1


def test_recover_script_touches_nothing_when_the_heartbeat_comes_back_before_it_runs(redis):
    # Given: recover_orphans saw the hash gone, but the worker beat again before the script ran
    revived = make_launcher()
    revived.beat(now=NOW_S)
    RecordJob.perform_later(1)
    fetch_into_flight(revived, 1)
    other = make_launcher()

    # When: the script re-checks the heartbeat inside its atomic step
    result = other._recover(revived.identity, ["default"])

    # Then
    assert result == -1
    assert redis.exists("crashes") == 0
    assert redis.llen(f"inflight:{revived.identity}:default") == 1
    assert redis.hexists("inflight-owners", revived.identity)


def test_each_orphan_is_pushed_back_exactly_once_when_two_launchers_recover_at_once(redis, redis_url):
    # Given: a dead worker with 500 jobs in flight, and two launchers with their own connections
    dead = make_launcher()
    dead.beat(now=NOW_S)
    RecordJob.perform_bulk([(n,) for n in range(500)])
    taken = fetch_into_flight(dead, 500)
    kill(redis, dead)
    clients = [redis_lib.Redis.from_url(redis_url) for _ in range(2)]
    launchers = [make_launcher(client=client) for client in clients]
    start = threading.Barrier(len(launchers))
    moved = [None] * len(launchers)

    def recover(index):
        start.wait()
        moved[index] = launchers[index].recover_orphans()

    threads = [threading.Thread(target=recover, args=(index,)) for index in range(len(launchers))]

    # When
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    # Then
    assert sum(moved) == 500, moved
    jids = queued_jids(redis)
    assert len(jids) == 500 and set(jids) == set(taken)
    assert redis.keys("inflight:*") == []
    assert redis.hexists("inflight-owners", dead.identity) == 0
    for client in clients:
        client.close()


# -- leaving -------------------------------------------------------------------------------


def test_stop_pushes_back_its_own_inflight_jobs_and_leaves_processes_when_jobs_remain(redis):
    # Given: a worker that beat, took two jobs and ran one to the end
    launcher = make_launcher(shutdown_timeout_s=0)
    launcher.beat(now=NOW_S)
    RecordJob.perform_bulk([(1,), (2,), (3,)])
    launcher.manager.processors[0].process_one(block=False)
    held = fetch_into_flight(launcher, 2)

    # When
    pushed_back = launcher.stop()

    # Then
    assert pushed_back == 2
    assert queued_jids(redis) == held
    assert redis.keys("inflight:*") == []
    assert redis.smembers("processes") == set()
    assert redis.exists(launcher.identity) == 0
    assert redis.hexists("inflight-owners", launcher.identity) == 0
    assert redis.get("stat:processed") == "1"
    assert launcher.stopping.is_set()


@pytest.mark.parametrize("concurrency", [1, 3])
def test_launcher_builds_one_processor_per_thread_when_given_a_concurrency(concurrency):
    launcher = make_launcher(concurrency=concurrency)

    assert [p.slot for p in launcher.manager.processors] == list(range(concurrency))


# -- prefetched jobs -------------------------------------------------------------------------


def test_prefetch_defaults_to_the_concurrency_when_the_setting_is_none():
    assert make_launcher(concurrency=3).fetcher.prefetch == 3


def test_prefetched_jobs_are_pushed_back_after_a_crash_when_their_worker_dies(redis):
    # Given: a worker (2 threads, so prefetch 2) took one job to run and two ahead, then died
    dead = make_launcher()
    dead.beat(now=NOW_S)
    RecordJob.perform_bulk([(n,) for n in range(4)])
    [running] = fetch_into_flight(dead, 1)
    prefetched = [json.loads(raw)["jid"] for _, raw in dead.fetcher.prefetched()]
    assert len(prefetched) == 2 and redis.llen(f"inflight:{dead.identity}:default") == 3
    kill(redis, dead)
    survivor = make_launcher()
    survivor.beat(now=NOW_S)

    # When
    moved = survivor.recover_orphans()

    # Then: the running job and the prefetched ones are back, in their order, none lost
    assert moved == 3
    assert queued_jids(redis)[:3] == [running] + prefetched
    assert len(queued_jids(redis)) == 4
    assert redis.keys("inflight:*") == []


def test_quiet_gives_prefetched_jobs_back_to_their_queue_when_told_tstp(redis):
    # Given
    launcher = make_launcher()
    launcher.beat(now=NOW_S)
    RecordJob.perform_bulk([(n,) for n in range(4)])
    [running] = fetch_into_flight(launcher, 1)

    # When
    launcher.quiet_down()

    # Then: only the job being run stays in flight; the others can go to another worker now
    assert launcher.fetcher.prefetched() == []
    assert [json.loads(raw)["jid"] for raw in redis.lrange(f"inflight:{launcher.identity}:default", 0, -1)] == [
        running
    ]
    assert redis.llen("queue:default") == 3


def test_stop_writes_pending_acks_before_pushing_back_when_a_finished_job_is_not_yet_acked(redis):
    # Given: one job finished, its ack still pending; one prefetched
    launcher = make_launcher(shutdown_timeout_s=0)
    launcher.beat(now=NOW_S)
    RecordJob.perform_bulk([(1,), (2,)])
    unit = launcher.fetcher.fetch(block=False)
    queue, raw = unit.queue, unit.raw
    launcher.fetcher.ack(queue, raw)

    # When
    pushed_back = launcher.stop()

    # Then: the finished job is not pushed back to run again; the prefetched one is
    assert pushed_back == 1
    assert len(queued_jids(redis)) == 1 and json.loads(raw)["jid"] not in queued_jids(redis)
    assert redis.keys("inflight:*") == []


# -- poison jobs -----------------------------------------------------------------------------


def crash(redis, jobs, survivor, started=()):
    """A worker takes ``jobs`` jobs in flight (its prefetch may take more), starts the jids in
    ``started`` (writing the mark its processor writes for a job that crashed before) and dies;
    ``survivor`` recovers them.  Returns the dead worker."""
    victim = make_launcher()
    victim.beat(now=NOW_S)
    for _ in range(jobs):
        victim.fetcher.fetch(block=False)
    victim.fetcher.forget_prefetched()
    for jid in started:
        redis.hset("crashes", f"{jid}:by", victim.identity)
    kill(redis, victim)
    survivor.recover_orphans()
    return victim


@pytest.fixture
def died():
    """Every job_died signal sent during the test, as kwargs plus the sender."""
    from django_bgjobs import signals

    seen = []

    def receiver(sender, **kwargs):
        seen.append({"sender": sender, **kwargs})

    signals.job_died.connect(receiver)
    yield seen
    signals.job_died.disconnect(receiver)


def queued_payloads(redis, queue="default"):
    return [json.loads(raw) for raw in reversed(redis.lrange(f"queue:{queue}", 0, -1))]


def test_first_crash_counts_every_job_in_flight_and_marks_their_payloads(redis):
    # Given: two jobs in flight (one running, one taken ahead) when their worker dies
    jids = [handle.jid for handle in RecordJob.perform_bulk([(1,), (2,)])]
    survivor = make_launcher()
    survivor.beat(now=NOW_S)

    # When
    crash(redis, 2, survivor)

    # Then: counted once each, pushed back with "crashes": 1, the count expiring in three days
    assert [redis.hget("crashes", jid) for jid in jids] == ["1", "1"]
    assert [(p["jid"], p["crashes"], p["args"]) for p in queued_payloads(redis)] == [
        (jids[0], 1, [1]), (jids[1], 1, [2]),
    ]
    assert 0 < redis.ttl("crashes") <= 3 * 24 * 3600


def test_later_crash_counts_only_the_jobs_the_dead_worker_had_started(redis):
    # Given: both jobs were in flight at a first crash; the next worker starts one, takes the other ahead
    running, ahead = [handle.jid for handle in RecordJob.perform_bulk([(1,), (2,)])]
    survivor = make_launcher()
    survivor.beat(now=NOW_S)
    crash(redis, 2, survivor)

    # When: that worker dies too
    crash(redis, 2, survivor, started=[running])

    # Then: only the one it ran counts a second crash
    assert (redis.hget("crashes", running), redis.hget("crashes", ahead)) == ("2", "1")
    assert {p["jid"]: p["crashes"] for p in queued_payloads(redis)} == {running: 2, ahead: 1}


def test_processor_marks_a_job_it_starts_when_its_payload_says_it_crashed_before(redis):
    # Given: a payload pushed back after a crash
    launcher = make_launcher()
    launcher.beat(now=NOW_S)
    survivor = make_launcher()
    survivor.beat(now=NOW_S)
    jid = RecordJob.perform_later(1).jid
    crash(redis, 1, survivor)

    # When
    assert launcher.manager.processors[0].process_one(block=False)
    launcher.fetcher.flush()

    # Then
    assert redis.hget("crashes", f"{jid}:by") == launcher.identity


def test_job_goes_to_the_dead_set_byte_for_byte_with_its_reason_when_its_worker_died_max_crashes_times(
    redis, died, settings,
):
    # Given: a job with an integer JSON floats would round; MAX_CRASHES 2; one crash already
    settings.BGJOBS = {**settings.BGJOBS, "MAX_CRASHES": 2}
    poison = RecordJob.perform_later(2**63 + 1).jid
    raw = redis.lindex("queue:default", 0)
    survivor = make_launcher()
    survivor.beat(now=NOW_S)
    crash(redis, 1, survivor)
    innocent = RecordJob.perform_later("innocent").jid

    # When: the next worker starts it and dies
    crash(redis, 1, survivor, started=[poison])

    # Then: buried, not pushed back; its payload kept as it was, the reason added after it
    [entry] = redis.zrange("dead", 0, -1)
    assert entry.startswith(raw[:-1] + ",")
    dead = json.loads(entry)
    assert dead["args"] == [2**63 + 1]
    assert dead["dead_reason"] == "its worker process died 2 times while running it (BGJOBS['MAX_CRASHES'])"
    assert dead["error_class"] == "django_bgjobs.errors.PoisonJobError"
    assert dead["jid"] == poison
    assert redis.hexists("crashes", poison) == 0 and redis.hexists("crashes", f"{poison}:by") == 0
    assert queued_jids(redis) == [innocent]
    [signal] = died
    assert signal["sender"] is RecordJob and signal["payload"]["jid"] == poison
    assert signal["reason"] == dead["dead_reason"] and type(signal["exception"]).__name__ == "PoisonJobError"


def test_unreadable_payload_is_pushed_back_uncounted_when_its_worker_dies(redis):
    # Given: garbage in flight
    redis.lpush("queue:default", "not json at all")
    survivor = make_launcher()
    survivor.beat(now=NOW_S)

    # When
    crash(redis, 1, survivor)

    # Then: back in the queue as it was, for the processor to bury without running anything
    assert redis.lrange("queue:default", 0, -1) == ["not json at all"]
    assert redis.exists("crashes") == 0


def test_stop_pushes_back_its_own_jobs_without_counting_a_crash_when_it_stops(redis):
    # Given
    launcher = make_launcher(shutdown_timeout_s=0)
    launcher.beat(now=NOW_S)
    RecordJob.perform_later(1)
    fetch_into_flight(launcher, 1)

    # When
    launcher.stop()

    # Then
    assert redis.llen("queue:default") == 1
    assert redis.exists("crashes") == 0
    assert "crashes" not in queued_payloads(redis)[0]


# -- jobs stranded by a lost reply -------------------------------------------------------------


def strand(redis, launcher):
    """What a fetch whose reply was lost leaves: a job moved in flight that no thread got."""
    return json.loads(redis.lmove("queue:default", f"inflight:{launcher.identity}:default", "RIGHT", "LEFT"))["jid"]


def test_stranded_job_is_pushed_back_once_no_thread_has_held_it_for_longer_than_a_reply_can_take(redis):
    # Given: a job stranded in this worker's in-flight list, behind another job waiting
    launcher = make_launcher()
    launcher.beat(now=NOW_S)
    RecordJob.perform_bulk([(1,), (2,)])
    stranded = strand(redis, launcher)
    limit_s = launcher._stranded_after_s

    # When / Then: not at first sight, nor just before the limit (a reply could still be on its way) ...
    assert launcher.reclaim_stranded(now=100.0) == 0
    assert launcher.reclaim_stranded(now=100.0 + limit_s - 0.1) == 0
    # ... but once no thread has held it for longer than that
    assert launcher.reclaim_stranded(now=100.0 + limit_s + 0.1) == 1
    assert queued_jids(redis)[0] == stranded
    assert redis.keys("inflight:*") == []


def test_jobs_held_by_the_worker_are_never_pushed_back_as_stranded(redis):
    # Given: one job running, the others taken ahead, one finished with its ack not yet written
    launcher = make_launcher(concurrency=2)
    launcher.beat(now=NOW_S)
    RecordJob.perform_bulk([(n,) for n in range(4)])
    processor = launcher.manager.processors[0]
    running = launcher.fetcher.fetch(block=False)
    processor.current = (running.queue, running.raw, NOW_S)
    finished = launcher.fetcher.fetch(block=False)
    launcher.fetcher.ack(finished.queue, finished.raw)
    in_flight = redis.llen(f"inflight:{launcher.identity}:default")

    # When: checked again and again, long after any reply
    moved = [launcher.reclaim_stranded(now=t) for t in (0.0, 1_000.0, 2_000.0)]

    # Then
    assert moved == [0, 0, 0]
    assert redis.llen(f"inflight:{launcher.identity}:default") == in_flight == 3  # running, acked, ahead
