"""Values read from Redis (job class names, jids, queue names) reach log lines escaped.

Redis is shared with other writers, so a class name or jid may hold a newline: written into
a log line verbatim it would forge a second line.  Each test here makes the worker log such
values and asserts that no message holds a raw control character.
"""

import json
import logging

import pytest

from django_bgjobs.worker.fetcher import Fetcher
from django_bgjobs.worker.launcher import Launcher
from django_bgjobs.worker.processor import Processor
from django_bgjobs.worker.queues import QueueOrder
from tests.helpers import dead_entries, drain
from tests.testapp.jobs import FailingJob, RecordJob

# The processor recycles database connections around each job, and a buried job gets a failure row.
pytestmark = pytest.mark.django_db(transaction=True)

FORGED = "\nERROR django_bgjobs forged line"


@pytest.fixture
def messages(caplog):
    """Every message logged by django_bgjobs during the test, formatted."""
    caplog.set_level(logging.DEBUG, logger="django_bgjobs")
    return lambda: [record.getMessage() for record in caplog.records if record.name.startswith("django_bgjobs")]


def assert_escaped(lines, *needles):
    """No line holds a raw newline or escape; each needle (a value as escaped) is in some line."""
    assert lines
    for line in lines:
        assert "\n" not in line and "\r" not in line and "\x1b" not in line, line
    for needle in needles:
        assert any(needle in line for line in lines), (needle, lines)


def push_raw(redis, payload, queue="default"):
    redis.lpush(f"queue:{queue}", json.dumps(payload))


def test_worker_log_lines_escape_a_class_name_and_jid_with_a_newline(redis, messages):
    # Given: an unknown class and a failing job whose jid holds a newline, pushed by another writer
    processor = Processor(Fetcher("test-host:1:logs", QueueOrder(["default"])))
    push_raw(redis, {"class": "no.such.Job" + FORGED, "args": [], "jid": "a" + FORGED})
    push_raw(redis, {"class": FailingJob.name, "args": ["boom"], "jid": "b" + FORGED, "retry": 1})
    push_raw(redis, {"class": RecordJob.name, "args": [1], "jid": "c" + FORGED, "queue": "default",
                     "expiry": 1.0})

    # When
    assert drain(processor) == 3

    # Then: buried, retried and expired, each logged on one line with the values escaped
    assert len(dead_entries(redis)) == 1 and redis.zcard("retry") == 1
    assert_escaped(messages(), "no.such.Job\\nERROR", "jid=a\\nERROR", "jid=b\\nERROR", "jid=c\\nERROR")


def test_recovery_log_line_escapes_the_class_name_and_jid_of_a_poison_job(redis, messages, settings):
    # Given: a job whose worker died MAX_CRASHES times, with a newline in its class and jid
    settings.BGJOBS = {**settings.BGJOBS, "MAX_CRASHES": 1}
    push_raw(redis, {"class": "x.Job" + FORGED, "args": [], "jid": "p" + FORGED})
    victim = Launcher(queues=["default"], concurrency=1)
    victim.beat()
    victim.fetcher.fetch(block=False)
    victim.fetcher.forget_prefetched()
    redis.hset("crashes", f"p{FORGED}:by", victim.identity)
    redis.delete(victim.identity)

    # When
    Launcher(queues=["default"], concurrency=1).recover_orphans()

    # Then
    assert len(dead_entries(redis)) == 1
    assert_escaped(messages(), "x.Job\\nERROR django_bgjobs forged line jid=p\\nERROR")
