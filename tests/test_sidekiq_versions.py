"""BGJOBS["SIDEKIQ_VERSION"]: what we write for Sidekiq 6, 7 and 8, and that every version's
form is read whatever the setting (without Ruby; tests/test_sidekiq_interop.py runs the real one)."""

import base64
import json
import textwrap
import time
import zlib

import pytest
from django.conf import settings
from django.test import override_settings

from django_bgjobs import api, keys
from django_bgjobs.checks import check_settings
from django_bgjobs.failures import row_fields
from django_bgjobs.payload import backtrace_lines, compress_backtrace, dumps
from django_bgjobs.worker.launcher import Launcher
from tests.sidekiq_fixtures import encode64
from tests.testapp.jobs import RecordJob

LINES = ["app/jobs/hard_worker.rb:12:in `perform'", "sidekiq/processor.rb:196:in `execute_job'"] * 20


def bgjobs(**changes):
    return override_settings(BGJOBS={**settings.BGJOBS, **changes})


@pytest.mark.parametrize("version", [True, 5, 9, "7", None])
def test_e070_when_sidekiq_version_is_not_6_7_or_8(version):
    with bgjobs(SIDEKIQ_VERSION=version):
        messages = check_settings()
    assert [m.id for m in messages] == ["django_bgjobs.E070"]
    assert "6, 7 or 8" in messages[0].hint


def test_backtrace_is_read_when_ruby_broke_its_base64_into_lines():
    # Given: an error_backtrace exactly as Sidekiq's compress_backtrace writes it (job_retry.rb, 6.0+)
    stored = encode64(zlib.compress(json.dumps(LINES).encode()))
    assert stored.count("\n") > 2

    # Then: the API, and a FailedJob row, have its lines
    assert backtrace_lines(stored) == LINES
    assert api.JobRecord(dumps({"class": "HardWorker", "args": [], "error_backtrace": stored})).error_backtrace == LINES
    assert row_fields({"class": "HardWorker", "args": [], "error_backtrace": stored})["backtrace"] == "\n".join(LINES)


def test_backtrace_is_written_in_sidekiq_form_and_read_back_in_every_form():
    written = compress_backtrace(LINES)
    # Sidekiq 7+ reads it with `backtrace.unpack1("m")` + Zlib inflate + JSON: base64 of zlib'd JSON
    assert json.loads(zlib.decompress(base64.b64decode(written, validate=True))) == LINES
    assert backtrace_lines(written) == LINES
    assert backtrace_lines(LINES) == LINES  # the plain list written before
    assert backtrace_lines("not base64 at all\nsecond line") == ["not base64 at all", "second line"]


@pytest.mark.parametrize("version, written, other", [(6, "workers", "work"), (7, "work", "workers"),
                                                     (8, "work", "workers")])
def test_heartbeat_writes_busy_jobs_under_the_key_of_the_configured_sidekiq(redis, version, written, other):
    # Given: a worker whose thread runs a job
    with bgjobs(SIDEKIQ_VERSION=version):
        launcher = Launcher(queues=["default"], concurrency=1)
        RecordJob.perform_later("busy")
        unit = launcher.fetcher.fetch(block=False)
        launcher.manager.processors[0].current = (unit.queue, unit.raw, 1_700_000_000.75)

        # When
        launcher.beat(now=1_700_000_001.0)

        # Then: Sidekiq's key for that version, run_at in whole seconds, and our API lists it
        [work] = [json.loads(v) for v in redis.hgetall(f"{launcher.identity}:{written}").values()]
        assert redis.exists(f"{launcher.identity}:{other}") == 0
        assert work["run_at"] == 1_700_000_000 and isinstance(work["run_at"], int)
        [(identity, _thread, listed)] = list(api.WorkSet())
        assert identity == launcher.identity and listed["job"].jid == json.loads(unit.raw)["jid"]


def test_workset_lists_busy_jobs_of_sidekiq_6_and_7_processes_side_by_side(redis):
    for identity, suffix in (("ruby6:1:a", "workers"), ("ruby7:2:b", "work")):
        redis.sadd(keys.processes(), identity)
        redis.hset(identity, mapping={"info": json.dumps({"identity": identity}), "busy": 1, "beat": 1.0})
        payload = dumps({"class": "HardWorker", "args": [suffix], "jid": f"{suffix:0>24}", "queue": "default"})
        redis.hset(f"{identity}:{suffix}", "tid-1", json.dumps({"queue": "default", "payload": payload,
                                                               "run_at": 1_700_000_000}))

    listed = {(identity, work["job"].args[0]) for identity, _thread, work in api.WorkSet()}

    assert listed == {("ruby6:1:a", "workers"), ("ruby7:2:b", "work")}


