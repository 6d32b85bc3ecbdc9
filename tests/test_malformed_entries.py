"""No malformed entry in Redis takes a page down: the sweep over every admin page and every
read method of ``django_bgjobs.api``.

Redis is shared with other writers (a Ruby Sidekiq client, an older version of this app, a
person with ``redis-cli``).  Each scenario below writes one kind of damage everywhere the
monitoring side reads; the sweep then opens every admin page (the routes come from
``DashboardAdmin.page_urls()``, so a new page is swept too) and calls every public read method
of the API (a guard test fails when one is added and not called here).  Nothing may raise or
answer 500; an entry that cannot be shown normally is shown as unreadable, and can be deleted
by its exact member, from the admin and from the API.
"""

import datetime
import inspect
import json
import re

import pytest
from django.contrib import admin
from django.urls import NoReverseMatch, reverse
from django.utils.html import escape

from django_bgjobs import api, keys
from django_bgjobs.admin.sets import entry_token
from django_bgjobs.models import FailedJob
from django_bgjobs.models import Dashboard
from tests.admin_support import messages_of, operator_client, operator, payload  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db

JOB = "tests.testapp.jobs.RecordJob"
NOW_S = 1_700_000_000
TODAY = datetime.datetime.now(datetime.timezone.utc).date()


def nested(levels):
    return "[" * levels + "]" * levels


def job(**fields):
    """A payload's JSON with ``fields`` over a plain one (a field given as None is left out)."""
    item = {"class": JOB, "args": [1], "jid": "0" * 24, "queue": "default", "created_at": NOW_S,
            "enqueued_at": NOW_S}
    item.update(fields)
    return json.dumps({k: v for k, v in item.items() if v is not None})


#: Members no payload should be, each as (id, raw member).  Every one goes into each queue
#: list, the schedule, retry and dead sets and a process's work hash.
BAD_MEMBERS = [
    ("not-json", "{not json"),
    ("json-list", "[1, 2]"),
    ("json-string", '"text"'),
    ("json-number", "42"),
    ("json-null", "null"),
    ("empty", ""),
    ("binary", b"\xff\xfe\x00\x80garbage\xc3\x28"),
    ("args-not-a-list", job(args="1", jid="1" * 24)),
    ("no-class", json.dumps({"args": [1], "jid": "2" * 24})),
    ("jid-slash-html", job(jid="a/b<script>alert(1)</script>")),
    ("jid-number", job(jid=5)),
    ("jid-object", job(jid={"a": 1})),
    ("jid-empty", job(jid="")),
    ("jid-dots", job(jid="..")),
    ("class-html", job(**{"class": "<b>bold</b>/x", "jid": "3" * 24})),
    ("queue-field-list", job(queue=["a"], jid="4" * 24)),
    ("queue-field-invalid", job(queue="no such/queue", jid="5" * 24)),
    ("times-strings", job(created_at="yesterday", enqueued_at="now", failed_at="soon", retried_at="x", at="later",
                          jid="6" * 24)),
    ("times-huge", '{"class": "%s", "args": [], "jid": "%s", "created_at": 1%s, "enqueued_at": 1e308, '
                   '"failed_at": -1e308, "retried_at": 1%s}' % (JOB, "7" * 24, "0" * 400, "0" * 400)),
    ("times-bool", job(created_at=True, enqueued_at=False, jid="8" * 24)),
    ("error-fields-odd", job(error_class=["x"], error_message={"a": 1}, error_backtrace=5, retry_count="x",
                             dead_reason=[1], jid="9" * 24)),
    ("backtrace-garbage-base64", job(error_backtrace="eJzLSM3JyQcABiwCFQ==", jid="a" * 24)),
    ("tag-odd", job(args=[{"__bgjobs__": "model", "value": "x"}, {"__bgjobs__": "kwargs", "value": 5},
                          {"__bgjobs__": "nope"}], jid="b" * 24)),
    ("args-99-deep", job(args=[json.loads(nested(98))], jid="c" * 24)),
    ("args-350-deep", '{"class": "%s", "args": [%s], "jid": "%s"}' % (JOB, nested(350), "d" * 24)),
    ("args-950-deep", '{"class": "%s", "args": [%s], "jid": "%s"}' % (JOB, nested(950), "e" * 24)),
    ("raw-100k-deep", '{"class": "%s", "args": [%s]}' % (JOB, nested(100_000))),
    ("long-args", job(args=["x" * 100_000], jid="f" * 24)),
]
BAD_MEMBER_IDS = [case[0] for case in BAD_MEMBERS]

