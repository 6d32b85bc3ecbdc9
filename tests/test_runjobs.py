"""``manage.py runjobs`` end to end: real worker subprocesses, ``kill -9``, signals, Redis outages.

Every worker here runs ``python -m django runjobs`` with ``tests.settings`` (heartbeat 0.2 s,
heartbeat TTL 2 s, poll 0.05 s, fetch timeout 0.2 s) against a throwaway Redis.  Workers
are started in their own session so the ``workers`` fixture can SIGKILL a whole process
group at the end of a test, ``--processes`` children included.  Run with ``-s`` to see the
figures the crash test prints.
"""

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import redis as redis_lib

from django_bgjobs import conf, connection
from tests.helpers import (
    REPO_ROOT,
    free_port,
    read_log,
    start_redis_server,
    stop_worker,
    subprocess_env,
    wait_until,
)
from tests.testapp.jobs import RecordJob, SlowJob, performed

pytestmark = pytest.mark.slow

HEARTBEAT_TTL_S = 2  # tests.settings


@pytest.fixture
def workers(redis_url):
    """Start ``runjobs`` subprocesses; whatever is still running at the end is SIGKILLed, children too."""
    started = []

    def start(*args, url=redis_url):
        log_path = Path(tempfile.mkdtemp(prefix="bgjobs-runjobs-")) / "runjobs.log"
        env = subprocess_env({"DJANGO_SETTINGS_MODULE": "tests.settings", "REDIS_URL": url,
                              "BGJOBS_TEST_REDIS_URL": url})
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "django", "runjobs", *args], cwd=REPO_ROOT, env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        proc.log_path = log_path
        started.append(proc)
        return proc

    yield start
    for proc in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group this test created: the worker and its children
        proc.wait()


@contextlib.contextmanager
def library_redis(url):
    """Point this process's django_bgjobs (enqueue, ledger) at ``url`` for the block."""
    previous = os.environ["REDIS_URL"]
    os.environ["REDIS_URL"] = url
    conf.get_settings.cache_clear()
    connection.reset()
    try:
        yield
    finally:
        os.environ["REDIS_URL"] = previous
        conf.get_settings.cache_clear()
        connection.reset()


def live_processes(client):
    """Identities in ``processes`` whose heartbeat hash still exists (Sidekiq's ProcessSet rule)."""
    return sorted(identity for identity in client.smembers("processes") if client.exists(identity))


def pid_of(identity):
    """The pid inside an identity ``host:pid:token``."""
    return int(identity.rsplit(":", 2)[1])


def inflight_jids(client, identity):
    keys = client.keys(f"inflight:{identity}:*")
    return [json.loads(raw)["jid"] for key in keys for raw in client.lrange(key, 0, -1)]


def ledger_jids(client=None):
    return [entry["jid"] for entry in performed(client)]


def wait_for_workers(client, count, timeout=15):
    return wait_until(lambda: len(live_processes(client)) == count and live_processes(client), timeout=timeout,
                      message=f"{count} live worker process(es) in `processes`")


# -- crash and recovery ----------------------------------------------------------------------


def test_every_job_runs_and_only_inflight_ones_repeat_when_a_worker_is_killed_9(redis, workers):
    # Given: 300 jobs of 50 ms and a worker with 5 threads
    concurrency = 5
    jids = [handle.jid for handle in SlowJob.perform_bulk([(0.05,)] * 300)]
    first = workers("-c", str(concurrency), "-q", "default")
    [victim] = wait_for_workers(redis, 1)
    wait_until(lambda: redis.llen("test:performed") >= 60, timeout=20, message="60 jobs performed")

    # When: kill -9 mid-run, then a new worker takes over
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    killed_at = time.monotonic()
    performed_at_kill = redis.llen("test:performed")
    in_flight_at_kill = inflight_jids(redis, victim)
    workers("-c", str(concurrency), "-q", "default")
    wait_until(lambda: not redis.keys(f"inflight:{victim}:*"), timeout=10, message="the dead worker's jobs pushed back")
    recovery_s = time.monotonic() - killed_at
    wait_until(lambda: set(ledger_jids()) >= set(jids), timeout=30, message="every jid performed")
    finished_s = time.monotonic() - killed_at

    # Then
    ledger = ledger_jids()
    counts = collections.Counter(ledger)
    duplicates = len(ledger) - len(counts)
    print(
        f"\nkill -9 figures: enqueued={len(jids)} performed={len(ledger)} unique={len(counts)} "
        f"duplicates={duplicates} performed_at_kill={performed_at_kill} in_flight_at_kill={len(in_flight_at_kill)} "
        f"recovery_s={recovery_s:.2f} finished_s={finished_s:.2f}"
    )
    assert 0 < performed_at_kill < len(jids)
    # In flight: the running jobs plus the prefetched ones (PREFETCH defaults to the concurrency);
    # only the running ones can have started, so only they may run twice.
    assert 0 < len(in_flight_at_kill) <= 2 * concurrency
    assert set(counts) == set(jids)
    assert duplicates <= concurrency
    assert {jid for jid, n in counts.items() if n > 1} <= set(in_flight_at_kill)
    assert recovery_s < HEARTBEAT_TTL_S + 3


