"""Interop with Debian's real Ruby Sidekiq (6.4.1) on one Redis: each side reads, shows and
runs what the other wrote.  Marked ``sidekiq`` (deselect with ``-m "not sidekiq"``); they
run in CI, where ``.ci/run`` installs ``ruby-sidekiq`` and ``ruby-rack-test``.
"""

import html
import time

import pytest

from django.urls import reverse

from django_bgjobs import api, keys
from django_bgjobs.connection import get_redis
from django_bgjobs.job_end import Outcome
from django_bgjobs.payload import loads
from tests.admin_support import viewer_client  # noqa: F401 (fixture)
from tests.helpers import start_worker, unit_in_flight, wait_until
from tests.sidekiq_ruby import ruby, sidekiq_version, start_sidekiq  # noqa: F401 (fixture)
from tests.testapp.interop_jobs import GATE_KEY, GateJob, InteropRecordJob, RubyRecordJob, ToRailsJob
from tests.testapp.jobs import FailingJob, RecordJob, performed

pytestmark = [pytest.mark.sidekiq, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("sidekiq_version")]


def fail_once(job_class, *args, dead=False, queue="default"):
    """Enqueue ``job_class(*args)``, take it as a worker would and fail it: to retry (or dead)."""
    handle = job_class.set(retry=0 if dead else None, queue=queue).perform_later(*args)
    inflight = keys.inflight("interop-host:1:test", handle.queue)
    raw = get_redis().lmove(keys.queue(handle.queue), inflight, "LEFT", "LEFT")
    outcome = unit_in_flight(raw, "interop-host:1:test", handle.queue).fail(ValueError(f"bad {args}"))
    assert outcome == (Outcome.DEAD if dead else Outcome.RETRIED)
    return handle.jid


# -- Ruby reads what we wrote --------------------------------------------------------------


def test_ruby_api_reads_our_queue_sets_and_stats():
    # Given: a waiting job, a scheduled one, a retry and a dead entry, written by our client and worker
    before = time.time()
    waiting = RecordJob.perform_later(1, "two", {"three": [4.5]})
    scheduled = RecordJob.set(wait=3600).perform_later(7)
    retrying = fail_once(FailingJob, "once")
    dead = fail_once(FailingJob, "dead", dead=True)

    # When: Ruby's Sidekiq::API looks
    seen = ruby("""
        stats = Sidekiq::Stats.new
        q = Sidekiq::Queue.new("default")
        emit({
          queues: Sidekiq::Queue.all.map(&:name),
          waiting: q.map { |j| {klass: j.klass, args: j.args, jid: j.jid, queue: j.queue,
                                enqueued_at: j.enqueued_at.to_f, created_at: j.created_at.to_f} },
          latency: q.latency,
          scheduled: Sidekiq::ScheduledSet.new.map { |e| {jid: e.jid, at: e.at.to_f, args: e.args} },
          retries: Sidekiq::RetrySet.new.map { |e| {jid: e.jid, error_class: e["error_class"],
              error_message: e["error_message"], retry_count: e["retry_count"], failed_at: e["failed_at"],
              backtrace: e.error_backtrace} },
          dead: Sidekiq::DeadSet.new.map { |e| {jid: e.jid, error_class: e["error_class"]} },
          stats: {enqueued: stats.enqueued, scheduled: stats.scheduled_size, retry: stats.retry_size,
                  dead: stats.dead_size},
        })
    """)

    # Then: every job is there with its class, arguments and times
    print("Ruby's Sidekiq::API saw:", seen)
    now = time.time()
    assert seen["queues"] == ["default"]
    [job] = seen["waiting"]
    assert (job["klass"], job["args"], job["jid"], job["queue"]) == (
        RecordJob.name, [1, "two", {"three": [4.5]}], waiting.jid, "default")
    assert before - 1 <= job["enqueued_at"] <= now and before - 1 <= job["created_at"] <= now
    assert 0 <= seen["latency"] < 60
    [entry] = seen["scheduled"]
    assert entry["jid"] == scheduled.jid and entry["args"] == [7]
    assert before + 3599 <= entry["at"] <= now + 3601
    [retry] = seen["retries"]
    assert retry["jid"] == retrying and retry["error_class"] == "ValueError" and retry["retry_count"] == 0
    assert before - 1 <= retry["failed_at"] <= now
    assert any("ValueError" in line for line in retry["backtrace"])
    assert [d["jid"] for d in seen["dead"]] == [dead]
    assert seen["stats"] == {"enqueued": 1, "scheduled": 1, "retry": 1, "dead": 1}