def test_heartbeat_writes_rss_in_kb_and_the_redis_round_trip_as_sidekiq_does(redis):
    # Given
    launcher = Launcher(queues=["default"], concurrency=1)
    with open("/proc/self/status") as status:
        vm_rss_kb = int(next(line for line in status if line.startswith("VmRSS:")).split()[1])

    # When
    launcher.beat()

    # Then: Sidekiq's fields, read back by our API
    fields = redis.hgetall(launcher.identity)
    assert abs(int(fields["rss"]) - vm_rss_kb) < vm_rss_kb * 0.2  # kB, this process's resident memory
    assert 0 < int(fields["rtt_us"]) < 5_000_000
    [process] = list(api.ProcessSet())
    assert (process.rss_kb, process.rtt_us) == (int(fields["rss"]), int(fields["rtt_us"]))


# -- payload edits in Lua: no key twice, every other byte kept ------------------------------


def strict_loads(raw):
    """json.loads that refuses a key written twice (as strict JSON parsers do)."""
    def pairs(items):
        names = [name for name, _ in items]
        assert len(names) == len(set(names)), f"duplicate keys in {raw!r}"
        return dict(items)
    return json.loads(raw, object_pairs_hook=pairs)


# A payload as Ruby's Sidekiq writes a retry entry: enqueued_at in the middle, error fields after,
# and values that must survive byte for byte: a float created_at, big integers, tricky strings.
RUBY_RETRY = (
    '{"retry":true,"queue":"default","class":"tests.testapp.jobs.RecordJob",'
    '"args":[9223372036854775807,1.0e+20,{"enqueued_at":1,"at":2},"x\\",\\"at\\":3}",[[]],"\\\\"],'
    '"jid":"0123456789abcdef01234567","created_at":1700000000.1234567,"enqueued_at":1700000000.2345678,'
    '"error_message":"boom","error_class":"RuntimeError","failed_at":1700000001.5,"retry_count":0}'
)


def test_poller_moves_a_ruby_retry_entry_with_one_enqueued_at_and_every_other_byte_kept(redis):
    from django_bgjobs.worker.poller import Poller

    redis.zadd(keys.retry(), {RUBY_RETRY: 1_700_000_010})

    Poller().enqueue_due(now=1_700_000_020.25)

    [raw] = redis.lrange("queue:default", 0, -1)
    moved = strict_loads(raw)
    assert moved["enqueued_at"] == 1_700_000_020.25
    # Only the top-level enqueued_at left its place; the nested ones and the strings are untouched
    assert raw == RUBY_RETRY.replace(',"enqueued_at":1700000000.2345678', "")[:-1] + ',"enqueued_at":1700000020.25}'
    assert '"created_at":1700000000.1234567' in raw and "9223372036854775807" in raw and "1.0e+20" in raw


@pytest.mark.parametrize("entry", [
    '{"class":"X","jid":"a","at":5,"enqueued_at":4,"queue":"q1"}',  # both, "at" not last
    '{"enqueued_at":4}',                                             # nothing else
    '{ "class" : "X" , "at" : 5 , "args" : [ ] }',                   # spaces
])
def test_poller_never_writes_a_key_twice_whatever_the_order(redis, entry):
    from django_bgjobs.worker.poller import Poller

    redis.zadd(keys.schedule(), {entry: 1})
    Poller().enqueue_due(now=2)

    [raw] = redis.lrange(f"queue:{json.loads(entry).get('queue', 'default')}", 0, -1)
    moved = strict_loads(raw)
    assert moved["enqueued_at"] == 2.0 and "at" not in moved
    assert {k: v for k, v in moved.items() if k != "enqueued_at"} == {
        k: v for k, v in json.loads(entry).items() if k not in ("at", "enqueued_at")}


