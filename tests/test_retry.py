"""django_bgjobs.retry: what a failed attempt turns into (retry set, dead set, nothing), as in Sidekiq.

Each test takes a real payload the way the worker does (pushed by ``perform_later``,
moved into an in-flight list), runs it through ``execution``, and hands the failure to its
unit of work (``UnitOfWork.fail``, which calls ``retry.fail``), then reads Redis.
"""

import base64
import datetime
import json
import threading

import pytest
import redis as redis_lib
from django.conf import settings
from django.test import override_settings

from django_bgjobs import Discard, Job, Retry, RetryOn, execution, keys, retry, signals
from django_bgjobs.connection import get_redis
from django_bgjobs.errors import InvalidPayloadError, UniqueJobRejected, UnknownJobError
from django_bgjobs.job_end import Outcome
from django_bgjobs.payload import backtrace_lines, dumps, loads, now_s
from tests.helpers import unit_in_flight, wait_until
from tests.testapp.jobs import FailingJob, JobFailure, NoopJob, NoRetryJob

IDENTITY = "test-host:1:0123456789ab"
ACK = keys.inflight(IDENTITY, "default")
EXHAUSTED = []


class DecidingJob(Job):
    """Fails; its ``retry_in`` answers what its first argument says."""

    def perform(self, answer):
        raise JobFailure(f"deciding {answer!r}")

    def retry_in(self, count, exception):
        answer = self.payload["args"][0]
        if answer == "raise":
            raise RuntimeError("retry_in is broken")
        if isinstance(answer, dict):
            return datetime.timedelta(**answer)
        return answer


class ExhaustibleJob(Job):
    """Fails; records each ``retries_exhausted`` call, and breaks in it when asked to."""

    retry = 1

    def perform(self, hook_raises=False):
        raise JobFailure("exhaustible")

    def retries_exhausted(self, job, exception):
        EXHAUSTED.append((job, exception))
        if job["args"] and job["args"][0]:
            raise RuntimeError("the hook itself failed")


class RetryRaisingJob(Job):
    def perform(self, wait):
        raise Retry("not yet", wait=wait)


class DiscardRaisingJob(Job):
    def perform(self):
        raise Discard("stale")


@pytest.fixture(autouse=True)
def _forget_hook_calls():
    EXHAUSTED.clear()


def fetch(redis, job_class, *args, **options):
    """Enqueue for real, then move the payload into an in-flight list as the worker's fetch does."""
    (job_class.set(**options) if options else job_class).perform_later(*args)
    return redis.lmove("queue:default", ACK, "RIGHT", "LEFT")


def refetch(redis, raw, from_key="retry"):
    """Take ``raw`` out of the retry set into the in-flight list again (what the poller + fetch do)."""
    assert redis.zrem(from_key, raw) == 1
    redis.lpush(ACK, raw)
    return raw


def attempt(raw):
    """Run ``raw`` as the worker does and hand its failure to its unit of work; return the outcome."""
    unit = unit_in_flight(raw, IDENTITY)
    job = None
    try:
        job, args, kwargs = execution.instantiate(unit.payload)
        execution.run(job, args, kwargs)
    except Exception as exc:
        return unit.fail(exc, job)
    raise AssertionError("the job did not fail")


def entries(redis, key):
    """[(payload dict, score)] of a sorted set, lowest score first."""
    return [(json.loads(raw), score) for raw, score in redis.zrange(key, 0, -1, withscores=True)]


# -- the first failures ------------------------------------------------------------------------


def test_first_failure_goes_to_retry_set_with_count_zero_when_retries_remain(redis):
    # Given
    raw = fetch(redis, FailingJob, "boom")

    # When
    before = now_s()
    outcome = attempt(raw)
    after = now_s()

    # Then
    assert outcome == Outcome.RETRIED
    [(payload, score)] = entries(redis, "retry")
    assert payload["retry_count"] == 0
    assert before <= payload["failed_at"] <= after
    assert "retried_at" not in payload
    assert payload["error_class"] == "tests.testapp.jobs.JobFailure"
    assert payload["error_message"] == "boom"
    assert any("raise JobFailure(message)" in line for line in backtrace_lines(payload["error_backtrace"]))
    assert before + 15 <= score <= after + 25
    assert redis.llen(ACK) == 0
    assert payload["jid"] == loads(raw)["jid"]