def test_supervisor_replaces_a_killed_child_and_its_jobs_are_recovered_when_running_two_processes(redis, workers):
    # Given: two worker processes of two threads, each busy with 0.8 s jobs
    jids = [handle.jid for handle in SlowJob.perform_bulk([(0.8,)] * 4)]
    supervisor = workers("--processes", "2", "-c", "2", "-q", "default")
    children = wait_for_workers(redis, 2)
    victim = wait_until(lambda: next((i for i in children if inflight_jids(redis, i)), None), timeout=10)
    victim_pid = pid_of(victim)
    assert victim_pid != supervisor.pid

    # When
    os.kill(victim_pid, signal.SIGKILL)
    killed_at = time.monotonic()

    # Then: a replacement joins, the orphans go back within the heartbeat TTL, every job runs
    def two_without_the_victim():
        live = live_processes(redis)
        return live if len(live) == 2 and victim not in live else None

    replaced = wait_until(two_without_the_victim, timeout=10, message="two live processes again, without the victim")
    wait_until(lambda: not redis.keys(f"inflight:{victim}:*"), timeout=10, message="the victim's jobs pushed back")
    recovery_s = time.monotonic() - killed_at
    wait_until(lambda: set(ledger_jids()) >= set(jids), timeout=20, message="every jid performed")
    assert recovery_s < HEARTBEAT_TTL_S + 2
    assert len(set(replaced) - set(children)) == 1
    assert supervisor.poll() is None
    assert stop_worker(supervisor) == 0
    assert live_processes(redis) == []
    for identity in replaced:
        with pytest.raises(ProcessLookupError):
            os.kill(pid_of(identity), 0)


# -- graceful and hard shutdown --------------------------------------------------------------


def test_running_job_finishes_and_worker_exits_0_when_sigterm_arrives_within_the_timeout(redis, workers):
    # Given: a 1 s job running, a 5 s shutdown timeout
    jid = SlowJob.perform_later(1.0).jid
    worker = workers("-c", "2", "-t", "5")
    wait_until(lambda: redis.keys("inflight:*"), timeout=10, message="the job in flight")

    # When
    code = stop_worker(worker, timeout=10)

    # Then: done, acknowledged, and the process left no trace
    assert code == 0, read_log(worker)
    assert ledger_jids() == [jid]
    assert redis.keys("inflight:*") == []
    assert redis.llen("queue:default") == 0
    assert redis.smembers("processes") == set()
    assert redis.hkeys("inflight-owners") == []
    assert redis.get("stat:processed") == "1"


def test_unfinished_job_goes_back_to_its_queue_when_the_shutdown_timeout_passes(redis, workers):
    # Given: a 5 s job and a 0.5 s shutdown timeout
    jid = SlowJob.perform_later(5.0).jid
    worker = workers("-c", "1", "-t", "0.5")
    wait_until(lambda: redis.keys("inflight:*"), timeout=10, message="the job in flight")

    # When
    sent_at = time.monotonic()
    code = stop_worker(worker, timeout=10)

    # Then
    assert code == 0, read_log(worker)
    assert time.monotonic() - sent_at < 3
    assert [json.loads(raw)["jid"] for raw in redis.lrange("queue:default", 0, -1)] == [jid]
    assert redis.keys("inflight:*") == []
    assert ledger_jids() == []
    assert redis.smembers("processes") == set()
    assert "1 unfinished job(s) pushed back" in read_log(worker)


def test_worker_exits_at_once_and_leaves_the_job_in_flight_when_a_second_sigterm_arrives(redis, workers):
    # Given: a 5 s job, a 5 s shutdown timeout, and a first SIGTERM already taken
    jid = SlowJob.perform_later(5.0).jid
    worker = workers("-c", "1", "-t", "5")
    wait_until(lambda: redis.keys("inflight:*"), timeout=10, message="the job in flight")
    worker.send_signal(signal.SIGTERM)
    wait_until(lambda: "stopping gracefully" in read_log(worker), timeout=5, message="the first SIGTERM taken")

    # When
    sent_at = time.monotonic()
    code = stop_worker(worker, timeout=5)

    # Then: no wait for the job; it stays in flight for the next worker to push back
    assert time.monotonic() - sent_at < 1.5
    assert code == 1
    [key] = redis.keys("inflight:*")
    assert [json.loads(raw)["jid"] for raw in redis.lrange(key, 0, -1)] == [jid]
    assert ledger_jids() == []