def test_recovered_and_buried_jobs_hold_crashes_and_error_fields_once(redis):
    from django_bgjobs.worker.fetcher import Fetcher
    from django_bgjobs.worker.queues import QueueOrder

    # Given: a dead worker's in-flight job that crashed before and failed before (Ruby's layout)
    payload = RUBY_RETRY[:-1] + ',"crashes":1}'
    jid = json.loads(payload)["jid"]
    redis.rpush(keys.inflight("gone:1:a", "default"), payload)
    redis.hset(keys.crashes(), mapping={jid: 1, f"{jid}:by": "gone:1:a"})  # it ran there
    fetcher = Fetcher("me:2:b", QueueOrder(["default"]))

    # When: its worker is found gone, once with crashes to spare, once at the limit
    moved, buried, _ = fetcher.recover("gone:1:a", ["default"], max_crashes=3)
    [pushed_back] = redis.lrange("queue:default", 0, -1)
    redis.delete("queue:default")
    redis.rpush(keys.inflight("gone:1:a", "default"), pushed_back)
    redis.hset(keys.crashes(), f"{jid}:by", "gone:1:a")
    _, [dead], reason = fetcher.recover("gone:1:a", ["default"], max_crashes=3)

    # Then: one "crashes", one set of error fields, and the arguments byte for byte
    assert moved == 1 and strict_loads(pushed_back)["crashes"] == 2
    [raw_dead] = redis.zrange(keys.dead(), 0, -1)
    entry = strict_loads(raw_dead)
    assert entry["dead_reason"] == reason and entry["error_class"].endswith("PoisonJobError")
    assert entry["crashes"] == 2 and entry == dead
    assert '"args":[9223372036854775807,1.0e+20,{"enqueued_at":1,"at":2}' in raw_dead


# -- Sidekiq 8: integer milliseconds ---------------------------------------------------------


def test_sidekiq_8_times_are_written_in_integer_milliseconds_and_read_back_in_seconds(redis):
    from django_bgjobs.worker.poller import Poller
    from tests.testapp.jobs import FailingJob

    with bgjobs(SIDEKIQ_VERSION=8):
        # When: a job enqueued, one scheduled and moved by the poller, one failed
        before_ms = int(time.time() * 1000)
        now_job = RecordJob.perform_later(1)
        later = RecordJob.set(wait=0.05).perform_later(2)
        moved_at = time.time() + 0.06  # when the poller moves it: its new enqueued_at
        Poller().enqueue_due(now=moved_at)
        failed = FailingJob.perform_later("x")
        raw = redis.lmove(keys.queue("default"), keys.inflight("me:1:a", "default"), "LEFT", "LEFT")
        from tests.helpers import unit_in_flight
        unit_in_flight(raw, "me:1:a").fail(ValueError("x"))
        after_ms = int(max(time.time(), moved_at) * 1000) + 1

    # Then: created_at, enqueued_at and failed_at are integer ms, as Sidekiq 8 writes them
    queued = {p["jid"]: p for p in map(json.loads, redis.lrange("queue:default", 0, -1))}
    [retry] = [json.loads(r) for r in redis.zrange(keys.retry(), 0, -1)]
    for payload, fields in ((queued[now_job.jid], ("created_at", "enqueued_at")),
                            (queued[later.jid], ("created_at", "enqueued_at")),
                            (retry, ("created_at", "enqueued_at", "failed_at"))):
        for field in fields:
            assert isinstance(payload[field], int) and before_ms <= payload[field] <= after_ms, (field, payload)
    assert retry["jid"] == failed.jid
    # and read back as seconds by the API, whatever the setting
    record = api.Queue("default").find_job(now_job.jid)
    assert before_ms / 1000 <= record.enqueued_at <= after_ms / 1000
    assert 0 <= record.latency < 60


# -- golden fixtures of Sidekiq 7 and 8 (tests/sidekiq_fixtures.py), both directions ---------


@pytest.mark.parametrize("version", [7, 8])
def test_our_api_reads_what_sidekiq_7_and_8_write(redis, version):
    from tests import sidekiq_fixtures as fx

    fx.load(redis, version)

    # Times in seconds whatever the unit, the busy job of a :work hash, the compressed backtrace
    [waiting] = list(api.Queue("default"))
    assert (waiting.jid, waiting.args, waiting.created_at, waiting.enqueued_at) == ("a" * 24, [1, "two"], fx.T, fx.T)
    [retry] = list(api.RetrySet())
    assert retry.failed_at == fx.T and retry.error_backtrace == fx.BACKTRACE and retry.at == fx.T + 30
    [scheduled] = list(api.ScheduledSet())
    assert scheduled.at == fx.T + 3600 and scheduled.created_at == fx.T
    [process] = list(api.ProcessSet())
    assert (process.busy, process.rss_kb, process.rtt_us, process.concurrency) == (1, 123456, 180, 5)
    [(identity, thread, work)] = list(api.WorkSet())
    assert (identity, thread, work["job"].jid, work["run_at"]) == (process.identity, "tid-1", "d" * 24, int(fx.T))
    [row] = api.JobMetrics(minutes=1, now=fx.T + 30).classes()
    assert (row.name, row.processed, row.failed, row.total_ms) == ("HardJob", 3, 1, 120)
    assert api.Stats().processed == 10