def test_second_failure_counts_one_and_keeps_failed_at_when_job_fails_again(redis):
    # Given
    raw = fetch(redis, FailingJob)
    attempt(raw)
    [(first, _)] = entries(redis, "retry")
    raw = refetch(redis, dumps(first))

    # When
    before = now_s()
    attempt(raw)
    after = now_s()

    # Then: count 1 waits 1**4 + 15 + up to 20 seconds
    [(payload, score)] = entries(redis, "retry")
    assert payload["retry_count"] == 1
    assert payload["failed_at"] == first["failed_at"]
    assert before <= payload["retried_at"] <= after
    assert before + 16 <= score <= after + 36
    assert redis.llen(ACK) == 0


def test_builtin_error_class_is_stored_without_module_when_perform_raises_it(redis):
    class KeyErrorJob(Job):
        def perform(self):
            return {}["missing"]

    attempt(fetch(redis, KeyErrorJob))

    [(payload, _)] = entries(redis, "retry")
    assert payload["error_class"] == "KeyError"


def test_failure_is_not_counted_twice_when_its_write_is_retried_after_a_redis_error(redis):
    # Given: the first MULTI that ends the job fails (the retry set is not a sorted set) ...
    raw = fetch(redis, FailingJob)
    unit = unit_in_flight(raw, IDENTITY)
    job, args, kwargs = execution.instantiate(unit.payload)
    with pytest.raises(JobFailure) as failure:
        execution.run(job, args, kwargs)
    redis.set("retry", "in the way")

    def clear_the_way():  # ... until the key is fixed, after that first try
        wait_until(lambda: redis.llen(ACK) == 0, message="the first MULTI")
        redis.delete("retry")

    fixer = threading.Thread(target=clear_the_way)
    fixer.start()

    # When: the unit of work retries its write until Redis takes it
    outcome = unit.fail(failure.value, job)
    fixer.join(10)

    # Then: the decision was taken once and written once
    assert outcome == Outcome.RETRIED
    [(stored, _)] = entries(redis, "retry")
    assert stored["retry_count"] == 0
    assert "retry_count" not in unit.payload


# -- retry_in answers --------------------------------------------------------------------------


@pytest.mark.parametrize(("answer", "delay_s"), [(120, 120), (0.5, 0.5), ({"minutes": 5}, 300), (-10, 0)])
def test_retry_set_score_follows_retry_in_when_it_returns_a_delay(redis, answer, delay_s):
    # When
    before = now_s()
    outcome = attempt(fetch(redis, DecidingJob, answer))
    after = now_s()

    # Then
    assert outcome == Outcome.RETRIED
    [(_, score)] = entries(redis, "retry")
    assert before + delay_s <= score <= after + delay_s


@pytest.mark.parametrize("answer", [None, "raise", "soon", [1]])
def test_default_backoff_is_used_when_retry_in_returns_none_raises_or_returns_junk(redis, answer):
    before = now_s()
    attempt(fetch(redis, DecidingJob, answer))
    after = now_s()

    [(_, score)] = entries(redis, "retry")
    assert before + 15 <= score <= after + 25


def test_job_goes_to_dead_set_and_hook_runs_when_retry_in_returns_kill(redis):
    class KilledJob(Job):
        def perform(self):
            raise JobFailure("kill me")

        def retry_in(self, count, exception):
            return "kill"

        def retries_exhausted(self, job, exception):
            EXHAUSTED.append((job, exception))

    # When
    outcome = attempt(fetch(redis, KilledJob))

    # Then
    assert outcome == Outcome.DEAD
    [(payload, _)] = entries(redis, "dead")
    assert payload["dead_reason"] == "retry_in returned 'kill'"
    assert redis.zcard("retry") == 0 and redis.llen(ACK) == 0
    assert len(EXHAUSTED) == 1