# -- several workers -------------------------------------------------------------------------


def test_each_job_runs_exactly_once_when_two_workers_start_together(redis, workers):
    # Given
    jids = [handle.jid for handle in RecordJob.perform_bulk([(n,) for n in range(2_000)])]

    # When
    pair = [workers("-c", "5"), workers("-c", "5")]
    wait_until(lambda: redis.llen("test:performed") >= 2_000, timeout=30, message="2,000 jobs performed")
    codes = [stop_worker(proc) for proc in pair]

    # Then
    ledger = ledger_jids()
    assert codes == [0, 0]
    assert len(ledger) == 2_000
    assert collections.Counter(ledger) == collections.Counter(jids)
    assert redis.get("stat:processed") == "2000"
    assert redis.keys("inflight:*") == []


# -- Redis trouble ---------------------------------------------------------------------------


def test_runjobs_exits_1_with_one_line_naming_the_address_when_redis_is_unreachable_at_start():
    # Given: a port where nothing listens
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"

    # When
    result = subprocess.run(
        [sys.executable, "-m", "django", "runjobs"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30,
        env=subprocess_env({"DJANGO_SETTINGS_MODULE": "tests.settings", "REDIS_URL": url,
                            "BGJOBS_TEST_REDIS_URL": url}),
    )

    # Then
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"127.0.0.1:{port}" in lines[0]
    assert "Traceback" not in result.stderr


def test_worker_reconnects_and_runs_every_job_when_redis_restarts_under_it(workers):
    # Given: a server of its own, with an append-only file so its data survives the restart
    with start_redis_server(extra_args=("--appendonly", "yes")) as server, library_redis(server.url):
        client = redis_lib.Redis.from_url(server.url, decode_responses=True)
        worker = workers("-c", "3", url=server.url)
        [identity] = wait_for_workers(client, 1)
        before = [handle.jid for handle in RecordJob.perform_bulk([(n,) for n in range(20)])]
        wait_until(lambda: set(ledger_jids(client)) >= set(before), timeout=10, message="first batch performed")

        # When: the server goes away, the worker notices, the server comes back
        server.stop()
        wait_until(lambda: "Redis error" in read_log(worker), timeout=10, message="the worker seeing the outage")
        server.start()
        after = [handle.jid for handle in RecordJob.perform_bulk([(n,) for n in range(20, 40)])]

        # Then: the worker lives on, beats again and runs the second batch; nothing is lost or repeated
        wait_until(lambda: set(ledger_jids(client)) >= set(after), timeout=20, message="second batch performed")
        wait_until(lambda: client.exists(identity), timeout=5, message="the heartbeat back")
        assert worker.poll() is None
        assert collections.Counter(ledger_jids(client)) == collections.Counter(before + after)
        assert stop_worker(worker) == 0
        client.close()


def test_worker_runs_jobs_enqueued_after_the_restart_when_redis_restarts_empty(workers):
    # Given: a server keeping nothing on disk: jobs waiting at the restart are lost with its memory,
    # which is what Redis without persistence promises; the worker must still serve new ones
    with start_redis_server() as server, library_redis(server.url):
        client = redis_lib.Redis.from_url(server.url, decode_responses=True)
        worker = workers("-c", "2", url=server.url)
        wait_for_workers(client, 1)

        # When
        server.kill()
        wait_until(lambda: "Redis error" in read_log(worker), timeout=10, message="the worker seeing the outage")
        server.start()
        after = [handle.jid for handle in RecordJob.perform_bulk([(n,) for n in range(10)])]

        # Then
        wait_until(lambda: set(ledger_jids(client)) >= set(after), timeout=20, message="jobs after the restart")
        wait_for_workers(client, 1)
        assert worker.poll() is None
        assert stop_worker(worker) == 0
        client.close()


# -- scheduled jobs --------------------------------------------------------------------------


def test_scheduled_job_runs_after_its_time_when_a_worker_is_running(redis, workers):
    # Given
    workers("-c", "2")
    wait_for_workers(redis, 1)

    # When
    handle = RecordJob.set(wait=0.5).perform_later("later")

    # Then: it waits in the schedule set, is not run early, and runs soon after its time
    assert redis.zcard("schedule") == 1
    while time.time() < handle.scheduled_at - 0.05:
        assert ledger_jids() == []
        time.sleep(0.02)
    wait_until(lambda: ledger_jids() == [handle.jid], timeout=5, message="the scheduled job performed")
    assert time.time() - handle.scheduled_at < 2
    assert redis.zcard("schedule") == 0