@pytest.mark.slow
def test_ruby_sees_our_worker_and_the_job_it_runs():
    # Given: our worker, writing Sidekiq 6's forms, running one job that waits for the test
    worker = start_worker("-c", "2", "-q", "default", env={"BGJOBS_TEST_SIDEKIQ_VERSION": "6"})
    handle = GateJob.perform_later("busy")
    wait_until(lambda: any(r.get("phase") == "started" for r in performed()), timeout=20,
               message="GateJob to start")
    wait_until(lambda: any(True for _ in api.WorkSet()), timeout=10, message="the heartbeat to list the job")

    # When: Ruby's ProcessSet and Workers look
    seen = ruby("""
        emit({
          processes: Sidekiq::ProcessSet.new.map { |p| {identity: p.identity, hostname: p["hostname"], rss: p["rss"],
              rtt_us: p["rtt_us"],
              concurrency: p["concurrency"], busy: p["busy"], queues: p["queues"], quiet: p.stopping?} },
          workers_size: Sidekiq::Workers.new.size,
          workers: Sidekiq::Workers.new.map { |process_id, thread_id, work|
            {process: process_id, queue: work["queue"], payload: work["payload"],
             run_at: work["run_at"], run_at_class: work["run_at"].class.name} },
        })
    """)

    # Then: the process and its running job are listed, as Sidekiq's Busy page would show them
    get_redis().rpush(GATE_KEY, "go")
    [process] = seen["processes"]
    assert process["concurrency"] == 2 and process["busy"] == 1 and process["queues"] == ["default"]
    assert 10_000 < process["rss"] < 2_000_000 and process["rtt_us"] > 0  # kB of a Python worker; µs
    assert seen["workers_size"] == 1
    [work] = seen["workers"]
    assert work["process"] == process["identity"] and work["queue"] == "default"
    assert work["payload"]["jid"] == handle.jid and work["payload"]["class"] == "InteropGateJob"
    assert work["run_at_class"] == "Integer" and abs(work["run_at"] - time.time()) < 60
    print("Ruby's ProcessSet and Workers saw:", seen)

    # And once it is done, Sidekiq's Stats count it as our API does
    wait_until(lambda: api.Stats().processed == 1, timeout=20, message="the heartbeat to count the job")
    stats = ruby("s = Sidekiq::Stats.new; emit({processed: s.processed, failed: s.failed, workers: s.workers_size})")
    assert stats == {"processed": 1, "failed": 0, "workers": 0}
    worker.terminate()


@pytest.mark.slow
def test_our_api_sees_the_job_ruby_sidekiq_runs():
    # Given: Ruby's sidekiq running a job that waits for the test
    sidekiq = start_sidekiq("-q", "ruby")
    jid = ruby('emit(Sidekiq::Client.push("class" => "RubyGateJob", "queue" => "ruby", "args" => ["rb"]))')
    wait_until(lambda: any(r.get("phase") == "started" for r in performed()), timeout=30,
               message=f"RubyGateJob to start; sidekiq log:\n{sidekiq.log_path}")

    # When: our API lists running work (Sidekiq's heartbeat writes every 5 s)
    wait_until(lambda: any(True for _ in api.WorkSet()), timeout=15, message="WorkSet to list Ruby's job")
    [(identity, thread_id, work)] = list(api.WorkSet())

    # Then: it is Ruby's job, in Ruby's process, with its start time
    get_redis().rpush(GATE_KEY, "go")
    assert work["job"].jid == jid and work["job"].klass == "RubyGateJob" and work["queue"] == "ruby"
    assert abs(work["run_at"] - time.time()) < 60
    assert identity in [p.identity for p in api.ProcessSet()]
    sidekiq.terminate()