def test_job_is_dropped_when_retry_in_returns_discard(redis):
    outcome = attempt(fetch(redis, DecidingJob, "discard"))

    assert outcome == Outcome.DISCARDED
    assert redis.zcard("retry") == redis.zcard("dead") == redis.llen(ACK) == 0


def test_retry_wait_sets_the_delay_when_perform_raises_retry(redis):
    before = now_s()
    outcome = attempt(fetch(redis, RetryRaisingJob, 42))

    assert outcome == Outcome.RETRIED
    [(payload, score)] = entries(redis, "retry")
    assert before + 42 <= score <= now_s() + 42
    assert payload["error_class"] == "django_bgjobs.errors.Retry"


def test_job_is_dropped_without_dead_entry_when_perform_raises_discard(redis):
    outcome = attempt(fetch(redis, DiscardRaisingJob))

    assert outcome == Outcome.DISCARDED
    assert redis.zcard("retry") == redis.zcard("dead") == redis.llen(ACK) == 0


# -- running out of retries --------------------------------------------------------------------


def test_job_goes_straight_to_dead_set_when_retry_is_zero(redis):
    # When
    outcome = attempt(fetch(redis, ExhaustibleJob, retry=0))

    # Then
    assert outcome == Outcome.DEAD
    [(payload, _)] = entries(redis, "dead")
    assert payload["retry_count"] == 0
    assert payload["dead_reason"] == "retries exhausted (0 of 0)"
    assert redis.zcard("retry") == 0 and redis.llen(ACK) == 0


def test_job_is_dropped_without_dead_entry_when_retry_is_false(redis):
    outcome = attempt(fetch(redis, NoRetryJob))

    assert outcome == Outcome.DISCARDED
    assert redis.zcard("retry") == redis.zcard("dead") == redis.llen(ACK) == 0


def test_retries_exhausted_is_called_once_with_the_payload_when_last_retry_fails(redis):
    # Given: retry = 1, so one retry then the dead set
    assert attempt(fetch(redis, ExhaustibleJob)) == Outcome.RETRIED
    assert EXHAUSTED == []
    [(first, _)] = entries(redis, "retry")

    # When
    outcome = attempt(refetch(redis, dumps(first)))

    # Then
    assert outcome == Outcome.DEAD
    [(job_payload, exception)] = EXHAUSTED
    assert job_payload["jid"] == first["jid"] and job_payload["retry_count"] == 1
    assert isinstance(exception, JobFailure)
    [(dead, _)] = entries(redis, "dead")
    assert dead["dead_reason"] == "retries exhausted (1 of 1)"
    assert redis.zcard("retry") == 0


def test_job_still_goes_to_dead_set_when_retries_exhausted_raises(redis, caplog):
    outcome = attempt(fetch(redis, ExhaustibleJob, True, retry=0))

    assert outcome == Outcome.DEAD
    assert len(EXHAUSTED) == 1
    assert redis.zcard("dead") == 1
    assert "retries_exhausted raised" in caplog.text


def test_max_retries_setting_applies_when_job_retry_is_true(redis):
    with override_settings(BGJOBS={**settings.BGJOBS, "MAX_RETRIES": 0}):
        assert attempt(fetch(redis, FailingJob)) == Outcome.DEAD


def test_payload_that_cannot_run_goes_to_dead_set_at_once_when_args_do_not_fit(redis):
    # Given: a payload whose arguments do not fit perform(), whatever its retries
    raw = fetch(redis, NoopJob)
    payload = loads(raw)
    payload["class"] = "tests.testapp.jobs.ReturnJob"  # perform(self, value) but no args
    redis.lset(ACK, 0, dumps(payload))
    raw = redis.lindex(ACK, 0)

    # When
    outcome = attempt(raw)

    # Then
    assert outcome == Outcome.DEAD
    [(dead, _)] = entries(redis, "dead")
    assert dead["error_class"] == "django_bgjobs.errors.InvalidPayloadError"
    assert "arguments do not fit" in dead["dead_reason"]
    assert redis.llen(ACK) == 0


