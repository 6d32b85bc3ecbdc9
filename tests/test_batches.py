"""Batches: the client side (``Batch``, ``jobs()``, counters in the push's MULTI), the Lua step
that records outcomes and fires callbacks (``batches/batch.lua``), callback lookup, and the
worker side driven through :meth:`Processor.process_one` with a fixed poller step.

End-to-end runs with real ``runjobs`` processes (1,000 children, kill -9) are in
``test_batches_e2e.py``.
"""

import json
import sys
import threading
import time
import types

import pytest
from django.db import transaction

from django_bgjobs import Batch, BatchStatus, Job, keys
from django_bgjobs.api import BatchSet
from django_bgjobs.batches.client import CALLBACK_JOB_NAME, BatchCallbackJob, current_bid, resolve_callback
from django_bgjobs.connection import get_redis
from django_bgjobs.errors import BgJobsError, ConfigurationError, UnknownJobError
from django_bgjobs.testing import capture_jobs
from django_bgjobs.worker.fetcher import Fetcher
from django_bgjobs.worker.poller import Poller
from django_bgjobs.worker.processor import Processor
from django_bgjobs.worker.queues import QueueOrder
from tests.testapp.jobs import RecordJob, performed
from tests.testapp.unique_batch_jobs import (
    BatchChildJob,
    DyingChildJob,
    GrowingJob,
    NestingJob,
    RecordingCallback,
    UntilExecutedJob,
    callbacks,
)


@pytest.mark.parametrize("bid", ["abc\n", "", "a/b", "x" * 65, 5])
def test_reopening_a_batch_refuses_an_id_that_is_not_a_batch_id(bid):
    with pytest.raises(ValueError, match="is not a batch id"):
        Batch(bid)


def queued(redis, queue="default"):
    return [json.loads(raw) for raw in redis.lrange(f"queue:{queue}", 0, -1)]


def callback_payloads(redis):
    return [p for p in queued(redis) if p["class"] == CALLBACK_JOB_NAME]


def record_outcome(op, bid, jid, info=None):
    """Run one worker-side outcome through batches/batch.lua, as the worker's ack would."""
    from django_bgjobs.batches.client import _run

    extra = [jid] if op == "success" else [jid, json.dumps(info or {"error_class": "JobFailure"})]
    return _run(op, bid, extra)


class LocalCallback:
    def on_success(self, status, options):
        pass


# -- the client side ------------------------------------------------------------------------


def test_jobs_enqueued_inside_the_block_carry_the_bid_and_are_counted_in_the_push(redis):
    # Given
    batch = Batch(description="three ways")

    # When: one by one, in bulk, and scheduled
    with batch.jobs():
        assert current_bid() == batch.bid
        one = RecordJob.perform_later(1).jid
        bulk = [h.jid for h in RecordJob.perform_bulk([(2,), (3,)])]
        later = RecordJob.set(wait=3600).perform_later(4).jid
    outside = RecordJob.perform_later(5).jid

    # Then
    assert current_bid() is None
    bids = {p["jid"]: p.get("bid") for p in queued(redis)}
    bids.update({json.loads(raw)["jid"]: json.loads(raw).get("bid") for raw in redis.zrange("schedule", 0, -1)})
    assert {jid for jid, bid in bids.items() if bid == batch.bid} == {one, *bulk, later}
    assert bids[outside] is None
    status = batch.status()
    assert (status.total, status.pending, status.failures) == (4, 4, 0)
    assert status.description == "three ways"
    assert not status.complete and not status.success
    assert status.open_blocks == 0


def test_a_bulk_push_into_a_batch_counts_its_jobs_in_one_step_with_one_sadd(redis):
    # Given: the push script loaded, the batch created, Redis's command counts reset
    batch = Batch()
    RecordJob.perform_later("warm-up")
    with batch.jobs():
        redis.config_resetstat()

        # When
        handles = RecordJob.perform_bulk([(n,) for n in range(1000)])

        # Then: one script call, with one push of the 1,000 jobs and one write of their counts
        calls = {name.removeprefix("cmdstat_"): stat["calls"] for name, stat in redis.info("commandstats").items()}
    assert calls.get("evalsha") == 1 and "multi" not in calls
    assert calls.get("sadd") == 2 and calls.get("hincrby") == 1  # SADD queues, SADD b-BID-jids
    assert calls.get("lpush") == 1 and calls.get("expire") == 2
    status = batch.status()
    assert (status.total, status.pending) == (1000, 1000)
    assert set(status.jids()) == {h.jid for h in handles}


