"""BGJOBS["SIDEKIQ_VERSION"]: what we write for Sidekiq 6, 7 and 8, and that every version's
form is read whatever the setting (without Ruby; tests/test_sidekiq_interop.py runs the real one)."""

import base64
import json
import textwrap
import zlib

import pytest
from django.conf import settings
from django.test import override_settings

from django_bgjobs import api, keys
from django_bgjobs.checks import check_settings
from django_bgjobs.failures import row_fields
from django_bgjobs.payload import backtrace_lines, compress_backtrace, dumps
from django_bgjobs.worker.launcher import Launcher
from tests.testapp.jobs import RecordJob

LINES = ["app/jobs/hard_worker.rb:12:in `perform'", "sidekiq/processor.rb:196:in `execute_job'"] * 20


def bgjobs(**changes):
    return override_settings(BGJOBS={**settings.BGJOBS, **changes})


def ruby_encode64(data):
    """Ruby's ``Base64.encode64``: RFC 2045, a newline after every 60 characters and at the end."""
    return "".join(line + "\n" for line in textwrap.wrap(base64.b64encode(data).decode(), 60))


@pytest.mark.parametrize("version", [True, 5, 9, "7", None])
def test_e070_when_sidekiq_version_is_not_6_7_or_8(version):
    with bgjobs(SIDEKIQ_VERSION=version):
        messages = check_settings()
    assert [m.id for m in messages] == ["django_bgjobs.E070"]
    assert "6, 7 or 8" in messages[0].hint


def test_backtrace_is_read_when_ruby_broke_its_base64_into_lines():
    # Given: an error_backtrace exactly as Sidekiq's compress_backtrace writes it (job_retry.rb, 6.0+)
    stored = ruby_encode64(zlib.compress(json.dumps(LINES).encode()))
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