# -- the dead set ------------------------------------------------------------------------------


def test_dead_set_keeps_newest_jobs_when_it_passes_dead_max_jobs(redis):
    # Given
    with override_settings(BGJOBS={**settings.BGJOBS, "DEAD_MAX_JOBS": 3}):
        jids = []
        for _ in range(5):
            raw = fetch(redis, FailingJob, retry=0)
            jids.append(loads(raw)["jid"])

            # When
            attempt(raw)

    # Then
    assert [payload["jid"] for payload, _ in entries(redis, "dead")] == jids[2:]


def test_dead_set_drops_jobs_older_than_dead_timeout_when_a_job_dies(redis):
    # Given
    now = now_s()
    redis.zadd("dead", {"too-old": now - 120, "recent": now - 30})

    # When
    with override_settings(BGJOBS={**settings.BGJOBS, "DEAD_TIMEOUT_S": 60}):
        attempt(fetch(redis, FailingJob, retry=0))

    # Then
    members = redis.zrange("dead", 0, -1)
    assert "too-old" not in members and "recent" in members and len(members) == 2


# -- atomicity and unreadable payloads -------------------------------------------------------


def test_ack_and_retry_entry_are_written_in_one_multi_when_job_fails(redis, redis_url):
    # Given
    class QuietFailJob(Job):
        def perform(self):
            raise JobFailure("quiet")

    raw = fetch(redis, QuietFailJob)
    watcher = redis_lib.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)

    # When: watch every command the server runs
    with watcher.monitor() as monitor:
        attempt(raw)
        commands = []
        while not commands or commands[-1] != "EXEC":
            commands.append(monitor.next_command()["command"].split(" ", 1)[0].upper())

    # Then
    assert commands == ["MULTI", "ZADD", "LREM", "EXEC"]
    watcher.close()


def test_ack_retry_entry_lock_and_batch_writes_are_one_multi_when_a_locked_batch_job_fails(redis, redis_url):
    # Given: a job with an until_executed lock, in a batch
    from django_bgjobs import Batch
    from tests.testapp.unique_batch_jobs import FlakyUniqueJob

    with Batch().jobs():
        FlakyUniqueJob.perform_later("k", 1)
    raw = redis.lmove("queue:default", ACK, "RIGHT", "LEFT")
    watcher = redis_lib.Redis.from_url(redis_url, decode_responses=True, socket_timeout=5)

    # When
    with watcher.monitor() as monitor:
        attempt(raw)
        commands = []
        while not commands or commands[-1] != "EXEC":
            seen = monitor.next_command()
            command = seen["command"].split(" ", 1)[0].upper()
            if seen.get("client_type") != "lua" and (commands or command == "MULTI"):  # not a script's own
                commands.append(command)

    # Then: the retry entry, the lock's new TTL, the batch's failure and the removal from
    # the in-flight list, all or nothing
    assert commands == ["MULTI", "ZADD", "EVALSHA", "EVALSHA", "LREM", "EXEC"]
    assert redis.zcard("retry") == 1 and redis.llen(ACK) == 0
    watcher.close()


def test_unreadable_bytes_go_to_dead_set_with_original_preserved_when_payload_is_not_utf8(redis):
    # Given
    client = get_redis()  # returns bytes
    garbage = b"\xff\xfe\x00 not a payload"
    client.lpush(ACK, garbage)
    with pytest.raises(InvalidPayloadError) as failure:
        loads(garbage)

    # When
    outcome = unit_in_flight(garbage, IDENTITY).fail(failure.value)

    # Then
    assert outcome == Outcome.DEAD
    [(wrapper, _)] = entries(redis, "dead")
    assert wrapper["class"] == "django_bgjobs.UnreadablePayload"
    assert wrapper["original_encoding"] == "base64"
    assert base64.b64decode(wrapper["original_payload"]) == garbage
    assert wrapper["queue"] == "default"
    assert wrapper["retry"] is False
    assert wrapper["error_class"] == "django_bgjobs.errors.InvalidPayloadError"
    assert "not UTF-8" in wrapper["dead_reason"]
    assert client.llen(ACK) == 0


