"""django_bgjobs.worker.processor: run one fetched job, acknowledge it, retry it or bury it.

Each test drives :meth:`Processor.process_one` (``block=False``) in the test's own thread;
no worker thread is started.
"""

import base64
import json
import time

import pytest
import redis as redis_lib
from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteDatabaseWrapper

from django_bgjobs import Job, keys
from django_bgjobs.connection import get_redis
from django_bgjobs.worker.fetcher import Fetcher
from django_bgjobs.worker.poller import Poller
from django_bgjobs.worker.processor import Processor
from django_bgjobs.worker.queues import QueueOrder
from tests.helpers import dead_entries, drain, free_port
from tests.testapp.jobs import FailingJob, JobFailure, NoRetryJob, RecordJob, ReturnJob, performed, record

# The processor recycles Django's database connections around every job, as in production;
# transaction=True because perform_later inside an open transaction waits for its commit.
pytestmark = pytest.mark.django_db(transaction=True)

IDENTITY = "test-host:4242:processor"
INFLIGHT_DEFAULT = f"inflight:{IDENTITY}:default"
FAR_FUTURE_S = 4_000_000_000  # a fixed "now" at which every retry is due


class InflightProbeJob(Job):
    """Records what this test's in-flight list holds while ``perform`` runs."""

    def perform(self):
        record(self.jid, [raw.decode() for raw in get_redis().lrange(keys.inflight(IDENTITY, "default"), 0, -1)])


class ExhaustingJob(Job):
    """Always fails; counts calls of ``retries_exhausted`` in ``test:exhausted``."""

    def perform(self):
        record(self.jid, [], failed=True)
        raise JobFailure("ExhaustingJob fails")

    def retries_exhausted(self, job, exception):
        get_redis().rpush("test:exhausted", json.dumps({"retry_count": job["retry_count"], "error": str(exception)}))


class InterruptedJob(Job):
    """Raises KeyboardInterrupt, as a worker being killed with Ctrl-C would inside ``perform``."""

    def perform(self):
        raise KeyboardInterrupt


class ExitingJob(Job):
    """Calls ``sys.exit`` inside ``perform``, as a script turned into a job might."""

    def perform(self):
        raise SystemExit(2)


class DatabaseJob(Job):
    """Records whether this thread's connection was closed when ``perform`` began, then queries."""

    def perform(self):
        from django.db import connection

        record(self.jid, [connection.connection is None])
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")


@pytest.fixture
def processor():
    return Processor(Fetcher(IDENTITY, QueueOrder(["critical", "default", "low"])))


def retry_entries(redis):
    return [json.loads(raw) for raw in redis.zrange("retry", 0, -1)]


# -- success and acknowledgement -----------------------------------------------------------


def test_process_one_runs_the_job_and_removes_it_from_flight_when_it_succeeds(redis, processor):
    # Given
    jid = RecordJob.perform_later("hello", 2**62 + 1).jid

    # When
    ran = processor.process_one(block=False)

    # Then
    assert ran is True
    assert performed() == [{"jid": jid, "args": ["hello", 2**62 + 1]}]
    assert redis.llen("queue:default") == 0
    assert redis.keys("inflight:*") == []
    assert (processor.processed, processor.failed) == (1, 0)


def test_process_one_returns_false_when_every_queue_is_empty(redis, processor):
    assert processor.process_one(block=False) is False
    assert processor.processed == 0


def test_job_sits_in_the_inflight_list_while_it_runs(redis, processor):
    # Given
    InflightProbeJob.perform_later()

    # When
    processor.process_one(block=False)

    # Then: during perform the payload was in flight; after the ack it is gone
    [entry] = performed()
    assert [json.loads(raw)["jid"] for raw in entry["args"]] == [entry["jid"]]
    assert redis.llen(INFLIGHT_DEFAULT) == 0


def test_processor_reports_its_job_as_current_only_while_it_runs(redis, processor):
    # Given
    seen = []

    class CurrentProbeJob(Job):
        name = "tests.test_worker_processor.CurrentProbeJob"

        def perform(self):
            seen.append(processor.current)

    CurrentProbeJob.perform_later()

    # When
    processor.process_one(block=False)

    # Then
    [(queue, raw, run_at)] = seen
    assert queue == "default" and json.loads(raw)["class"] == CurrentProbeJob.name
    assert abs(run_at - time.time()) < 5
    assert processor.current is None


