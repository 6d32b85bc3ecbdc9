"""What Sidekiq 7 and 8 write to Redis, written down from their source (Debian ships only 6.4.1,
which the interop tests run for real).  Each entry names the file and version it comes from;
``tests/test_sidekiq_versions.py`` loads them into Redis and checks that our code reads them,
and that what we write with ``SIDEKIQ_VERSION`` 7 or 8 has the same shape.

Sources (github.com/sidekiq/sidekiq at the tags named):
* v7.3.0 lib/sidekiq/job_util.rb ``normalize_item``: ``created_at = Time.now.to_f``;
  lib/sidekiq/client.rb ``atomic_push``: ``enqueued_at = Time.now.to_f`` for immediate jobs, and a
  scheduled payload stored without ``at`` and ``enqueued_at`` (its score is when).
* v8.0.0 lib/sidekiq/job_util.rb ``now_in_millis`` (``created_at``), client.rb ``atomic_push``
  (``enqueued_at = ::Process.clock_gettime(CLOCK_REALTIME, :millisecond)``), job_retry.rb
  (``failed_at`` / ``retried_at = now_ms``); Changes.md 8.0.0: "created_at, enqueued_at, failed_at
  and retried_at attributes are now stored as epoch milliseconds"; the ActiveJob wrapper class is
  ``Sidekiq::ActiveJob::Wrapper``.
* v7.0.0 and v8.0.0 lib/sidekiq/launcher.rb: the busy jobs hash is ``IDENTITY:work`` (6.x:
  ``IDENTITY:workers``), each value ``{"queue", "payload" (the job's JSON text), "run_at"
  (Time.now.to_i)}`` (processor.rb); the process hash has ``info``, ``busy``, ``beat``
  (float seconds), ``rtt_us``, ``quiet`` (``"true"``/``"false"``), ``rss`` (kB).
* v7.0.0 lib/sidekiq/metrics/tracking.rb: ``j|%Y%m%d|%-H:%-M`` hashes (``CLASS|p``, ``CLASS|f``,
  ``CLASS|ms``), 8 hours; v8.0.0: ``j|%y%m%d|%-H:%M`` (8 hours) and the ten-minute
  ``j|%y%m%d|%-H:%M`` minus its last digit (72 hours).
* job_retry.rb: ``error_backtrace`` is zlib-deflated JSON in Base64 (compressed since 6.0.1):
  ``Base64.encode64`` (a newline every 60 characters) up to 7.2.0, ``pack("m0")`` (strict, no
  newlines) from 7.2.1, so 7.3.0 and 8.0.0 write the strict form.
"""

import base64
import json
import textwrap
import zlib

BACKTRACE = ["app/jobs/hard_job.rb:12:in `perform'", "sidekiq/processor.rb:202:in `execute_job'"]


def encode64(data):
    """Ruby's ``Base64.encode64``: a newline after every 60 characters and at the end."""
    return "".join(line + "\n" for line in textwrap.wrap(base64.b64encode(data).decode(), 60))


COMPRESSED_BACKTRACE = base64.b64encode(zlib.compress(json.dumps(BACKTRACE).encode())).decode()  # 7.2.1+, 8

# 2026-12-07 10:00:00 UTC, and the milliseconds Sidekiq 8 writes for it
T = 1_796_637_600.25
T_MS = 1_796_637_600_250


def _job(version, jid, **fields):
    stamp = T_MS if version == 8 else T
    return {"retry": True, "queue": "default", "class": "HardJob", "args": [1, "two"], "jid": jid,
            "created_at": stamp, **fields}


def fixture(version):
    """``{key: (type, value)}`` as a Sidekiq ``version`` (7, as 7.3.0, or 8) process leaves them mid-run."""
    stamp = T_MS if version == 8 else T
    identity = f"ruby-host:4242:{version}abc"
    waiting = _job(version, "a" * 24, enqueued_at=stamp)
    retrying = _job(version, "b" * 24, enqueued_at=stamp, error_message="boom", error_class="RuntimeError",
                    failed_at=stamp, retry_count=0, error_backtrace=COMPRESSED_BACKTRACE)
    scheduled = _job(version, "c" * 24)  # no "at", no "enqueued_at": the score says when
    running = _job(version, "d" * 24, enqueued_at=stamp)
    minute = "j|20261207|10:0" if version == 7 else "j|261207|10:00"
    metrics = {minute: ("hash", {"HardJob|p": "3", "HardJob|f": "1", "HardJob|ms": "120"})}
    if version == 8:
        metrics["j|261207|10:0"] = ("hash", {"HardJob|p": "3", "HardJob|f": "1", "HardJob|ms": "120"})
    info = {"hostname": "ruby-host", "started_at": T - 60, "pid": 4242, "tag": "app", "concurrency": 5,
            "queues": ["default"], "labels": [], "identity": identity, "version": f"{version}.0.0"}
    if version == 8:
        info |= {"weights": [{"default": 0}], "embedded": False}
    return {
        "queues": ("set", {"default"}),
        "queue:default": ("list", [json.dumps(waiting)]),
        "retry": ("zset", {json.dumps(retrying): T + 30}),
        "schedule": ("zset", {json.dumps(scheduled): T + 3600}),
        "processes": ("set", {identity}),
        identity: ("hash", {"info": json.dumps(info), "busy": "1", "beat": repr(T), "rtt_us": "180",
                            "quiet": "false", "rss": "123456"}),
        f"{identity}:work": ("hash", {"tid-1": json.dumps({"queue": "default", "payload": json.dumps(running),
                                                           "run_at": int(T)})}),
        "stat:processed": ("string", "10"),
        "stat:failed": ("string", "2"),
        **metrics,
    }


def load(redis, version):
    """Write ``fixture(version)`` into ``redis``; return it."""
    data = fixture(version)
    for key, (kind, value) in data.items():
        if kind == "set":
            redis.sadd(key, *value)
        elif kind == "list":
            redis.rpush(key, *value)
        elif kind == "zset":
            redis.zadd(key, value)
        elif kind == "hash":
            redis.hset(key, mapping=value)
        else:
            redis.set(key, value)
    return data