def test_bulk_pushes_into_a_batch_keep_their_order_and_due_times_past_one_commands_worth(redis):
    # Given: more payloads than one Lua command takes at once (1,000), to the queue and scheduled
    batch = Batch()

    # When
    with batch.jobs():
        now = RecordJob.perform_bulk([(n,) for n in range(2500)])
        later = RecordJob.set(wait=60).perform_bulk([(n,) for n in range(2500)])

    # Then
    assert [json.loads(raw)["jid"] for raw in reversed(redis.lrange("queue:default", 0, -1))] == [h.jid for h in now]
    scheduled = redis.zrange("schedule", 0, -1, withscores=True)
    assert sorted(json.loads(raw)["jid"] for raw, _ in scheduled) == sorted(h.jid for h in later)
    assert all(h.scheduled_at == later[0].scheduled_at for h in later)
    assert all(score == later[0].scheduled_at for _, score in scheduled)
    assert batch.status().total == 5000


def test_empty_batch_completes_and_succeeds_when_its_block_ends(redis):
    # Given
    batch = Batch().on("success", RecordingCallback, {"n": 1}).on("complete", RecordingCallback)

    # When
    with batch.jobs():
        pass

    # Then
    assert [(p["args"][1], p["args"][2]) for p in reversed(callback_payloads(redis))] == [("complete", 1), ("success", 0)]
    status = batch.status()
    assert status.complete and status.success


def test_batch_does_not_end_before_its_block_does_when_children_finish_early(redis):
    # Given
    batch = Batch().on("success", RecordingCallback)

    # When: a child succeeds while the block is still enqueueing
    with batch.jobs():
        first = RecordJob.perform_later(1).jid
        record_outcome("success", batch.bid, first)
        assert callback_payloads(redis) == []
        second = RecordJob.perform_later(2).jid

    # Then
    assert callback_payloads(redis) == []
    record_outcome("success", batch.bid, second)
    assert len(callback_payloads(redis)) == 1


def test_block_that_raises_leaves_the_batch_unsealed_so_it_never_fires(redis):
    batch = Batch().on("success", RecordingCallback)

    with pytest.raises(ZeroDivisionError), batch.jobs():
        jid = RecordJob.perform_later(1).jid
        1 / 0

    record_outcome("success", batch.bid, jid)
    assert callback_payloads(redis) == []
    assert batch.status().open_blocks == 1


@pytest.mark.django_db(transaction=True)
def test_batch_is_sealed_after_the_commit_when_the_block_runs_in_a_transaction(redis):
    # Given
    batch = Batch().on("success", RecordingCallback)

    # When
    with transaction.atomic():
        with batch.jobs():
            RecordJob.perform_later(1)
        assert batch.status().open_blocks == 1
        assert queued(redis) == []

    # Then: the push and then the seal ran at the commit
    status = batch.status()
    assert (status.open_blocks, status.total, status.pending) == (0, 1, 1)


@pytest.mark.django_db(transaction=True)
def test_rolled_back_block_enqueues_nothing_and_leaves_the_batch_open(redis):
    batch = Batch()

    with pytest.raises(RuntimeError), transaction.atomic():
        with batch.jobs():
            RecordJob.perform_later(1)
        raise RuntimeError("rollback")

    assert queued(redis) == []
    assert batch.status().open_blocks == 1


def test_unique_job_in_a_batch_is_counted_only_when_its_lock_lets_it_in(redis):
    batch = Batch()

    with batch.jobs():
        UntilExecutedJob.perform_later("same")
        UntilExecutedJob.perform_later("same")
        RecordJob.perform_later(1)

    status = batch.status()
    assert (status.total, status.pending) == (2, 2)


def test_callbacks_are_set_before_the_first_block_only(redis):
    batch = Batch()
    with batch.jobs():
        pass

    with pytest.raises(BgJobsError, match="before the batch's first jobs"):
        batch.on("success", RecordingCallback)
    with pytest.raises(BgJobsError, match="before the batch's first jobs"):
        Batch(batch.bid).on("success", RecordingCallback)