#: Queue names in the ``queues`` set that are not a valid queue's.
BAD_QUEUE_NAMES = ["bad/name", "<script>alert(1)</script>", "has space", "", "x" * 300, "..", ".", b"\xff\xfebin"]
#: Scores a sorted set can hold.
ODD_SCORES = [float("inf"), float("-inf"), 1e300, -5.0, 0.0]


def text_of(raw):
    return raw if isinstance(raw, str) else raw.decode("utf-8", "replace")


# -- the damage, scenario by scenario ---------------------------------------------------------


def bad_members_everywhere(raw_redis):
    """Every bad member in every list, set and hash of jobs; bad queue names; odd scores."""
    members = [raw for _, raw in BAD_MEMBERS]
    raw_redis.lpush(keys.queue("default"), *members)
    raw_redis.sadd(keys.queues(), "default")
    for key in (keys.schedule(), keys.retry(), keys.dead()):
        raw_redis.zadd(key, {raw: NOW_S + n for n, raw in enumerate(members)})
        raw_redis.zadd(key, {job(jid=f"score{n}"): score for n, score in enumerate(ODD_SCORES)})
    for name in BAD_QUEUE_NAMES:
        raw_redis.sadd(keys.queues(), name)
        if isinstance(name, str):
            raw_redis.lpush(keys.queue(name), job())
    raw_redis.sadd(keys.paused(), *BAD_QUEUE_NAMES)
    # A failure record of such a job (an older version wrote records of payloads up to ~950 deep).
    deep = json.loads(nested(900))
    FailedJob.objects.create(jid="a/b<script>", job_class="<b>x</b>", queue="bad/name", args=[deep],
                             payload={"class": "<b>x</b>", "args": [deep], "jid": 5}, error_class="<i>E</i>",
                             error_message="x" * 100_000, reason="<b>why</b>")


def odd_processes(raw_redis):
    """Processes whose heartbeat fields have the wrong types, members naming other keys."""
    identity = "host:1:odd"
    raw_redis.sadd(keys.processes(), identity, "queue:default", "stringkey", "gone", "<b>x</b>/y", "")
    raw_redis.hset(keys.process(identity), mapping={
        "info": json.dumps({"concurrency": "abc", "async_concurrency": [1], "queues": "notalist", "hostname": ["h"],
                            "pid": {"x": 1}, "started_at": "x", "tag": 5}),
        "busy": "x", "beat": "soon", "quiet": "maybe",
    })
    raw_redis.hset(keys.work(identity), mapping={
        f"t{n}": json.dumps({"queue": "default", "payload": text_of(raw), "run_at": "x"}) for n, (_, raw) in
        enumerate(BAD_MEMBERS)
    })
    raw_redis.hset(keys.work(identity), mapping={
        "not-json": "{x", "list": "[1]", "deep": nested(100_000), "payload-deep": '{"payload": %s}' % nested(5000),
        "payload-dict": json.dumps({"payload": {"class": JOB, "jid": "a/b"}, "queue": ["q"], "run_at": 1e300}),
    })
    raw_redis.rpush(keys.queue("default"), job())
    raw_redis.set("stringkey", "a string")
    raw_redis.hset(keys.process("<b>x</b>/y"), mapping={"info": nested(100_000), "busy": "1" + "0" * 400})
    raw_redis.set(keys.work("<b>x</b>/y"), "not a hash")