@pytest.mark.slow
def test_sidekiq_compressed_backtrace_is_shown_as_lines_by_our_api_and_admin(viewer_client):
    # Given: a Ruby job with `backtrace: true` failed in a real sidekiq: its entry holds
    # Base64.encode64(zlib(JSON)) with a newline every 60 characters
    sidekiq = start_sidekiq("-q", "ruby")
    jid = ruby('emit(Sidekiq::Client.push("class" => "RubyFailJob", "queue" => "ruby", "args" => ["kaput"], '
               '"retry" => 3, "backtrace" => true))')
    wait_until(lambda: get_redis().zcard(keys.retry()) == 1, timeout=30, message="RubyFailJob in the retry set")
    sidekiq.terminate()
    [raw] = get_redis().zrange(keys.retry(), 0, -1)
    assert "\n" in loads(raw)["error_backtrace"]  # Ruby's line-broken base64

    # When: our API and the admin's job page read it
    [entry] = list(api.RetrySet())
    lines = entry.error_backtrace

    # Then: the backtrace is Ruby's frames, one per line
    assert entry.jid == jid and entry.item["error_class"] == "ArgumentError"
    assert lines and all(isinstance(line, str) for line in lines)
    assert any("jobs.rb" in line and "perform" in line for line in lines)
    page = viewer_client.get(reverse("admin:django_bgjobs_retries_job", args=[jid])).content.decode()
    assert html.escape("\n".join(lines)) in page  # the frames, a line each


@pytest.mark.slow
def test_real_sidekiq_runs_what_we_enqueue_schedule_and_retry():
    # Given: a Ruby job enqueued, one scheduled a second ahead, and one in our retry set, due now
    now_job = RubyRecordJob.set(queue="ruby").perform_later(1, "now")
    later_job = RubyRecordJob.set(queue="ruby", wait=1).perform_later(2, "later")
    retried = fail_once(RubyRecordJob, 3, "retried", queue="ruby")
    [raw] = get_redis().zrange(keys.retry(), 0, -1)
    get_redis().zadd(keys.retry(), {raw: time.time()})  # due now

    # When: Ruby's sidekiq serves the queue (its poller moves due entries)
    sidekiq = start_sidekiq("-q", "ruby")
    wait_until(lambda: len(performed()) >= 3, timeout=40, message="Ruby to run the three jobs")
    time.sleep(2)  # a poll or two more: a job moved twice would run twice
    sidekiq.terminate()

    # Then: each ran once, in Ruby, with its arguments
    runs = sorted((r["jid"], tuple(r["args"])) for r in performed())
    assert runs == sorted([(now_job.jid, (1, "now")), (later_job.jid, (2, "later")), (retried, (3, "retried"))])
    assert all(r["ruby"] for r in performed())
    assert get_redis().zcard(keys.schedule()) == get_redis().zcard(keys.retry()) == 0


@pytest.mark.slow
def test_ruby_client_push_push_bulk_and_at_run_in_our_worker():
    # Given: Ruby's client pushes to our job by its name: one job, a bulk of three, one for later
    at = time.time() + 1
    jids = ruby(f"""
        one = Sidekiq::Client.push("class" => "InteropRecordJob", "args" => [1, "one", {{"k" => [1.5, nil]}}])
        bulk = Sidekiq::Client.push_bulk("class" => "InteropRecordJob", "args" => [[2], [3], [4]])
        later = Sidekiq::Client.push("class" => "InteropRecordJob", "args" => ["at"], "at" => {at!r})
        emit([one, *bulk, later])
    """)

    # When: our worker runs
    worker = start_worker("-c", "2", "-q", "default")
    wait_until(lambda: len(performed()) == 5, timeout=30, message="our worker to run Ruby's five jobs")
    worker.terminate()

    # Then: each ran once with its arguments (a hash arrives as a dict)
    runs = {r["jid"]: r["args"] for r in performed()}
    assert runs == {jids[0]: [1, "one", {"k": [1.5, None]}], jids[1]: [2], jids[2]: [3], jids[3]: [4],
                    jids[4]: ["at"]}
    assert InteropRecordJob.name == "InteropRecordJob"