def test_unreadable_text_is_kept_as_text_when_payload_is_not_json(redis):
    # Given
    garbage = '{"class": "Broken", "args": ['
    redis.lpush(ACK, garbage)
    with pytest.raises(InvalidPayloadError) as failure:
        loads(garbage)

    # When
    unit_in_flight(garbage, IDENTITY).fail(failure.value)

    # Then
    [(wrapper, _)] = entries(redis, "dead")
    assert (wrapper["original_encoding"], wrapper["original_payload"]) == ("utf-8", garbage)
    assert redis.llen(ACK) == 0


# -- signals and backoff -----------------------------------------------------------------------


def test_retried_and_died_signals_are_sent_when_job_is_retried_then_dies(redis):
    # Given
    seen = []

    def on_retried(sender, **kwargs):
        seen.append(("retried", sender, kwargs["payload"]["retry_count"], kwargs["retry_at"]))

    def on_died(sender, **kwargs):
        seen.append(("died", sender, kwargs["payload"]["retry_count"], kwargs["reason"]))

    signals.job_retried.connect(on_retried)
    signals.job_died.connect(on_died)
    try:
        # When
        attempt(fetch(redis, ExhaustibleJob))
        [(first, score)] = entries(redis, "retry")
        attempt(refetch(redis, dumps(first)))
    finally:
        signals.job_retried.disconnect(on_retried)
        signals.job_died.disconnect(on_died)

    # Then
    assert seen == [
        ("retried", ExhaustibleJob, 0, score),
        ("died", ExhaustibleJob, 1, "retries exhausted (1 of 1)"),
    ]


@pytest.mark.parametrize("count", [0, 1, 5, 24])
def test_backoff_is_count_to_the_fourth_plus_15_plus_jitter_when_computed(count):
    delays = [retry.backoff_s(count) for _ in range(500)]

    low = count**4 + 15
    assert all(low <= delay <= low + 10 * (count + 1) for delay in delays)
    assert max(delays) - min(delays) > 10 * (count + 1) / 2  # jitter spreads retries out


# -- the decision, as a pure function ----------------------------------------------------------
# retry.decide(job, exc, count) reads the job's class, its retry_in and its payload's retry
# option, the exception and the count; it writes nothing and sends nothing.


class NetworkError(Exception):
    pass


class DeclaringJob(Job):
    retry = 0  # retry_on governs alone when it matches
    retry_on = [RetryOn(NetworkError, wait=7, attempts=3)]
    discard_on = [LookupError]

    def perform(self):
        pass


def made(job_class, **payload):
    """An instance of ``job_class`` as the worker makes it, with ``payload``'s options."""
    job = job_class()
    job.jid = "d" * 24
    job.payload = {"class": job_class.name, "args": [], "jid": job.jid, "retry": True, **payload}
    return job


@pytest.mark.parametrize("count", [0, 1, 5, 24])
def test_decide_retries_within_the_default_backoff_when_nothing_else_says(count):
    decision = retry.decide(made(FailingJob), JobFailure("x"), count)

    assert decision == retry.RetryIn(count**4 + 15, count**4 + 15 + 10 * (count + 1), f"retry {count + 1} of 25")
    assert decision.shortest_s <= decision.wait_s() <= decision.longest_s
    assert retry.backoff_s(count, jitter=False) == decision.longest_s
    assert decision.outcome is Outcome.RETRIED


