"""Fault cases 7 and 8: bad input.

7. Payloads pushed straight into Redis (not through ``perform_later``) that can never run: each
   goes to the dead set with the reason, nothing they name is imported or run, and the worker
   goes on with the jobs behind them.
8. Bad input at ``perform_later``: a clear exception naming the problem, and nothing written.
"""

import datetime
import json

import pytest
from django.conf import settings
from django.test import override_settings

from django_bgjobs import PayloadTooLargeError, SerializationError
from tests.faults.harness import report, wait_for
from tests.faults.jobs import LedgerJob

pytestmark = pytest.mark.slow

TEN_MB = 10 * 1024 * 1024


def bad_payloads(case):
    """(what, raw, the dead entry's jid or None when it wraps the raw bytes, a piece of the reason)."""
    marker = case.dir / "pwned"
    return [
        ("invalid JSON", '{"class": "tests.faults.jobs.LedgerJob", "args": [1,', None, "not valid JSON"),
        ("a JSON list", '["tests.faults.jobs.LedgerJob", [1]]', None, "JSON list, not an object"),
        ("a JSON string", '"tests.faults.jobs.LedgerJob"', None, "JSON str, not an object"),
        ("no class", json.dumps({"args": [1], "jid": "b" * 24}), None, "no 'class' string"),
        ("an unknown class", json.dumps({"class": "no.such.Job", "args": [], "jid": "c" * 24}), "c" * 24,
         "no registered Job is named 'no.such.Job'"),
        ("os.system", json.dumps({"class": "os.system", "args": [f"touch {marker}"], "jid": "d" * 24}), "d" * 24,
         "no registered Job is named 'os.system'"),
        ("a class that is not a Job, in a module not loaded",
         json.dumps({"class": "tests.faults.canary.Canary", "args": [str(marker)], "jid": "e" * 24}), "e" * 24,
         "no registered Job is named 'tests.faults.canary.Canary'"),
        ("args of the wrong count", json.dumps({"class": LedgerJob.name, "args": [1, 2, 3], "jid": "f" * 24}),
         "f" * 24, "arguments do not fit"),
        ("a 10 MB payload", json.dumps({"class": LedgerJob.name, "args": ["x" * TEN_MB], "jid": "a" * 24}), "a" * 24,
         "over BGJOBS['MAX_PAYLOAD_BYTES']"),
        ("binary garbage", b"\xff\xfe\x00\x80garbage\xc3\x28" + bytes(range(256)), None, "not UTF-8"),
    ]


def test_each_bad_payload_goes_to_the_dead_set_and_the_jobs_behind_it_run_when_pushed_into_redis(fault_case):
    # Given: good jobs, then each bad payload followed by a good job, then more good jobs
    case = fault_case("case 7: bad payloads pushed into Redis")
    bad = bad_payloads(case)
    good = [handle.jid for handle in LedgerJob.perform_bulk([(n,) for n in range(100)])]
    for _, raw, _, _ in bad:
        case.client.lpush("queue:default", raw)
        good.append(LedgerJob.perform_later(0).jid)
    good += [handle.jid for handle in LedgerJob.perform_bulk([(n,) for n in range(100)])]

    # When
    worker = case.worker("-c", "3")
    identity = case.identity_of(worker.pid)
    wait_for(lambda: len(case.dead()) == len(bad) and not case.missing(good), 30, "every job run or buried")

    # Then: each bad payload is dead with its reason, kept as it was (an oversized one cut, under its jid)
    dead = case.dead()
    wrapped = {entry["original_payload"]: entry for entry in dead.values() if "original_payload" in entry}
    for what, raw, jid, reason in bad:
        if jid is not None:
            entry = dead[jid]
        elif isinstance(raw, bytes):
            [entry] = [e for e in wrapped.values() if e["original_encoding"] == "base64"]
        else:
            entry = wrapped[raw]
        assert reason in entry["dead_reason"], what
    # Nothing was imported or run, and the worker lives on
    assert not (case.dir / "pwned").exists()
    assert not (case.dir / "ledger.txt.imported").exists()
    assert worker.poll() is None and case.live_identities() == [identity]
    assert case.queued() == [] and case.in_flight() == []
    figures = case.check(good, bad_payloads=len(bad), buried=len(dead))
    assert figures.performed == len(good) and figures.duplicates == 0


def bgjobs(**changes):
    return override_settings(BGJOBS={**settings.BGJOBS, **changes})


BAD_ENQUEUES = [
    ("an argument JSON cannot hold", lambda: LedgerJob.perform_later(object()), SerializationError,
     "argument 0 is of type builtins.object"),
    ("a set argument", lambda: LedgerJob.perform_later({1, 2}), SerializationError, "argument 0 is of type builtins.set"),
    ("a bad item among good ones", lambda: LedgerJob.perform_bulk([(1,), (2,), (object(),)]), SerializationError,
     "argument 0 is of type builtins.object"),
    ("a queue name with spaces", lambda: LedgerJob.set(queue="has space").perform_later(1), ValueError,
     "queue name 'has space' is invalid"),
    ("a queue name of 300 characters", lambda: LedgerJob.set(queue="q" * 300).perform_later(1), ValueError,
     "is invalid: use 1 to 128 letters"),
    ("a negative wait", lambda: LedgerJob.set(wait=-5).perform_later(1), ValueError,
     "wait must be a finite number of seconds >= 0"),
    ("a wait that is not a number", lambda: LedgerJob.set(wait="10").perform_later(1), TypeError,
     "wait must be a number of seconds or a timedelta, not str"),
    ("a wait that is NaN", lambda: LedgerJob.set(wait=float("nan")).perform_later(1), ValueError,
     "wait must be a finite number"),
    ("a naive wait_until under USE_TZ",
     lambda: LedgerJob.set(wait_until=datetime.datetime(2030, 1, 1, 12)).perform_later(1), ValueError,
     "wait_until is a naive datetime while USE_TZ=True"),
    ("a wait_until that is not a datetime", lambda: LedgerJob.set(wait_until="tomorrow").perform_later(1),
     TypeError, "wait_until must be a datetime, not str"),
    ("a payload over MAX_PAYLOAD_BYTES", lambda: LedgerJob.perform_later("x" * (1024 * 1024)), PayloadTooLargeError,
     "over BGJOBS['MAX_PAYLOAD_BYTES']"),
]


def test_bad_input_at_enqueue_raises_a_clear_exception_and_writes_nothing(fault_case):
    # Given
    case = fault_case("case 8: bad input at enqueue")
    assert settings.USE_TZ

    # When / Then: one clear exception per mistake, and Redis untouched
    for what, enqueue, error, message in BAD_ENQUEUES:
        with pytest.raises(error) as raised:
            enqueue()
        assert message in str(raised.value), what
        assert case.client.dbsize() == 0, what
    report(f"{case.name}: mistakes={len(BAD_ENQUEUES)}, each raised at perform_later naming the problem; "
           f"Redis keys written={case.client.dbsize()}")
