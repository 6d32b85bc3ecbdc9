"""The processes page (django_bgjobs.admin.processes): live workers, their busy threads, quiet and stop."""

import json

import pytest
from django.urls import reverse

from django_bgjobs import keys
from django_bgjobs.payload import dumps
from tests.admin_support import (  # noqa: F401 - fixtures
    messages_of,
    operator,
    operator_client,
    payload,
    push_at_once,
    register_process,
)

pytestmark = pytest.mark.django_db

PROCESSES = "admin:django_bgjobs_processes"
IDENTITY = "host-1:4242:0123456789ab"


def test_processes_page_shows_each_process_and_the_job_each_busy_thread_runs(operator_client, redis):
    # Given: one busy process, one idle quiet one, and one whose heartbeat expired
    register_process(redis, IDENTITY, busy=1, async_concurrency=100, work={"t7": {
        "queue": "default", "run_at": 1_700_000_050.0, "payload": dumps(payload(5, args=["invoice", 42])),
    }})
    register_process(redis, "host-2:99:abcdefabcdef", quiet=True)
    redis.sadd(keys.processes(), "host-3:1:gone")

    # When
    response = operator_client.get(reverse(PROCESSES))

    # Then
    rows = response.context["rows"]
    assert [row["process"].identity for row in rows] == [IDENTITY, "host-2:99:abcdefabcdef"]
    (work,) = rows[0]["work"]
    assert (work["thread_id"], work["queue"], work["job"].klass, work["job"].args) == (
        "t7", "default", "tests.testapp.jobs.RecordJob", ["invoice", 42],
    )
    page = response.content.decode()
    assert "&#x27;invoice&#x27;, 42" in page  # HTML-escaped quotes
    assert "1 of 10 threads busy" in page
    assert "(+ 100 async slots)" in page.split("host-2")[0]
    assert 'value="quiet"' in page.split("host-2")[0]  # the running process offers Quiet; the quiet one does not


def test_processes_page_says_how_to_start_a_worker_when_none_runs(operator_client):
    page = operator_client.get(reverse(PROCESSES)).content.decode()

    assert "No worker is running." in page
    assert "manage.py runjobs" in page


@pytest.mark.parametrize(("action", "command"), [("quiet", "TSTP"), ("stop", "TERM")])
def test_quiet_and_stop_send_the_command_the_worker_reads_at_its_heartbeat(operator_client, redis, action, command):
    # Given
    register_process(redis, IDENTITY)

    # When
    response = operator_client.post(reverse(PROCESSES), {"identity": IDENTITY, "action": action}, follow=True)

    # Then
    assert redis.lrange(keys.process_signals(IDENTITY), 0, -1) == [command]
    assert messages_of(response)[0].startswith(f"Asked {IDENTITY} to")


def test_quiet_for_a_process_that_has_gone_warns_and_sends_nothing(operator_client, redis):
    response = operator_client.post(reverse(PROCESSES), {"identity": "host-9:1:gone", "action": "quiet"},
                                    follow=True)

    assert messages_of(response) == ["Process host-9:1:gone is not running any more."]
    assert redis.exists(keys.process_signals("host-9:1:gone")) == 0


def test_unknown_process_action_is_refused(operator_client, redis):
    register_process(redis, IDENTITY)

    response = operator_client.post(reverse(PROCESSES), {"identity": IDENTITY, "action": "kill"}, follow=True)

    assert messages_of(response) == ["Unknown action 'kill'."]
    assert redis.exists(keys.process_signals(IDENTITY)) == 0


@pytest.mark.parametrize("member", [False, True], ids=["not-a-member", "member"])
def test_stop_for_an_identity_naming_another_key_says_it_is_not_running_and_writes_nothing(
    operator_client, redis, member,
):
    # Given: a queue's list, its key name posted as an identity (and maybe in the processes set)
    redis.lpush(keys.queue("default"), dumps(payload(1)))
    if member:
        redis.sadd(keys.processes(), keys.queue("default"))

    # When
    response = operator_client.post(reverse(PROCESSES), {"identity": keys.queue("default"), "action": "stop"},
                                    follow=True)

    # Then
    assert response.status_code == 200
    assert messages_of(response) == ["Process queue:default is not running any more."]
    assert redis.exists(keys.process_signals(keys.queue("default"))) == 0
    assert redis.llen(keys.queue("default")) == 1


def test_names_of_no_live_process_are_listed_and_removed_by_their_exact_names(operator_client, redis):
    # Given: a live process, one whose heartbeat expired, and members naming keys of other types
    register_process(redis, IDENTITY)
    redis.sadd(keys.processes(), "host-3:1:gone", keys.queue("default"), "<b>odd</b>/name")
    redis.lpush(keys.queue("default"), dumps(payload(1)))

    # When
    page = operator_client.get(reverse(PROCESSES)).content.decode()
    response = operator_client.post(reverse(PROCESSES), {"action": "cleanup"}, follow=True)

    # Then: listed (escaped), removed from the set, their keys left alone
    assert "host-3:1:gone" in page and "&lt;b&gt;odd&lt;/b&gt;/name" in page and "queue:default</code>" in page
    assert messages_of(response) == ["Removed 3 names of no live process from the list of processes."]
    assert redis.smembers(keys.processes()) == {IDENTITY}
    assert redis.llen(keys.queue("default")) == 1


def test_a_process_whose_heartbeat_fields_have_the_wrong_types_is_shown_with_what_reads(operator_client, redis):
    # Given: concurrency "abc" and other fields of the wrong type, next to a sound process
    register_process(redis, IDENTITY, busy=2, concurrency=5)
    redis.sadd(keys.processes(), "odd:1:x")
    redis.hset(keys.process("odd:1:x"), mapping={"info": json.dumps({
        "concurrency": "abc", "queues": "notalist", "hostname": ["h"], "pid": {"x": 1}, "started_at": "x",
    }), "busy": "x", "beat": "soon"})

    # When
    response = operator_client.get(reverse(PROCESSES))

    # Then
    assert response.status_code == 200
    assert (response.context["busy"], response.context["threads"]) == (2, 5)
    odd = response.context["rows"][1]["process"]
    assert (odd.identity, odd.concurrency, odd.queues, odd.hostname, odd.pid, odd.started_at) == (
        "odd:1:x", None, [], None, None, None,
    )