def test_reopening_a_batch_that_does_not_exist_raises(redis):
    with pytest.raises(BgJobsError, match="does not exist"), Batch("nosuchbatch").jobs():
        pass


def test_nothing_is_written_and_jobs_still_carry_the_bid_when_jobs_are_captured(redis):
    batch = Batch().on("success", RecordingCallback)

    with capture_jobs() as jobs, batch.jobs():
        RecordJob.perform_later(1)

    assert jobs[0].payload["bid"] == batch.bid
    assert redis.keys("b-*") == []


# -- callbacks are looked up, never imported ------------------------------------------------


@pytest.mark.parametrize(("callback", "event", "error", "message"), [
    (RecordingCallback, "finish", ValueError, "unknown"),
    (RecordJob(), "success", TypeError, "is a class"),
    (LocalCallback, "complete", ConfigurationError, "no on_complete"),
    ("tests.test_batches.Missing", "success", UnknownJobError, "not a class"),
    ("nosuchmodule.Callback", "success", ConfigurationError, "no imported module"),
])
def test_on_refuses_a_callback_the_worker_could_not_run(callback, event, error, message):
    with pytest.raises(error, match=message):
        Batch().on(event, callback)


def test_on_refuses_a_class_defined_inside_a_function():
    class Inner:
        def on_success(self, status, options):
            pass

    with pytest.raises(ConfigurationError, match="inside a function"):
        Batch().on("success", Inner)


def test_on_accepts_a_dotted_path_to_an_imported_callback_class():
    batch = Batch().on("success", "tests.testapp.unique_batch_jobs.RecordingCallback")

    assert batch._callbacks[0]["module"] == "tests.testapp.unique_batch_jobs"


def test_resolve_imports_nothing_and_walks_only_classes_when_given_names_from_redis(monkeypatch):
    # Given: a module not imported, and an imported one with a non-class attribute
    monkeypatch.delitem(sys.modules, "tests.never_imported", raising=False)
    fake = types.ModuleType("tests.fake_callbacks")
    fake.helper = types.SimpleNamespace(on_success=print)
    monkeypatch.setitem(sys.modules, "tests.fake_callbacks", fake)

    # Then
    with pytest.raises(UnknownJobError, match="not imported"):
        resolve_callback("tests.never_imported", "Callback", "success")
    assert "tests.never_imported" not in sys.modules
    with pytest.raises(UnknownJobError, match="not a class"):
        resolve_callback("tests.fake_callbacks", "helper", "success")
    with pytest.raises(UnknownJobError, match="not a class"):
        resolve_callback("os", "system", "success")
    assert resolve_callback("tests.testapp.unique_batch_jobs", "RecordingCallback", "death") is RecordingCallback


def test_callback_job_runs_the_callback_with_the_status_and_decoded_options(redis):
    # Given
    import datetime

    batch = Batch().on("success", RecordingCallback, {"when": datetime.date(2026, 1, 2), "ids": [1, 2]})
    with batch.jobs():
        pass
    [payload] = callback_payloads(redis)

    # When
    from django_bgjobs.execution import perform_inline

    perform_inline(payload)

    # Then
    [called] = callbacks()
    assert called["event"] == "success"
    assert called["bid"] == batch.bid
    assert called["options"] == {"when": "datetime.date(2026, 1, 2)", "ids": [1, 2]}
    assert BatchCallbackJob.name == CALLBACK_JOB_NAME


# -- the Lua step: outcomes and exactly-once callbacks ---------------------------------------


def make_batch(redis, n, events=("success", "complete", "death")):
    batch = Batch(description=f"{n} jobs")
    for event in events:
        batch.on(event, RecordingCallback, {"event": event})
    with batch.jobs():
        jids = [h.jid for h in RecordJob.perform_bulk([(i,) for i in range(n)])]
    redis.delete("queue:default")
    return batch, jids


def fired_events(redis):
    return sorted((p["args"][0], p["args"][1]) for p in callback_payloads(redis))


