"""``perform_bulk`` of more than ``BULK_CHUNK_JOBS`` jobs is written in chunks (job.ConfiguredJob).

Behaviour only (memory is measured by ``benchmarks/bulk_memory.py``): every job written in order
with the jids returned, the middleware once per payload, chunk boundaries where they should be,
a caller's mistake anywhere raising before anything is written, a middleware stop leaving None
in its place, an error in chunk N leaving the chunks before it written and saying so, and
inside ``atomic()`` nothing written before the commit.  The chunk size is set to 10 here.
"""

import json

import pytest
from django.conf import settings
from django.db import transaction
from django.test import override_settings

from django_bgjobs import Batch, BatchStatus, client, job, keys
from django_bgjobs.errors import PayloadTooLargeError, SerializationError
from tests.testapp.jobs import RecordJob

PUSHES = []  # (the push, args[0]) for each payload the Chunks middleware saw (the push kept alive: ids differ)


class Chunks:
    """Notes which push (chunk) each payload went through; stops the ones whose first argument
    is a multiple of 7 above 0 when STOP is set, and raises for 15 when FAIL is set."""

    stop = fail = False

    def __init__(self, call_next):
        self.call_next = call_next

    def __call__(self, payload):
        n = payload["args"][0]
        PUSHES.append((client.current_push(), n))
        if Chunks.fail and n == 15:
            raise RuntimeError("middleware failure on job 15")
        if Chunks.stop and n and n % 7 == 0:
            return None
        return self.call_next(payload)


@pytest.fixture(autouse=True)
def chunks_of_ten(monkeypatch):
    monkeypatch.setattr(job, "BULK_CHUNK_JOBS", 10)
    PUSHES.clear()
    Chunks.stop = Chunks.fail = False
    with override_settings(BGJOBS={**settings.BGJOBS, "CLIENT_MIDDLEWARE": ["tests.test_bulk_chunks.Chunks"],
                                   "DEFER_ON_COMMIT": True}):
        yield


def queued_args(redis):
    return [json.loads(raw)["args"][0] for raw in reversed(redis.lrange("queue:default", 0, -1))]


def chunk_sizes():
    sizes = {}
    for push, _ in PUSHES:
        sizes[id(push)] = sizes.get(id(push), 0) + 1
    return list(sizes.values())


def test_bulk_is_written_in_chunks_in_order_with_the_middleware_once_per_payload(redis):
    handles = RecordJob.perform_bulk([(n,) for n in range(25)])

    assert chunk_sizes() == [10, 10, 5]
    assert [n for _, n in PUSHES] == list(range(25))
    assert queued_args(redis) == list(range(25))
    assert [json.loads(raw)["jid"] for raw in reversed(redis.lrange("queue:default", 0, -1))] == [h.jid for h in handles]
    assert len({h.jid for h in handles}) == 25


def test_exactly_one_chunk_is_one_push(redis):
    RecordJob.perform_bulk([(n,) for n in range(10)])

    assert chunk_sizes() == [10]


def test_a_middleware_stop_in_a_later_chunk_leaves_none_in_its_place(redis):
    Chunks.stop = True

    handles = RecordJob.perform_bulk([(n,) for n in range(25)])

    assert [n for n, h in enumerate(handles) if h is None] == [7, 14, 21]
    assert queued_args(redis) == [n for n in range(25) if n not in (7, 14, 21)]


def test_an_error_in_chunk_two_leaves_chunk_one_written_and_says_so(redis):
    Chunks.fail = True

    with pytest.raises(RuntimeError, match="middleware failure on job 15") as raised:
        RecordJob.perform_bulk([(n,) for n in range(25)])

    assert queued_args(redis) == list(range(10))
    assert raised.value.__notes__ == [
        "perform_bulk: jobs 0 to 9 of 25 were written before this chunk (jobs 10 to 19) failed; the rest were not"
    ]


def test_an_argument_json_cannot_hold_in_the_last_chunk_writes_nothing(redis):
    with pytest.raises(SerializationError):
        RecordJob.perform_bulk([(n,) for n in range(24)] + [(object(),)])

    assert PUSHES == [] and redis.dbsize() == 0


def test_a_payload_too_large_in_the_last_chunk_writes_nothing(redis):
    with override_settings(BGJOBS={**settings.BGJOBS, "MAX_PAYLOAD_BYTES": 2000}):
        with pytest.raises(PayloadTooLargeError, match=r"over BGJOBS\['MAX_PAYLOAD_BYTES'\] \(2,000\)"):
            RecordJob.perform_bulk([(n,) for n in range(24)] + [(24, "x" * 1990)])

    assert PUSHES == [] and redis.dbsize() == 0


@pytest.mark.django_db(transaction=True)
def test_inside_atomic_every_chunk_waits_for_the_commit_and_a_rollback_writes_nothing(redis):
    with transaction.atomic():
        handles = RecordJob.perform_bulk([(n,) for n in range(25)])
        assert redis.dbsize() == 0 and PUSHES == []
    assert queued_args(redis) == list(range(25)) and chunk_sizes() == [10, 10, 5]
    assert len(handles) == 25

    redis.flushdb()
    with pytest.raises(RuntimeError), transaction.atomic():
        RecordJob.perform_bulk([(n,) for n in range(25)])
        raise RuntimeError("roll back")
    assert redis.dbsize() == 0


def test_a_batch_counts_every_job_of_a_chunked_bulk(redis):
    batch = Batch()
    with batch.jobs():
        RecordJob.perform_bulk([(n,) for n in range(25)])

    status = BatchStatus(batch.bid)
    assert (status.total, status.pending) == (25, 25)
    assert redis.scard(keys.batch_jids(batch.bid)) == 25


def test_arguments_that_do_not_fit_perform_in_the_last_chunk_write_nothing(redis):
    from tests.testapp.jobs import ReturnJob  # perform(self, value)

    items = [(n,) for n in range(2_500)]
    items[2_400] = ()  # no value

    with pytest.raises(TypeError, match="missing a required argument: 'value'"):
        ReturnJob.perform_bulk(items)

    assert redis.dbsize() == 0