@pytest.mark.slow
def test_sidekiq_web_answers_200_on_every_page_with_our_data_and_shows_our_busy_job():
    # Given: our data of every kind, and our worker (Sidekiq 6's forms) running a job
    RecordJob.perform_later(1)
    RecordJob.set(wait=3600).perform_later(2)
    retry_jid = fail_once(FailingJob, "web")
    dead_jid = fail_once(FailingJob, "dead", dead=True)
    worker = start_worker("-c", "1", "-q", "busy", env={"BGJOBS_TEST_SIDEKIQ_VERSION": "6"})
    busy = GateJob.set(queue="busy").perform_later("web")
    wait_until(lambda: any(True for _ in api.WorkSet()), timeout=20, message="the worker to report its job")

    # When: Sidekiq's Web UI renders every page
    pages = ruby(f"""
        $web = web_app
        include Rack::Test::Methods
        def app = $web
        paths = ["/", "/busy", "/queues", "/queues/default", "/queues/busy", "/retries", "/scheduled",
                 "/morgue", "/stats", "/stats/queues",
                 *Sidekiq::RetrySet.new.map {{ |e| "/retries/#{{e.score}}-#{{e.jid}}" }},  # the links its list pages show
                 *Sidekiq::DeadSet.new.map {{ |e| "/morgue/#{{e.score}}-#{{e.jid}}" }}]
        emit(paths.to_h {{ |path| get(path); [path, {{status: last_response.status, body: last_response.body}}] }})
    """)
    get_redis().rpush(GATE_KEY, "go")
    worker.terminate()

    # Then: all answer 200, and the Busy page lists our job with its class and arguments
    print("Sidekiq::Web answered:", {path: page["status"] for path, page in pages.items()})
    assert {path: page["status"] for path, page in pages.items()} == {path: 200 for path in pages}
    assert "InteropGateJob" in pages["/busy"]["body"] and busy.jid not in pages["/queues/busy"]["body"]
    assert retry_jid in pages[next(p for p in pages if p.startswith("/retries/"))]["body"]
    assert dead_jid in pages[next(p for p in pages if p.startswith("/morgue/"))]["body"]
    assert "tests.testapp.jobs.RecordJob" in pages["/queues/default"]["body"]


@pytest.mark.slow
def test_activejob_payloads_both_ways():
    # Given: an ActiveJob payload built in Ruby as Sidekiq's ActiveJob adapter pushes it (no Rails
    # here: the hash ActiveJob::Base#serialize makes, by hand), and one of our activejob = True jobs
    jid = ruby("""
        data = {"job_class" => "ReportJob", "job_id" => "3b0f7f3e-0000-4000-8000-000000000001",
                "provider_job_id" => nil, "queue_name" => "default", "priority" => nil,
                "arguments" => [7, {"a" => 1, "_aj_symbol_keys" => ["a"]},
                                {"_aj_globalid" => "gid://shop/User/42"},
                                {"mode" => "full", "_aj_ruby2_keywords" => ["mode"]}],
                "executions" => 0, "exception_executions" => {}, "locale" => "en", "timezone" => "UTC",
                "enqueued_at" => Time.now.utc.iso8601(9)}
        emit(Sidekiq::Client.push("class" => "ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper",
                                  "wrapped" => "ReportJob", "queue" => "default", "args" => [data]))
    """)
    ours = ToRailsJob.set(queue="rails").perform_later(1, {"k": "v"}, mode="x")

    # When: Ruby's API looks at ours, and our worker runs Ruby's
    seen = ruby("""
        job = Sidekiq::Queue.new("rails").first
        emit({klass: job.klass, display_class: job.display_class, display_args: job.display_args, jid: job.jid})
    """)
    worker = start_worker("-c", "1", "-q", "default")
    wait_until(lambda: len(performed()) == 1, timeout=30, message="our worker to run the ActiveJob payload")
    worker.terminate()

    # Then: Sidekiq shows ours as the Rails job with its arguments; ReportJob ran Ruby's
    assert seen == {"klass": "ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper",
                    "display_class": "DigestMailerJob", "jid": ours.jid,
                    "display_args": [1, {"k": "v", "_aj_symbol_keys": []}, {"mode": "x", "_aj_ruby2_keywords": ["mode"]}]}
    [run] = performed()
    assert run["jid"] == jid and run["args"] == [7, {"a": 1}, "gid://shop/User/42"] and run["kwargs"] == {"mode": "full"}