def test_complete_fires_when_every_job_ran_once_and_success_when_the_failures_succeed(redis):
    # Given
    batch, jids = make_batch(redis, 3)

    # When: two succeed, one fails
    for jid in jids[:2]:
        record_outcome("success", batch.bid, jid)
    record_outcome("failure", batch.bid, jids[2], {"error_class": "JobFailure", "error_message": "boom"})

    # Then: complete, not success
    assert fired_events(redis) == [(batch.bid, "complete")]
    status = batch.status()
    assert (status.pending, status.failures, status.complete, status.success) == (1, 1, True, False)
    assert status.failed_jobs()[0]["error_message"] == "boom"

    # When: the failed one succeeds on retry
    record_outcome("success", batch.bid, jids[2])

    # Then
    assert fired_events(redis) == [(batch.bid, "complete"), (batch.bid, "success")]
    status = batch.status()
    assert (status.pending, status.failures, status.success) == (0, 0, True)
    assert 0 < redis.ttl(keys.batch(batch.bid)) <= 3 * 24 * 3600


def test_death_fires_once_and_success_never_when_jobs_die(redis):
    # Given
    batch, jids = make_batch(redis, 3)

    # When
    record_outcome("success", batch.bid, jids[0])
    record_outcome("dead", batch.bid, jids[1])
    record_outcome("dead", batch.bid, jids[2])

    # Then
    assert fired_events(redis) == [(batch.bid, "complete"), (batch.bid, "death")]
    status = batch.status()
    assert (status.pending, status.failures, status.dead) == (2, 2, 2)
    assert [f["dead"] for f in status.failed_jobs()] == [True, True]
    assert 0 < redis.ttl(keys.batch_jids(batch.bid)) <= 3 * 24 * 3600  # ended: every job left is dead


def test_a_job_succeeding_twice_counts_once(redis):
    batch, jids = make_batch(redis, 2)

    record_outcome("success", batch.bid, jids[0])
    record_outcome("success", batch.bid, jids[0])

    assert fired_events(redis) == []
    assert batch.status().pending == 1