def test_job_stays_in_flight_when_perform_is_interrupted(redis, processor):
    # Given
    InterruptedJob.perform_later()

    # When
    with pytest.raises(KeyboardInterrupt):
        processor.process_one(block=False)

    # Then: left for the shutdown (or the next worker) to push back, not retried or buried
    assert redis.llen(INFLIGHT_DEFAULT) == 1
    assert redis.zcard("retry") == 0 and redis.zcard("dead") == 0


def test_system_exit_in_perform_fails_the_job_and_the_thread_goes_on(redis, processor):
    # Given
    ExitingJob.perform_later()
    jid = RecordJob.perform_later("next").jid

    # When
    processor.process_one(block=False)
    processor.process_one(block=False)

    # Then: retried like any failure; the thread (here: the test) was not ended by it
    [raw] = redis.zrange("retry", 0, -1)
    assert json.loads(raw)["error_class"] == "SystemExit"
    assert [entry["jid"] for entry in performed()] == [jid]
    assert redis.keys("inflight:*") == [] and (processor.processed, processor.failed) == (2, 1)


def test_process_one_returns_false_and_keeps_going_when_redis_is_unreachable():
    # Given: a client for a port where nothing listens
    client = redis_lib.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.5)
    processor = Processor(Fetcher(IDENTITY, QueueOrder(["default"]), client))

    # When
    ran = processor.process_one(block=False)

    # Then: the error is counted for the backoff instead of killing the thread
    assert ran is False
    assert processor._reconnect.errors == 1


# -- failure and retry ---------------------------------------------------------------------


def test_failed_job_moves_to_retry_and_leaves_flight_when_perform_raises(redis, processor):
    # Given
    jid = FailingJob.perform_later("disk full").jid
    before = time.time()

    # When
    processor.process_one(block=False)

    # Then
    [(raw, score)] = redis.zrange("retry", 0, -1, withscores=True)
    job = json.loads(raw)
    assert job["jid"] == jid and job["args"] == ["disk full"]
    assert job["retry_count"] == 0
    assert job["error_class"] == "tests.testapp.jobs.JobFailure"
    assert job["error_message"] == "disk full"
    assert before <= job["failed_at"] <= time.time()
    assert before + 15 <= score <= time.time() + 25  # Sidekiq's first backoff: 15 s + up to 10 s
    assert redis.keys("inflight:*") == [] and redis.llen("queue:default") == 0
    assert (processor.processed, processor.failed) == (1, 1)


def test_job_goes_to_dead_and_retries_exhausted_is_called_once_when_it_fails_retry_plus_one_times(redis, processor):
    # Given: retry=2 means the first attempt and two retries
    jid = ExhaustingJob.set(retry=2).perform_later().jid
    poller = Poller()

    # When: each failure goes to the retry set; the poller at a far-future clock brings it back
    attempts = 0
    while processor.process_one(block=False):
        attempts += 1
        assert attempts <= 5
        poller.enqueue_due(now=FAR_FUTURE_S)

    # Then
    assert attempts == 3
    assert [entry["jid"] for entry in performed()] == [jid] * 3
    assert redis.zcard("retry") == 0 and redis.llen("queue:default") == 0
    [dead] = dead_entries(redis)
    assert dead["jid"] == jid and dead["retry_count"] == 2
    assert dead["dead_reason"] == "retries exhausted (2 of 2)"
    assert dead["error_message"] == "ExhaustingJob fails"
    assert [json.loads(call) for call in redis.lrange("test:exhausted", 0, -1)] == [
        {"retry_count": 2, "error": "ExhaustingJob fails"},
    ]
    assert redis.keys("inflight:*") == []


def test_retry_count_goes_up_by_one_each_time_when_a_retried_job_fails_again(redis, processor):
    # Given
    FailingJob.perform_later("again")
    poller = Poller()

    # When
    counts = []
    for _ in range(3):
        processor.process_one(block=False)
        [job] = retry_entries(redis)
        counts.append(job["retry_count"])
        poller.enqueue_due(now=FAR_FUTURE_S)

    # Then
    assert counts == [0, 1, 2]


