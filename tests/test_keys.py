"""django_bgjobs.keys: every key name pinned.  Changing one breaks Sidekiq compatibility and existing data."""

import pytest
from django.conf import settings
from django.test import override_settings

from django_bgjobs import keys

IDENTITY = "web.1:4242:a1b2c3d4e5f6"

PINNED = [
    (keys.queues, (), "queues"),
    (keys.queue, ("default",), "queue:default"),
    (keys.queue, ("mail.low",), "queue:mail.low"),
    (keys.schedule, (), "schedule"),
    (keys.retry, (), "retry"),
    (keys.dead, (), "dead"),
    (keys.stat, ("processed",), "stat:processed"),
    (keys.stat, ("failed", "2024-05-17"), "stat:failed:2024-05-17"),
    (keys.processes, (), "processes"),
    (keys.process, (IDENTITY,), IDENTITY),
    (keys.work, (IDENTITY,), f"{IDENTITY}:work"),
    (keys.workers, (IDENTITY,), f"{IDENTITY}:workers"),
    (keys.own_work, (IDENTITY,), f"{IDENTITY}:work"),  # SIDEKIQ_VERSION 7, the default
    (keys.process_signals, (IDENTITY,), f"{IDENTITY}-signals"),
    (keys.inflight, (IDENTITY, "default"), f"inflight:{IDENTITY}:default"),
    (keys.inflight_owners, (), "inflight-owners"),
    (keys.paused, (), "paused"),
    (keys.unique_lock, ("0f3a9c",), "unique:0f3a9c"),
    (keys.unique_run_lock, ("0f3a9c",), "unique:0f3a9c:run"),
    (keys.batches, (), "batches"),
    (keys.batch, ("b7e2",), "b-b7e2"),
    (keys.batch_jids, ("b7e2",), "b-b7e2-jids"),
    (keys.batch_failures, ("b7e2",), "b-b7e2-failinfo"),
    (keys.batch_dead, ("b7e2",), "b-b7e2-died"),
    (keys.batch_callbacks, (), "batch-callbacks"),
    (keys.crashes, (), "crashes"),
    (keys.cron_schedules, (), "cron:schedules"),
    (keys.cron_state, ("daily_report",), "cron:state:daily_report"),
    (keys.task_result, ("b4a577edbccf1d805744efa9",), "task:result:b4a577edbccf1d805744efa9"),
    (keys.being_cleared, ("5e1f0a2b3c4d5e6f",), "clearing:5e1f0a2b3c4d5e6f"),
    (keys.metrics, (1_700_000_000.5,), "j|20231114|22:13"),
    (keys.metrics, (1_699_999_400, 8), "j|231114|22:03"),  # Sidekiq 8 names it so
    (keys.metrics_ten_minutes, (1_700_000_000.5,), "j|231114|22:1"),
]


@pytest.mark.parametrize(("build", "args", "expected"), PINNED, ids=[p[2] for p in PINNED])
def test_key_is_sidekiqs_string_when_no_prefix_is_set(build, args, expected):
    assert build(*args) == expected


@pytest.mark.parametrize(("build", "args", "expected"), PINNED, ids=[p[2] for p in PINNED])
def test_key_starts_with_prefix_and_colon_when_key_prefix_is_set(build, args, expected):
    with override_settings(BGJOBS={**settings.BGJOBS, "KEY_PREFIX": "myapp"}):
        assert build(*args) == f"myapp:{expected}"


def test_every_key_function_is_pinned():
    public = {name for name in dir(keys) if not name.startswith("_") and callable(getattr(keys, name))}
    public.discard("conf")

    assert public == {build.__name__ for build, _, _ in PINNED}