def test_callbacks_fire_exactly_once_when_the_last_jobs_finish_at_the_same_instant(redis):
    # Given: 200 batches of two jobs each
    batches = [make_batch(redis, 2, events=("success",)) for _ in range(200)]
    start = threading.Barrier(2)

    def finish(index):
        start.wait()
        for batch, jids in batches:
            record_outcome("success", batch.bid, jids[index])

    # When: two threads finish the two jobs of each batch, in step
    threads = [threading.Thread(target=finish, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then
    fired = fired_events(redis)
    print(f"\nlast-two race: 200 batches finished by 2 threads at once -> {len(fired)} success callbacks")
    assert sorted(bid for bid, _ in fired) == sorted(batch.bid for batch, _ in batches)


def test_callback_jids_are_fixed_by_batch_event_and_index(redis):
    batch = Batch().on("success", RecordingCallback).on("success", RecordingCallback, {"second": True})
    with batch.jobs():
        pass

    jids = [p["jid"] for p in callback_payloads(redis)]
    assert len(set(jids)) == 2 and all(len(jid) == 24 for jid in jids)


def record_outcome_unpushed(op, bid, jid):
    """An outcome written as a worker's MULTI writes it, by a process that then dies before
    pushing the callbacks it fired: they stay in the outbox."""
    from django_bgjobs import scripts
    from django_bgjobs.batches.client import script_args

    return scripts.run("batches/batch", *script_args(op, bid, [jid]))


def test_callbacks_left_in_the_outbox_by_a_writer_that_died_are_pushed_once_by_the_next_drains(redis):
    # Given: 50 batches whose last job's success was recorded by a process that died at once
    from django_bgjobs.batches.client import push_fired_callbacks

    batches = [make_batch(redis, 1, events=("success", "complete")) for _ in range(50)]
    for batch, [jid] in batches:
        assert record_outcome_unpushed("success", batch.bid, jid)
    assert callback_payloads(redis) == [] and redis.zcard(keys.batch_callbacks()) == 100

    # When: two workers' heartbeats drain the outbox at the same instant
    start = threading.Barrier(2)
    pushed = []

    def drain():
        start.wait()
        pushed.append(push_fired_callbacks())

    threads = [threading.Thread(target=drain) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then: each callback once, in the order its batch fired them
    assert sum(pushed) == 100
    assert sorted(fired_events(redis)) == sorted((b.bid, e) for b, _ in batches for e in ("complete", "success"))
    assert redis.zcard(keys.batch_callbacks()) == 0
    for batch, _ in batches:
        assert [p["args"][1] for p in reversed(callback_payloads(redis)) if p["args"][0] == batch.bid] == [
            "complete", "success"]
    assert push_fired_callbacks() == 0


def test_a_callback_taken_by_a_drain_that_died_is_pushed_once_its_claim_has_lapsed(redis):
    # Given: a fired callback, taken from the outbox by a drain that died before pushing it
    from django_bgjobs.batches.client import CLAIM_S, _script, push_fired_callbacks

    batch, [jid] = make_batch(redis, 1, events=("success",))
    record_outcome_unpushed("success", batch.bid, jid)
    now = time.time()
    assert len(_script("claim", "", [repr(now + CLAIM_S), 10], get_redis(), now=now)) == 1

    # When: the next drains run before and after the claim lapses
    before = push_fired_callbacks(now=now + 1)
    after = push_fired_callbacks(now=now + CLAIM_S + 1)

    # Then
    assert (before, after) == (0, 1)
    assert fired_events(redis) == [(batch.bid, "success")]


def test_a_workers_heartbeat_pushes_the_callbacks_a_dead_process_left_in_the_outbox(redis):
    # Given: a batch whose end was recorded by a process that died before pushing its callback
    from django_bgjobs.worker.launcher import Launcher

    batch, [jid] = make_batch(redis, 1, events=("success",))
    record_outcome_unpushed("success", batch.bid, jid)

    # When: a worker's heartbeat does its duties
    Launcher(queues=["default"], concurrency=1, schedule=False)._heartbeat_step()

    # Then
    assert fired_events(redis) == [(batch.bid, "success")]
    assert redis.zcard(keys.batch_callbacks()) == 0


def test_a_callback_pushed_inside_another_batchs_block_does_not_join_that_batch(redis):
    # Given: a batch that ended, its callback waiting in the outbox
    from django_bgjobs.batches.client import push_fired_callbacks

    ended, [jid] = make_batch(redis, 1, events=("success",))
    record_outcome_unpushed("success", ended.bid, jid)

    # When: the outbox is drained from inside an unrelated batch's jobs() block
    other = Batch()
    with other.jobs():
        assert push_fired_callbacks() == 1

    # Then
    [callback] = callback_payloads(redis)
    assert "bid" not in callback
    assert other.status().total == 0


# -- nesting ----------------------------------------------------------------------------------


def test_child_batch_made_inside_a_parents_block_holds_the_parents_success(redis):
    # Given
    parent = Batch(description="parent").on("success", RecordingCallback, {"which": "parent"})
    with parent.jobs():
        parent_jid = RecordJob.perform_later("p").jid
        child = Batch(description="child").on("success", RecordingCallback, {"which": "child"})
        with child.jobs():
            child_jid = RecordJob.perform_later("c").jid
    assert child.parent_bid == parent.bid
    assert BatchStatus(parent.bid).kids == 1

    # When: the parent's own job succeeds
    record_outcome("success", parent.bid, parent_jid)

    # Then: the parent waits for its child
    assert fired_events(redis) == []

    # When: the child's job succeeds
    record_outcome("success", child.bid, child_jid)

    # Then: the child's callback is enqueued, as a job of the parent, which waits for it too
    [child_callback] = callback_payloads(redis)
    assert child_callback["args"][:2] == [child.bid, "success"]
    assert child_callback["bid"] == parent.bid
    assert not BatchStatus(parent.bid).success

    # When: the child's callback job succeeds
    record_outcome("success", parent.bid, child_callback["jid"])

    # Then
    assert fired_events(redis) == sorted([(child.bid, "success"), (parent.bid, "success")])


# -- monitoring ---------------------------------------------------------------------------------


def test_batch_set_lists_batches_newest_first_and_skips_expired_ones(redis):
    first, _ = make_batch(redis, 1)
    second, _ = make_batch(redis, 2)
    gone, _ = make_batch(redis, 1)
    redis.delete(keys.batch(gone.bid))

    listed = BatchSet().page()

    assert [s.bid for s in listed] == [second.bid, first.bid]
    assert [s.total for s in listed] == [2, 1]
    assert BatchSet().get(gone.bid) is None
    assert BatchSet().get(first.bid).description == "1 jobs"
    assert [s.bid for s in BatchSet()] == [second.bid, first.bid]


def test_job_outside_a_batch_has_no_batch():
    class Probe(Job):
        abstract = True

    job = RecordJob()
    job.payload = {"jid": "x"}
    assert job.batch is None and job.bid is None
    job.payload = {"jid": "x", "bid": "abc123"}
    assert job.batch.bid == "abc123"


# -- the worker side ----------------------------------------------------------------------------

IDENTITY = "test-host:4242:batches"
FAR_FUTURE_S = 4_000_000_000

worker_db = pytest.mark.django_db(transaction=True)


@pytest.fixture
def processor(redis):
    redis.hset(keys.process(IDENTITY), "beat", 1)
    return Processor(Fetcher(IDENTITY, QueueOrder(["critical", "default", "low"])))


def run_all(processor, limit=5_000):
    """Run jobs until none is left, moving due retries with a fixed clock between passes."""
    ran = 0
    while True:
        while processor.process_one(block=False):
            ran += 1
            assert ran < limit
        if not Poller().enqueue_due(now=FAR_FUTURE_S):
            return ran


def events_of(bid):
    return [c["event"] for c in callbacks() if c["bid"] == bid]


@worker_db
def test_success_and_complete_fire_once_after_every_child_succeeded(redis, processor):
    # Given
    batch = Batch(description="ten").on("success", RecordingCallback, {"n": 10}).on("complete", RecordingCallback)
    with batch.jobs():
        BatchChildJob.perform_bulk([(n,) for n in range(10)])

    # When
    run_all(processor)

    # Then
    assert sorted(events_of(batch.bid)) == ["complete", "success"]
    success = next(c for c in callbacks() if c["event"] == "success")
    assert (success["total"], success["pending"], success["options"]) == (10, 0, {"n": 10})
    assert len(performed()) == 10
    assert redis.llen("queue:default") == 0


@worker_db
def test_success_waits_for_children_that_fail_and_then_succeed_on_retry(redis, processor):
    # Given: 20 children, 5 of them failing twice first
    batch = Batch().on("success", RecordingCallback).on("complete", RecordingCallback)
    with batch.jobs():
        BatchChildJob.perform_bulk([(n, 2 if n % 4 == 0 else 0) for n in range(20)])

    # When: one pass, no retries yet (the complete callback, enqueued by the last child, runs too)
    while processor.process_one(block=False):
        pass

    # Then: complete (every child ran once), not success
    assert events_of(batch.bid) == ["complete"]
    status = batch.status()
    assert (status.pending, status.failures, status.complete, status.success) == (5, 5, True, False)
    assert {f["error_class"] for f in status.failed_jobs()} == {"tests.testapp.jobs.JobFailure"}

    # When: the retries run
    run_all(processor)

    # Then
    assert sorted(events_of(batch.bid)) == ["complete", "success"]
    assert batch.status().failures == 0


@worker_db
def test_death_and_complete_fire_once_and_success_never_when_children_die(redis, processor):
    # Given
    batch = Batch().on("success", RecordingCallback).on("complete", RecordingCallback).on("death", RecordingCallback)
    with batch.jobs():
        BatchChildJob.perform_bulk([(n,) for n in range(5)])
        DyingChildJob.perform_bulk([(n,) for n in range(3)])

    # When
    run_all(processor)

    # Then
    assert sorted(events_of(batch.bid)) == ["complete", "death"]
    status = batch.status()
    assert (status.total, status.pending, status.dead) == (8, 3, 3)
    assert redis.zcard("dead") == 3


@worker_db
def test_job_adds_jobs_to_its_own_batch_and_the_batch_waits_for_them(redis, processor):
    # Given
    batch = Batch().on("success", RecordingCallback)
    with batch.jobs():
        GrowingJob.perform_later(4)

    # When
    run_all(processor)

    # Then
    assert events_of(batch.bid) == ["success"]
    status = batch.status()
    assert (status.total, status.pending) == (5, 0)
    assert sum(1 for r in performed() if r.get("bid") == batch.bid) == 5


@worker_db
def test_child_batch_made_by_a_job_of_the_parent_runs_its_callback_before_the_parents(redis, processor):
    # Given
    parent = Batch(description="parent").on("success", RecordingCallback, {"which": "parent"})
    with parent.jobs():
        NestingJob.perform_later(3)

    # When
    run_all(processor)

    # Then
    [nesting] = [r for r in performed() if "child_bid" in r]
    child_status = BatchStatus(nesting["child_bid"])
    assert child_status.parent_bid == parent.bid
    assert [(c["options"]["which"], c["event"]) for c in callbacks()] == [("child", "success"), ("parent", "success")]


@worker_db
def test_the_issues_example_calls_on_success_once(redis, processor):
    # Given
    from tests.testapp.unique_batch_jobs import ParentJob

    ParentJob.perform_later([11, 12, 13])

    # When
    run_all(processor)

    # Then
    assert sorted(c["event"] for c in callbacks()) == ["complete", "success"]
    success = next(c for c in callbacks() if c["event"] == "success")
    assert success["options"] == {"user_ids": [11, 12, 13]}
    assert success["total"] == 3
    assert sorted(r["args"][0] for r in performed() if r.get("bid")) == [11, 12, 13]


@worker_db
def test_replaced_unique_job_is_not_waited_for_by_its_batch(redis, processor):
    # Given
    from tests.testapp.unique_batch_jobs import ReplaceOnConflictJob

    batch = Batch().on("success", RecordingCallback)
    with batch.jobs():
        ReplaceOnConflictJob.perform_later("k", 0)
    ReplaceOnConflictJob.perform_later("k", 0)  # replaces the batch's job, outside the batch

    # When
    run_all(processor)

    # Then
    assert events_of(batch.bid) == ["success"]
    assert len(performed()) == 1


@worker_db
def test_callback_that_cannot_be_resolved_in_the_worker_goes_to_the_dead_set(redis, processor, monkeypatch):
    # Given: a callback whose module the worker does not have
    fake = types.ModuleType("tests.fake_callback_module")

    class Gone:
        def on_success(self, status, options):
            pass

    Gone.__module__, Gone.__qualname__ = fake.__name__, "Gone"
    fake.Gone = Gone
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    batch = Batch().on("success", Gone)
    with batch.jobs():
        pass
    monkeypatch.delitem(sys.modules, fake.__name__)

    # When
    run_all(processor)

    # Then
    [dead] = [json.loads(raw) for raw in redis.zrange("dead", 0, -1)]
    assert dead["class"] == CALLBACK_JOB_NAME
    assert "not imported" in dead["dead_reason"]


@worker_db
def test_poison_job_buried_when_its_worker_died_counts_as_a_death_of_its_batch(redis, processor, settings):
    # Given: MAX_CRASHES 1, and a batch child that a worker started and then died running
    from django_bgjobs.worker.launcher import Launcher

    settings.BGJOBS = {**settings.BGJOBS, "MAX_CRASHES": 1}
    batch = Batch().on("death", RecordingCallback).on("complete", RecordingCallback)
    with batch.jobs():
        jid = BatchChildJob.perform_later("poison").jid
    victim = Launcher(queues=["default"], concurrency=1, schedule=False)
    victim.beat()
    victim.fetcher.fetch(block=False)
    redis.hset(keys.crashes(), f"{jid}:by", victim.identity)
    redis.delete(keys.process(victim.identity))

    # When
    Launcher(queues=["default"], concurrency=1, schedule=False).recover_orphans()

    # Then: in the dead set, and its batch knows
    assert [json.loads(raw)["jid"] for raw in redis.zrange("dead", 0, -1)] == [jid]
    status = batch.status()
    assert (status.dead, status.complete) == (1, True)
    assert sorted(p["args"][1] for p in callback_payloads(redis)) == ["complete", "death"]


@worker_db
def test_batch_keys_and_callbacks_take_the_key_prefix(redis, settings):
    # Given
    settings.BGJOBS = {**settings.BGJOBS, "KEY_PREFIX": "app"}
    redis.hset(keys.process(IDENTITY), "beat", 1)
    processor = Processor(Fetcher(IDENTITY, QueueOrder(["default"])))
    batch = Batch().on("success", RecordingCallback)
    with batch.jobs():
        BatchChildJob.perform_bulk([(1,), (2,)])

    # When
    run_all(processor)

    # Then
    assert events_of(batch.bid) == ["success"]
    assert redis.hget(f"app:b-{batch.bid}", "success_at")
    assert redis.keys("b-*") == [] and redis.zcard("app:batches") == 1
