"""ActiveJob-style hooks and declarations on Job: before/around/after perform, before/after
enqueue, retry_on and discard_on."""

import json

import pytest
from django.db import transaction

from django_bgjobs import ConfigurationError, Discard, Job, RetryOn
from django_bgjobs.execution import instantiate, perform_inline, run
from django_bgjobs.payload import loads
from tests.helpers import unit_in_flight

EVENTS = []


class NetworkError(Exception):
    pass


class HookedJob(Job):
    name = "tests.callbacks.Hooked"

    def before_perform(self):
        EVENTS.append(("before", self.jid is not None))
        if self.payload["args"] == ["skip"]:
            raise Discard("not today")

    def around_perform(self, perform):
        EVENTS.append("around-in")
        result = perform()
        EVENTS.append("around-out")
        return result * 2

    def after_perform(self):
        EVENTS.append("after")

    def perform(self, value):
        EVENTS.append(("perform", value))
        if value == "boom":
            raise NetworkError("down")
        return 21


class EnqueueHookJob(Job):
    name = "tests.callbacks.EnqueueHook"

    @classmethod
    def before_enqueue(cls, payload):
        if payload["args"] == [0]:
            raise Discard("zero is not welcome")
        payload["tenant"] = "acme"

    @classmethod
    def after_enqueue(cls, payload):
        EVENTS.append(("enqueued", payload["jid"]))

    def perform(self, n):
        pass


class RetryOnJob(Job):
    name = "tests.callbacks.RetryOn"
    retry = 0  # retry_on governs alone when it matches
    retry_on = [RetryOn(NetworkError, wait=7, attempts=3)]
    discard_on = [LookupError]

    def perform(self, kind):
        raise {"network": NetworkError, "lookup": KeyError, "other": ValueError}[kind]("x")


@pytest.fixture(autouse=True)
def clear_events():
    EVENTS.clear()


def attempt(redis, job_class, *args):
    """Push one job, take it into an in-flight list, run it once and end its unit of work."""
    handle = job_class.perform_later(*args)
    raw = redis.rpoplpush("queue:default", "inflight:test:default")
    unit = unit_in_flight(raw.encode(), "test")
    job, a, k = instantiate(unit.payload)
    try:
        run(job, a, k)
    except Exception as exc:
        return unit.fail(exc, job), handle
    return "succeeded", handle


def test_perform_hooks_run_in_activejob_order_and_around_sees_the_result(redis):
    payload = loads(json.dumps({"class": HookedJob.name, "args": ["x"], "jid": "a" * 24, "queue": "default"}))
    assert perform_inline(payload) == 42
    assert EVENTS == [("before", True), "around-in", ("perform", "x"), "around-out", "after"]


def test_after_perform_is_skipped_when_perform_raises(redis):
    payload = loads(json.dumps({"class": HookedJob.name, "args": ["boom"], "jid": "b" * 24, "queue": "default"}))
    with pytest.raises(NetworkError):
        perform_inline(payload)
    assert "after" not in EVENTS and "around-out" not in EVENTS


def test_before_perform_discard_drops_the_job_without_running_it(redis):
    outcome, _ = attempt(redis, HookedJob, "skip")
    assert outcome == "discarded"
    assert ("perform", "skip") not in EVENTS
    assert redis.zcard("retry") == redis.zcard("dead") == redis.llen("inflight:test:default") == 0


def test_before_enqueue_changes_the_payload_and_discard_leaves_a_none_in_place(redis):
    handles = EnqueueHookJob.perform_bulk([(1,), (0,), (2,)])
    assert handles[1] is None and handles[0] is not None and handles[2] is not None
    stored = [json.loads(raw) for raw in redis.lrange("queue:default", 0, -1)]
    assert sorted(p["args"][0] for p in stored) == [1, 2]
    assert all(p["tenant"] == "acme" for p in stored)
    assert EnqueueHookJob.perform_later(0) is None


@pytest.mark.django_db(transaction=True)
def test_after_enqueue_runs_after_the_commit_when_deferred(redis):
    with transaction.atomic():
        handle = EnqueueHookJob.perform_later(5)
        assert EVENTS == [] and redis.llen("queue:default") == 0
    assert EVENTS == [("enqueued", handle.jid)]


def test_jobs_without_hooks_are_flagged_so_they_skip_them():
    class Plain(Job):
        name = "tests.callbacks.Plain"

        def perform(self):
            pass

    assert (Plain._has_perform_callbacks, Plain._has_enqueue_callbacks) == (False, False)
    assert (HookedJob._has_perform_callbacks, HookedJob._has_enqueue_callbacks) == (True, False)
    assert EnqueueHookJob._has_enqueue_callbacks is True


def test_retry_on_retries_after_its_wait_then_kills_after_its_attempts(redis):
    # Given retry = 0, which alone would send the first failure to the dead set
    outcome, handle = attempt(redis, RetryOnJob, "network")
    # Then the matching retry_on retries it after 7 s
    assert outcome == "retried"
    ((raw, score),) = redis.zrange("retry", 0, -1, withscores=True)
    assert abs(score - json.loads(raw)["failed_at"] - 7) < 0.5
    # When it fails on attempts 2 and 3
    for expected in ("retried", "dead"):
        redis.zrem("retry", raw)
        redis.lpush("inflight:test:default", raw)
        unit = unit_in_flight(raw.encode(), "test")
        job, a, k = instantiate(unit.payload)
        with pytest.raises(NetworkError) as info:
            run(job, a, k)
        assert unit.fail(info.value, job) == expected
        if expected == "retried":
            (raw,) = redis.zrange("retry", 0, -1)
    # Then the third attempt was the last
    (dead,) = redis.zrange("dead", 0, -1)
    assert json.loads(dead)["jid"] == handle.jid and "retry_on/discard_on" in json.loads(dead)["dead_reason"]


def test_discard_on_drops_and_other_errors_follow_retry(redis):
    assert attempt(redis, RetryOnJob, "lookup")[0] == "discarded"
    assert attempt(redis, RetryOnJob, "other")[0] == "dead"  # retry = 0, no declaration matches
    assert redis.zcard("retry") == 0 and redis.zcard("dead") == 1


@pytest.mark.parametrize("attrs, message", [
    ({"retry_on": RetryOn(ValueError)}, "must be a list"),
    ({"retry_on": [ValueError]}, "use RetryOn"),
    ({"discard_on": ["ValueError"]}, "not an exception class"),
])
def test_bad_declarations_fail_at_class_creation(attrs, message):
    with pytest.raises(ConfigurationError, match=message):
        type("BadJob", (Job,), {"name": "tests.callbacks.Bad", "perform": lambda self: None, **attrs})


def test_retry_on_checks_its_own_arguments():
    with pytest.raises(ValueError):
        RetryOn()
    with pytest.raises(ValueError):
        RetryOn(ValueError, attempts=0)
    with pytest.raises(ValueError):
        RetryOn(ValueError, wait="soon")
    for huge in (10**400, float("inf"), float("nan"), -1):
        with pytest.raises(ValueError, match="RetryOn wait must be seconds >= 0 \\(at most 100 years\\)"):
            RetryOn(ValueError, wait=huge)
    assert RetryOn(ValueError, wait="polynomially_longer").delay_s(2) == 18.0