def odd_stats_batches_locks_cron_metrics(raw_redis):
    """Counters, batches, unique locks, recurring jobs and metrics with odd contents."""
    raw_redis.set(keys.stat("processed", TODAY.isoformat()), "3" + "0" * 400)
    raw_redis.set(keys.stat("failed", TODAY.isoformat()), "-5")
    raw_redis.set(keys.stat("processed", (TODAY - datetime.timedelta(days=1)).isoformat()), "abc")
    raw_redis.set(keys.stat("processed"), "1" + "0" * 400)
    raw_redis.set(keys.stat("failed"), "x")
    # Batches: ids no URL can hold, a parent and failures no URL can hold, odd fields.
    for bid in ("a/b<i>", "good", "", "x" * 300):
        raw_redis.zadd(keys.batches(), {bid: NOW_S})
        raw_redis.hset(keys.batch(bid), mapping={
            "description": "<b>d</b>", "parent": "../p/q", "total": "x", "created_at": "soon",
            "callbacks": "{not json", "kids": "1" + "0" * 400, "complete_at": "1e400",
        })
        raw_redis.sadd(keys.batch_jids(bid), "j/1", "<i>2</i>")
        raw_redis.hset(keys.batch_failures(bid), mapping={
            "f/1": "{not json", "<b>f2</b>": "[1]", "f3": json.dumps({"failed_at": "soon", "retry_count": "x",
                                                                   "error_class": ["x"], "class": 5}),
            "f4": nested(100_000),
        })
        raw_redis.sadd(keys.batch_dead(bid), "f/1")
    raw_redis.zadd(keys.batches(), {"strbatch": NOW_S})
    raw_redis.set(keys.batch("strbatch"), "a string")
    # Unique locks: odd fields, a key of another type under the prefix.
    raw_redis.hset(keys.unique_lock("ab12"), mapping={"jid": "a/b", "class": "<b>x</b>", "locked_at": "x",
                                                     "at": "1e400"})
    raw_redis.set(keys.unique_lock("cd34"), "a string")
    raw_redis.hset(keys.unique_run_lock("ef56"), mapping={"jid": "", "heartbeat": "x"})
    # Recurring jobs: definitions that do not parse, a state of another type.
    raw_redis.hset(keys.cron_schedules(), mapping={
        "not-json": "{x", "list": "[1]", "empty": "{}", "deep": nested(100_000),
        "odd": json.dumps({"name": "odd", "cron": "61 * * * *", "job_name": "<b>x</b>", "args": "x", "kwargs": [1],
                           "queue": "a/b"}),
        "a/b": json.dumps({"name": "a/b", "cron": "* * * * *", "job_name": JOB, "queue": "<b>q</b>",
                           "timezone": "No/Such"}),
    })
    raw_redis.set(keys.cron_state("a/b"), "a string")
    # Metrics: fields that are not numbers, a minute of another type.
    minute = NOW_S // 60 * 60
    raw_redis.hset(keys.metrics(minute), mapping={"X|p": "abc", "X|ms": "1" + "0" * 400, "|": "1", "Y": "2"})