def test_failed_job_is_dropped_without_retry_or_dead_entry_when_retry_is_false(redis, processor):
    # Given
    NoRetryJob.perform_later()

    # When
    processor.process_one(block=False)

    # Then
    assert redis.zcard("retry") == 0 and redis.zcard("dead") == 0
    assert redis.keys("inflight:*") == []


# -- payloads that can never run -------------------------------------------------------------

TEN_MB = 10 * 1024 * 1024


def _nested(levels):
    value = 0
    for _ in range(levels):
        value = [value]
    return value


def _truncated_ten_mb(tmp_path):
    return '{"class":"tests.testapp.jobs.RecordJob","args":["' + "x" * TEN_MB


BAD_PAYLOADS = [
    # (id, build(tmp_path) -> raw, "fields" when the dead entry is the parsed payload / "original"
    #  when it wraps the raw text, a piece of the reason)
    ("invalid-json", lambda tmp: '{"class": "tests.testapp.jobs.RecordJob", "args": [1,', "original", "not valid JSON"),
    ("json-array", lambda tmp: '["tests.testapp.jobs.RecordJob", [1]]', "original", "JSON list, not an object"),
    ("no-class", lambda tmp: '{"args": [1], "jid": "c0ffee"}', "original", "no 'class' string"),
    ("args-not-a-list", lambda tmp: '{"class": "tests.testapp.jobs.RecordJob", "args": "1"}', "original",
     "'args' is not a list"),
    ("unknown-class", lambda tmp: '{"class": "no.such.Job", "args": [1], "jid": "c0ffee"}', "fields",
     "no registered Job is named 'no.such.Job'"),
    ("os-system", lambda tmp: json.dumps({"class": "os.system", "args": [f"touch {tmp / 'pwned'}"], "jid": "bad"}),
     "fields", "no registered Job is named 'os.system'"),
    ("wrong-arg-count", lambda tmp: json.dumps({"class": ReturnJob.name, "args": [1, 2], "jid": "c0ffee"}), "fields",
     "arguments do not fit"),
    ("unknown-arg-tag",
     lambda tmp: json.dumps({"class": RecordJob.name, "args": [{"__bgjobs__": "pickle", "value": 1}]}),
     "fields", "arguments cannot be decoded"),
    ("malformed-kwargs",
     lambda tmp: json.dumps({"class": RecordJob.name, "args": [{"__bgjobs__": "kwargs", "value": 5}]}),
     "fields", "arguments cannot be decoded"),
    ("binary-garbage", lambda tmp: b"\xff\xfe\x00\x80garbage\xc3\x28" + bytes(range(256)), "original", "not UTF-8"),
    ("ten-megabytes-truncated", _truncated_ten_mb, "original", "over BGJOBS['MAX_PAYLOAD_BYTES']"),
    ("ten-megabytes-valid", lambda tmp: json.dumps({"class": RecordJob.name, "args": ["x" * TEN_MB], "jid": "big"}),
     "original", "over BGJOBS['MAX_PAYLOAD_BYTES']"),
    ("retry-count-not-int", lambda tmp: '{"class": "no.such.Job", "args": [], "retry_count": "x"}', "original",
     "break the retry rules"),
    ("retry-not-a-number", lambda tmp: json.dumps({"class": FailingJob.name, "args": ["boom"], "retry": "abc"}),
     "original", "break the retry rules"),
    # Deep enough that decoding the arguments recursively would raise RecursionError (and retry)
    ("nested-950-deep", lambda tmp: json.dumps({"class": RecordJob.name, "args": [_nested(950)], "jid": "deep"}),
     "original", "nested deeper than MAX_NESTING_DEPTH (100) levels"),
    ("nested-100k-deep", lambda tmp: '{"class": "x", "args": ' + "[" * 100_000 + "]" * 100_000 + "}",
     "original", "nested deeper than MAX_NESTING_DEPTH (100) levels"),
]


@pytest.mark.parametrize(("build", "kept_as", "reason"), [case[1:] for case in BAD_PAYLOADS],
                         ids=[case[0] for case in BAD_PAYLOADS])