@pytest.mark.parametrize(("answer", "expected"), [
    (120, retry.RetryIn(120, 120, "retry 1 of 25")),
    ({"minutes": 5}, retry.RetryIn(300, 300, "retry 1 of 25")),
    (-10, retry.RetryIn(0, 0, "retry 1 of 25")),
    ("junk", retry.RetryIn(15, 25, "retry 1 of 25")),
    pytest.param(10**400, retry.RetryIn(15, 25, "retry 1 of 25"), id="10**400"),  # past float range: the default backoff
    (float("inf"), retry.RetryIn(15, 25, "retry 1 of 25")),
    (float("nan"), retry.RetryIn(15, 25, "retry 1 of 25")),
    ("kill", retry.Dead("retry_in returned 'kill'", exhausted=True)),
    ("discard", retry.Discarded("retry_in returned 'discard'")),
])
def test_decide_follows_what_retry_in_answers(answer, expected):
    assert retry.decide(made(DecidingJob, args=[answer]), JobFailure("x"), 0) == expected


def test_decide_waits_what_a_raised_retry_says():
    assert retry.decide(made(RetryRaisingJob), Retry("not yet", wait=42), 3) == retry.RetryIn(42, 42, "retry 4 of 25")


def test_decide_follows_retry_on_and_discard_on_whatever_retry_says():
    job = made(DeclaringJob, retry=0)

    assert retry.decide(job, NetworkError(), 0) == retry.RetryIn(7, 7, "retry_on, after attempt 1")
    assert retry.decide(job, NetworkError(), 2) == retry.Dead("retry_on/discard_on returned 'kill'", exhausted=True)
    assert retry.decide(job, KeyError("gone"), 0) == retry.Discarded("retry_on/discard_on returned 'discard'")
    assert retry.decide(job, ValueError(), 0) == retry.Dead("retries exhausted (0 of 0)", exhausted=True)


@pytest.mark.parametrize(("option", "count", "expected"), [
    (False, 0, retry.Discarded("retry is off for this job")),
    (0, 0, retry.Dead("retries exhausted (0 of 0)", exhausted=True)),
    (2, 1, retry.RetryIn(16, 36, "retry 2 of 2")),
    (2, 2, retry.Dead("retries exhausted (2 of 2)", exhausted=True)),
    (True, 25, retry.Dead("retries exhausted (25 of 25)", exhausted=True)),
])
def test_decide_gives_up_when_retry_is_off_or_used_up(option, count, expected):
    assert retry.decide(made(FailingJob, retry=option), JobFailure("x"), count) == expected


@pytest.mark.parametrize("exc", [
    InvalidPayloadError("arguments do not fit"), UnknownJobError("no such job"), UniqueJobRejected("run lock held"),
])
def test_decide_buries_a_payload_that_can_never_run_at_once(exc):
    assert retry.decide(made(FailingJob), exc, 0) == retry.Dead(str(exc))
    assert retry.decide(None, exc, 0) == retry.Dead(str(exc))


def test_decide_drops_a_job_that_raised_discard_and_applies_the_defaults_without_a_job():
    assert retry.decide(made(FailingJob), Discard("stale"), 0) == retry.Discarded("Discard raised")
    assert retry.decide(None, JobFailure("x"), 2) == retry.RetryIn(31, 61, "retry 3 of 25")


@pytest.mark.parametrize(("payload", "exc"), [
    ({}, JobFailure("first")),
    ({"retry_count": 3}, JobFailure("again")),
    ({"retry_count": 1, "retry": 2}, JobFailure("last")),
    ({"retry": False}, JobFailure("off")),
    ({}, Retry("later", wait=90)),
    ({}, Discard("stale")),
    ({}, InvalidPayloadError("bad")),
])
def test_a_django_tasks_retry_plan_is_the_retry_rules_decision(payload, exc):
    # Given: a task's job as the worker makes it
    from django_bgjobs.tasks import TaskJob

    job = made(TaskJob, **payload)
    count = payload["retry_count"] + 1 if "retry_count" in payload else 0

    # When
    will_retry, wait_s = job._retry_plan(exc)

    # Then: it retries exactly when the worker will, for at most the longest wait
    decision = retry.decide(job, exc, count)
    assert will_retry == isinstance(decision, retry.RetryIn)
    assert wait_s == (decision.longest_s if will_retry else 0)