def wrong_types_everywhere(raw_redis):
    """Every key the monitoring side reads holds a type it does not expect."""
    raw_redis.set(keys.schedule(), "a string")
    raw_redis.rpush(keys.retry(), "a list")
    raw_redis.hset(keys.dead(), "a", "hash")
    raw_redis.sadd(keys.queues(), "default", "hashq", "setq", "zsetq")
    raw_redis.hset(keys.queue("default"), "a", "hash")
    raw_redis.hset(keys.queue("hashq"), "a", "hash")
    raw_redis.sadd(keys.queue("setq"), "a")
    raw_redis.zadd(keys.queue("zsetq"), {"a": 1})
    raw_redis.hset(keys.stat("processed"), "a", "hash")
    raw_redis.rpush(keys.stat("failed"), "x")
    raw_redis.sadd(keys.stat("processed", TODAY.isoformat()), "x")
    raw_redis.set(keys.processes(), "a string")
    raw_redis.set(keys.paused(), "a string")
    raw_redis.set(keys.batches(), "a string")
    raw_redis.set(keys.cron_schedules(), "a string")
    raw_redis.set(keys.metrics(NOW_S // 60 * 60), "a string")


def wrong_types_inside(raw_redis):
    """The keys named by members hold the wrong type: queue lists, process hashes, batches, cron states."""
    raw_redis.sadd(keys.queues(), "default")
    raw_redis.hset(keys.queue("default"), "a", "hash")
    raw_redis.sadd(keys.processes(), "p1", "p2")
    raw_redis.rpush(keys.process("p1"), "a list")
    raw_redis.hset(keys.process("p2"), mapping={"info": "{}", "busy": 1})
    raw_redis.rpush(keys.work("p2"), "a list")
    raw_redis.zadd(keys.batches(), {"b1": NOW_S})
    raw_redis.hset(keys.batch("b1"), "total", 1)
    raw_redis.set(keys.batch_jids("b1"), "x")
    raw_redis.set(keys.batch_failures("b1"), "x")
    raw_redis.set(keys.batch_dead("b1"), "x")
    raw_redis.hset(keys.cron_schedules(), "c1", json.dumps({"name": "c1", "cron": "* * * * *", "job_name": JOB}))
    raw_redis.rpush(keys.cron_state("c1"), "x")


SCENARIOS = {
    "bad-members": bad_members_everywhere,
    "odd-processes": odd_processes,
    "odd-stats-batches-locks-cron-metrics": odd_stats_batches_locks_cron_metrics,
    "wrong-types": wrong_types_everywhere,
    "wrong-types-inside": wrong_types_inside,
}


# -- every page -------------------------------------------------------------------------------


def page_urls(raw_redis):
    """Every admin page's URL with every argument the data gives it (a queue name, a jid, a
    batch id, a bulk action), from ``DashboardAdmin.page_urls()``; arguments no URL can hold
    are skipped (their rows must then show them without a link)."""
    values = {
        "queue": ["default"] + [text_of(n) for n in _members(raw_redis, keys.queues())],
        "jid": ["0" * 24, "a/b<script>alert(1)</script>", "5", ".."],
        "bid": ["good", "a/b<i>", "strbatch", "b1"] + [text_of(b) for b in _zmembers(raw_redis, keys.batches())],
        "action": ["retry", "delete", "kill", "add_to_queue", "nope"],
    }
    model_admin = admin.site._registry[Dashboard]
    urls = set()
    for route, _view, name in model_admin.page_urls():
        params = re.findall(r"<str:(\w+)>", route)
        combos = [[]]
        for param in params:
            combos = [combo + [value] for combo in combos for value in values[param]]
        for args in combos:
            try:
                urls.add(reverse(f"admin:{name}", args=args))
            except NoReverseMatch:
                pass
    urls.add(reverse("admin:django_bgjobs_failedjob_changelist"))
    for row in FailedJob.objects.all():
        urls.add(reverse("admin:django_bgjobs_failedjob_change", args=[row.pk]))
    return sorted(urls)


def _members(raw_redis, key):
    return raw_redis.smembers(key) if raw_redis.type(key) == b"set" else []


def _zmembers(raw_redis, key):
    return raw_redis.zrange(key, 0, -1) if raw_redis.type(key) == b"zset" else []


#: The query strings a page reads, by the end of its path.
QUERIES = [
    (re.compile(r"/(retries|dead|scheduled)/$"), ("?q=a", "?q=%2F", "?page=2")),
    (re.compile(r"/queues/[^/]+/$"), ("?order=oldest", "?page=2")),
    (re.compile(r"/jobs/[^/]+/$"), ("?at=inf", "?at=-5")),
    (re.compile(r"/(batches|locks)/$"), ("?page=2", "?class=%3Cb%3Ex%3C%2Fb%3E")),
    (re.compile(r"/metrics/$"), ("?minutes=480",)),
]


def get_every_page(client, urls):
    """``{url: status}`` of a GET of each URL, and of it with each query string it reads."""
    statuses = {}
    for url in urls:
        queries = [""] + [query for pattern, more in QUERIES if pattern.search(url) for query in more]
        for query in queries:
            response = client.get(url + query)
            statuses[url + query] = response.status_code
    return statuses


@pytest.mark.parametrize("scenario", list(SCENARIOS), ids=list(SCENARIOS))
def test_every_admin_page_answers_whatever_redis_holds(operator_client, raw_redis, scenario):
    # Given
    SCENARIOS[scenario](raw_redis)

    # When
    statuses = get_every_page(operator_client, page_urls(raw_redis))

    # Then: nothing failed as a whole (a 404 is a page for an entry that is not there)
    assert {url: status for url, status in statuses.items() if status not in (200, 404)} == {}
    assert any(url.endswith("/dashboard/") for url in statuses)


# -- every read method of the API --------------------------------------------------------------

#: Public methods of the API's classes that write (or act): the sweep does not call them.
WRITES = {
    "delete", "retry", "add_to_queue", "kill", "clear", "retry_all", "add_all_to_queue", "kill_all",
    "delete_by_jid", "delete_job", "push", "pause", "resume", "quiet", "stop", "cleanup", "reset",
    "enqueue_now", "disable", "enable", "release", "queue_end", "push_fired_callbacks", "requeued", "forget",
    "delete",
}


def read_everything(client=None):
    """Call every public read method of the API on everything it lists; return what was called."""
    called = set()

    def call(owner, name, *args, **kwargs):
        called.add((owner if inspect.isclass(owner) else type(owner), name))
        value = getattr(owner, name)
        return value(*args, **kwargs) if callable(value) else value

    def record_fields(record):
        for name in ("jid", "klass", "args", "queue", "created_at", "enqueued_at", "failed_at", "retried_at",
                     "retry_count", "error_class", "error_message", "error_backtrace", "dead_reason", "latency",
                     "display_args", "parse_error", "raw", "item", "member_id", "raw_excerpt"):
            call(record, name)
        repr(record)
        hash(record)

    stats = api.Stats()
    for name in ("processed", "failed", "enqueued", "retry_size", "scheduled_size", "dead_size", "queues",
                 "processes_size", "workers_size", "default_queue_latency"):
        call(stats, name)
    repr(stats)
    call(api.Stats, "history", days=30)
    for queue in call(api.Queue, "all"):
        repr(queue)
        for name in ("size", "latency", "paused", "key", "name", "problem"):
            call(queue, name)
        len(queue)
        for record in call(queue, "page", 0, 50) + call(queue, "page", 0, 50, newest_first=False):
            record_fields(record)
        for record in call(queue, "jobs"):
            record_fields(record)
        list(iter(queue))
        call(queue, "find_job", "0" * 24)
        call(queue, "find_job", "a/b<script>alert(1)</script>")
        call(queue, "find_member", "0" * 40)
    for set_class in (api.ScheduledSet, api.RetrySet, api.DeadSet):
        sorted_set = set_class()
        repr(sorted_set)
        call(sorted_set, "size")
        len(sorted_set)
        call(sorted_set, "key")
        call(sorted_set, "problem")
        for entry in (call(sorted_set, "page", 0, 100) + call(sorted_set, "page", 0, 100, reverse=True)
                      + list(call(sorted_set, "entries")) + list(call(sorted_set, "scan", "a"))
                      + list(call(sorted_set, "fetch", (float("-inf"), float("inf"))))):
            record_fields(entry)
            call(entry, "at")
            call(entry, "score")
        list(iter(sorted_set))
        call(sorted_set, "find_job", "0" * 24)
        call(sorted_set, "find_job", "a/b<script>alert(1)</script>")
        call(sorted_set, "fetch", NOW_S)
        call(sorted_set, "find_member", "0" * 40)
        call(sorted_set, "find_member", "0" * 40, float("inf"))
    process_set = api.ProcessSet()
    for process in list(iter(process_set)):
        repr(process)
        for name in ("identity", "info", "busy", "beat", "is_quiet", "hostname", "pid", "tag", "queues",
                     "concurrency", "async_concurrency", "started_at"):
            call(process, name)
    call(process_set, "size")
    len(process_set)
    call(process_set, "total_concurrency")
    call(process_set, "stale")
    call(process_set, "served_queues")
    for identity in ("host:1:odd", "queue:default", "stringkey", "p1", "p2", "", "nobody"):
        call(process_set, "get", identity)
    work_set = api.WorkSet()
    for _identity, _thread, work in iter(work_set):
        record_fields(work["job"])
    call(work_set, "size")
    call(work_set, "find_work_by_jid", "0" * 24)
    batch_set = api.BatchSet()
    call(batch_set, "size")
    len(batch_set)
    statuses = call(batch_set, "page", 0, 100) + list(iter(batch_set))
    for bid in ("good", "a/b<i>", "strbatch", "b1", "", "nope"):
        status = call(batch_set, "get", bid)
        if status is not None:
            statuses.append(status)
    for status in statuses:
        repr(status)
        for name in ("bid", "description", "parent_bid", "total", "pending", "failures", "dead", "done", "complete",
                     "success", "created_at", "complete_at", "success_at", "expires_in_s", "callbacks", "kids"):
            call(status, name)
        call(status, "failed_jobs")
        call(status, "jids")
    cron_set = api.CronSet()
    len(cron_set)
    for entry in call(cron_set, "entries") + list(iter(cron_set)):
        for name in ("name", "description", "enabled", "last_tick", "last_enqueued_at", "last_jid", "schedule"):
            call(entry, name)
        call(entry, "next_run", now=NOW_S)
    call(cron_set, "unreadable")
    for name in ("not-json", "list", "empty", "deep", "odd", "a/b", "c1", "nope"):
        call(cron_set, "get", name)
    locks = api.UniqueLocks()
    for lock in list(call(locks, "scan")) + list(iter(locks)):
        repr(lock)
    call(locks, "find", "a/b")
    for key in (keys.unique_lock("ab12"), keys.unique_lock("cd34"), keys.unique_run_lock("ef56"), "x"):
        call(locks, "get", key)
        call(locks, "is_lock_key", key)
    for minutes in (60, 480):
        metrics = api.JobMetrics(minutes=minutes, now=NOW_S)
        repr(metrics)
        for row in call(metrics, "classes"):
            call(row, "avg_ms")
            call(row, "failure_rate")
            call(metrics, "series", row.name)
        call(metrics, "series", "X")
    return called


@pytest.mark.parametrize("scenario", list(SCENARIOS), ids=list(SCENARIOS))
def test_every_api_read_method_answers_whatever_redis_holds(db, raw_redis, scenario):
    SCENARIOS[scenario](raw_redis)

    read_everything()  # raises on the first failure


def test_the_sweep_calls_every_public_read_method_of_the_api(db, raw_redis):
    # Given: an entry of every kind, so every loop above runs
    for scenario in SCENARIOS.values():
        if scenario not in (wrong_types_everywhere, wrong_types_inside):
            scenario(raw_redis)
    raw_redis.hset(keys.process("host:1:odd"), "busy", 1)

    # When
    called = read_everything()

    # Then: each public method or property of each API class is either called or a write
    missing = []
    for class_name in api.__all__:
        cls = getattr(api, class_name)
        for name, member in inspect.getmembers(cls):
            if name.startswith("_") or name in WRITES or name in ("redis",):
                continue
            if not (inspect.isfunction(member) or isinstance(member, (property, classmethod))
                    or inspect.ismethod(member)):
                continue
            if not any(called_name == name and issubclass(owner, cls) for owner, called_name in called):
                missing.append(f"{class_name}.{name}")
    assert missing == [], missing


# -- unreadable entries are shown, and deleted by their exact member ---------------------------

SET_PAGES = {"scheduled": keys.schedule(), "retries": keys.retry(), "dead": keys.dead()}


def listed(client, url):
    """The HTML of every page of a list."""
    pages, number = [], 1
    while True:
        response = client.get(url, {"page": number})
        assert response.status_code == 200
        pages.append(response.content.decode())
        if not response.context["pagination"].has_next:
            return "\n".join(pages)
        number += 1


@pytest.mark.parametrize("slug", list(SET_PAGES))
def test_every_entry_of_a_set_is_listed_and_deleted_by_its_exact_member_from_the_admin(
    operator_client, raw_redis, slug,
):
    # Given: every bad member in the set, and one good entry
    bad_members_everywhere(raw_redis)
    key = SET_PAGES[slug]
    raw_redis.zadd(key, {job(jid="9" * 24 + "good"): NOW_S - 1})
    kind_set = {"scheduled": api.ScheduledSet, "retries": api.RetrySet, "dead": api.DeadSet}[slug]()
    entries = [entry for entry in kind_set.entries() if entry.jid != "9" * 24 + "good"]
    assert len(entries) == len(BAD_MEMBERS) + len(ODD_SCORES)

    # When: the list is read
    page = listed(operator_client, reverse(f"admin:django_bgjobs_{slug}"))

    # Then: each entry has its row, an unreadable one with the start of its raw text
    for entry in entries:
        assert f'value="delete {escape(entry_token(entry))}"' in page
        if entry.parse_error:
            assert escape(entry.display_args[:60]) in page
    assert page.count("unreadable payload") == sum(1 for entry in entries if entry.parse_error)

    # When: each is deleted from its row
    for entry in entries:
        response = operator_client.post(reverse(f"admin:django_bgjobs_{slug}"),
                                        {"row_action": f"delete {entry_token(entry)}"}, follow=True)
        assert messages_of(response) == ["Deleted 1 job."], entry.raw[:80]
        assert raw_redis.zscore(key, entry.raw) is None

    # Then: only the good entry is left
    assert raw_redis.zrange(key, 0, -1) == [job(jid="9" * 24 + "good").encode()]


def test_every_job_of_a_queue_is_listed_and_deleted_by_its_exact_member_from_the_admin(operator_client, raw_redis):
    # Given
    bad_members_everywhere(raw_redis)
    records = list(api.Queue("default").jobs())
    assert len(records) == len(BAD_MEMBERS)

    # When
    page = listed(operator_client, reverse("admin:django_bgjobs_queue", args=["default"]))

    # Then
    for record in records:
        assert f'name="member" value="{record.member_id}"' in page
        if record.parse_error:
            assert escape(record.display_args[:60]) in page
    for record in records:
        response = operator_client.post(reverse("admin:django_bgjobs_queue", args=["default"]),
                                        {"action": "delete", "member": record.member_id}, follow=True)
        assert messages_of(response)[0].startswith("Deleted job "), record.raw[:80]
    assert raw_redis.llen(keys.queue("default")) == 0


@pytest.mark.parametrize("where", ["queue", "schedule", "retry", "dead"])
def test_every_entry_is_deleted_by_its_exact_member_through_the_api(raw_redis, where):
    bad_members_everywhere(raw_redis)
    source = api.Queue("default") if where == "queue" else {
        "schedule": api.ScheduledSet, "retry": api.RetrySet, "dead": api.DeadSet}[where]()

    records = list(source)
    deleted = [source.find_member(record.member_id).delete() for record in records]

    assert all(deleted) and len(deleted) >= len(BAD_MEMBERS)
    assert raw_redis.exists(keys.queue("default") if where == "queue" else getattr(keys, where)()) == 0


def test_every_unreadable_queue_name_is_listed_and_removed_by_its_exact_member(operator_client, raw_redis):
    # Given: names no queue can have, and a name whose key holds a hash
    bad_members_everywhere(raw_redis)
    raw_redis.sadd(keys.queues(), "hashq")
    raw_redis.hset(keys.queue("hashq"), "a", "b")
    unreadable = [queue.name for queue in api.Queue.all() if queue.problem()]
    assert {"hashq", "bad/name", "", "\ufffd\ufffdbin"} <= set(unreadable)

    # When
    page = operator_client.get(reverse("admin:django_bgjobs_queues")).content.decode()
    dashboard = operator_client.get(reverse("admin:django_bgjobs_dashboard_changelist")).content.decode()

    # Then
    for name in unreadable:
        assert f'name="name" value="{escape(name)}"' in page
        assert escape(name[:59]) in dashboard
    assert "holds a hash, not a list" in page

    # When: each is removed from the list
    for name in unreadable:
        response = operator_client.post(reverse("admin:django_bgjobs_queues"), {"action": "forget", "name": name},
                                        follow=True)
        assert messages_of(response)[0].startswith("Removed "), name

    # Then: the names are gone, the keys (another program's, maybe) are left alone
    remaining = raw_redis.smembers(keys.queues())
    assert {text_of(name) for name in remaining}.isdisjoint(unreadable) and b"default" in remaining
    assert raw_redis.hget(keys.queue("hashq"), "a") == b"b"


def test_a_list_whose_key_holds_another_type_is_shown_empty_with_the_reason(operator_client, raw_redis):
    wrong_types_everywhere(raw_redis)

    pages = {slug: operator_client.get(reverse(f"admin:django_bgjobs_{slug}")).content.decode()
             for slug in SET_PAGES}
    queue_page = operator_client.get(reverse("admin:django_bgjobs_queue", args=["default"])).content.decode()

    assert "its key &#x27;schedule&#x27; holds a string, not a zset" in pages["scheduled"]
    assert "its key &#x27;retry&#x27; holds a list, not a zset" in pages["retries"]
    assert "its key &#x27;dead&#x27; holds a hash, not a zset" in pages["dead"]
    assert "its key &#x27;queue:default&#x27; holds a hash, not a list" in queue_page


def test_the_locks_page_lists_only_keys_it_can_release(operator_client, raw_redis):
    # Given: a lock with odd fields, and keys of other programs under the prefix
    odd_stats_batches_locks_cron_metrics(raw_redis)
    raw_redis.hset("unique:not-a-digest", "jid", "x")

    # When
    page = operator_client.get(reverse("admin:django_bgjobs_locks"))

    # Then: the lock is listed (its odd fields escaped) and releasable; the others are not listed
    listed_keys = sorted(lock.key for lock in page.context["locks"])
    assert listed_keys == [keys.unique_lock("ab12"), keys.unique_run_lock("ef56")]
    assert "&lt;b&gt;x&lt;/b&gt;" in page.content.decode()
    for lock in page.context["locks"]:
        response = operator_client.post(reverse("admin:django_bgjobs_locks"), {"action": "release", "key": lock.key},
                                        follow=True)
        assert messages_of(response)[0].startswith("Released "), lock.key
    assert raw_redis.exists(keys.unique_lock("ab12"), keys.unique_run_lock("ef56")) == 0
    assert raw_redis.exists("unique:not-a-digest", keys.unique_lock("cd34")) == 2