def test_bad_payload_goes_to_dead_with_reason_and_next_job_runs_when_pushed_by_hand(
    redis, processor, tmp_path, build, kept_as, reason,
):
    # Given: a bad payload pushed by hand, and a good job behind it
    raw = build(tmp_path)
    get_redis().lpush("queue:default", raw)
    good = RecordJob.perform_later("good").jid

    # When: no exception escapes, so the processor thread would live on
    ran = drain(processor)

    # Then
    assert ran == 2
    assert [entry["jid"] for entry in performed() if not entry.get("failed")] == [good]
    [dead] = dead_entries(redis)
    assert reason in dead["error_message"]
    assert reason in dead["dead_reason"]
    if kept_as == "fields":
        for field, value in json.loads(raw).items():
            assert dead[field] == value
    elif dead.get("original_truncated"):  # over MAX_PAYLOAD_BYTES: its start only, with its size
        assert raw.startswith(dead["original_payload"]) and len(dead["original_payload"]) == 16 * 1024
        assert dead["original_size_bytes"] == len(raw)
    elif dead["original_encoding"] == "base64":
        assert base64.b64decode(dead["original_payload"]) == raw
    else:
        assert dead["original_payload"] == (raw.decode() if isinstance(raw, bytes) else raw)
    assert redis.keys("inflight:*") == []
    assert redis.llen("queue:default") == 0
    assert not (tmp_path / "pwned").exists()


def test_os_system_is_never_called_when_a_payload_names_it(redis, processor, tmp_path, monkeypatch):
    # Given
    calls = []
    monkeypatch.setattr("os.system", lambda command: calls.append(command))
    marker = tmp_path / "pwned"
    get_redis().lpush("queue:default", json.dumps({"class": "os.system", "args": [f"touch {marker}"]}))

    # When
    processor.process_one(block=False)

    # Then
    assert calls == []
    assert not marker.exists()
    assert redis.zcard("dead") == 1


def test_every_bad_payload_is_buried_and_the_good_job_behind_them_runs_when_all_are_queued(
    redis, processor, tmp_path,
):
    # Given
    for case in BAD_PAYLOADS:
        get_redis().lpush("queue:default", case[1](tmp_path))
    good = RecordJob.perform_later("good").jid

    # When
    drain(processor)

    # Then
    assert [entry["jid"] for entry in performed() if not entry.get("failed")] == [good]
    assert redis.zcard("dead") == len(BAD_PAYLOADS)
    assert redis.keys("inflight:*") == []
    assert processor.failed == len(BAD_PAYLOADS)


# -- database connections --------------------------------------------------------------------


@pytest.fixture
def file_db(request, tmp_path, django_db_blocker):
    """This thread's ``default`` connection swapped for one on an SQLite file, with the
    CONN_MAX_AGE given by indirect parametrization.

    The test settings use in-memory SQLite, whose wrapper ignores ``close()`` (closing would
    destroy the database), so the effect of ``close_old_connections`` only shows on a file.
    """
    from django.db import connections

    original = connections["default"]
    settings_dict = {
        **original.settings_dict, "ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db.sqlite3"),
        "OPTIONS": {}, "CONN_MAX_AGE": request.param,
    }
    wrapper = SQLiteDatabaseWrapper(settings_dict, alias="default")
    connections["default"] = wrapper
    try:
        with django_db_blocker.unblock():
            yield wrapper
            wrapper.close()
    finally:
        connections["default"] = original


@pytest.mark.parametrize("file_db", [0], indirect=True)
def test_db_connection_is_closed_before_and_after_each_job_when_conn_max_age_is_0(redis, processor, file_db):
    # Given: a connection left open by earlier work in this thread
    file_db.ensure_connection()
    DatabaseJob.perform_later()

    # When
    processor.process_one(block=False)

    # Then: perform began on a closed connection, used one, and it was closed afterwards
    [entry] = performed()
    assert entry["args"] == [True]
    assert file_db.connection is None


@pytest.mark.parametrize("file_db", [None], indirect=True)
def test_db_connection_stays_open_across_a_job_when_conn_max_age_is_none(redis, processor, file_db):
    # Given
    file_db.ensure_connection()
    opened = file_db.connection
    DatabaseJob.perform_later()

    # When
    processor.process_one(block=False)

    # Then: persistent connections are left alone, as a request would leave them
    assert performed()[0]["args"] == [False]
    assert file_db.connection is opened