@pytest.mark.parametrize("version", [7, 8])
def test_what_we_write_for_sidekiq_7_and_8_has_their_shape(redis, version):
    from django_bgjobs.worker.poller import Poller
    from tests import sidekiq_fixtures as fx
    from tests.helpers import unit_in_flight
    from tests.testapp.jobs import FailingJob

    theirs = fx.fixture(version)
    with bgjobs(SIDEKIQ_VERSION=version):
        # A waiting job, a failed one, a running one reported by the heartbeat, and metrics
        handle = RecordJob.perform_later(1, "two")
        FailingJob.perform_later("x")
        raw = redis.lmove(keys.queue("default"), keys.inflight("me:1:a", "default"), "LEFT", "LEFT")
        unit_in_flight(raw, "me:1:a").fail(ValueError("x"))
        launcher = Launcher(queues=["default"], concurrency=1)
        launcher.manager.processors[0].current = ("default", redis.lindex(keys.queue("default"), 0), fx.T)
        launcher.manager.metrics.record("HardJob", 0.04)
        launcher.beat(now=fx.T)
        Poller().enqueue_due(now=fx.T)

    def shape(payload):
        return {name: type(value).__name__ for name, value in payload.items()}

    [ours] = [json.loads(r) for r in redis.lrange(keys.queue("default"), 0, -1)]
    assert ours["jid"] == handle.jid
    [their_waiting] = [json.loads(r) for r in theirs["queue:default"][1]]
    assert {k: shape(ours)[k] for k in ("created_at", "enqueued_at")} == \
        {k: shape(their_waiting)[k] for k in ("created_at", "enqueued_at")}
    [our_retry] = [json.loads(r) for r in redis.zrange(keys.retry(), 0, -1)]
    [their_retry] = [json.loads(r) for r in theirs["retry"][1]]
    for field in ("created_at", "failed_at", "error_backtrace", "retry_count", "error_class"):
        assert shape(our_retry)[field] == shape(their_retry)[field], field
    assert backtrace_lines(our_retry["error_backtrace"])[-1] == "ValueError: x"  # the frames, decoded
    assert "\n" not in our_retry["error_backtrace"]  # strict Base64, as Sidekiq 7.2.1 and 8 write it
    # The process hash and its busy jobs, under Sidekiq 7/8's key, with its fields
    their_identity = next(k for k, (kind, _) in theirs.items() if kind == "hash" and ":work" not in k
                          and not k.startswith("j|"))
    assert set(redis.hgetall(launcher.identity)) >= set(theirs[their_identity][1])
    [our_work] = redis.hgetall(f"{launcher.identity}:work").values()
    [their_work] = theirs[f"{their_identity}:work"][1].values()
    assert shape(json.loads(our_work)) == shape(json.loads(their_work))
    # Metrics under the keys that Sidekiq version reads
    metric_keys = sorted(k for k in redis.scan_iter("j|*"))
    assert metric_keys == sorted(k for k in theirs if k.startswith("j|"))


def test_sidekiq_8_failure_times_of_a_batch_and_of_a_refused_duplicate_read_as_seconds(redis):
    from django_bgjobs import Batch
    from tests.helpers import unit_in_flight
    from tests.testapp.jobs import FailingJob
    from tests.testapp.unique_batch_jobs import RejectOnConflictJob

    with bgjobs(SIDEKIQ_VERSION=8):
        # Given: a batch job that failed, and a duplicate refused into the dead set
        before = time.time()
        batch = Batch()
        with batch.jobs():
            FailingJob.perform_later("x")
        raw = redis.lmove(keys.queue("default"), keys.inflight("me:1:a", "default"), "LEFT", "LEFT")
        unit_in_flight(raw, "me:1:a").fail(ValueError("x"))
        RejectOnConflictJob.perform_later(1)
        RejectOnConflictJob.perform_later(1)
        after = time.time()

        # Then: the batch's failure time is seconds (its admin page shows it), and the dead
        # entry's failed_at is Sidekiq 8's integer milliseconds like its other times
        [failure] = batch.status().failed_jobs()
        assert before - 1 <= failure["failed_at"] <= after + 1
        [dead] = [json.loads(r) for r in redis.zrange(keys.dead(), 0, -1)]
        assert isinstance(dead["failed_at"], int) and isinstance(dead["created_at"], int)
        assert before * 1000 - 1000 <= dead["failed_at"] <= after * 1000 + 1000


def test_a_compressed_backtrace_that_inflates_past_any_real_one_is_shown_as_its_text():
    bomb = base64.b64encode(zlib.compress(b"[" + b'"x",' * 400_000 + b'"x"]')).decode()

    assert backtrace_lines(bomb) == [bomb]
