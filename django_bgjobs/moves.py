"""Moves of jobs already in Redis from a sorted set (schedule, retry, dead) to their queues.

The typed wrapper of ``lua/move_to_queue.lua``, the one script for such moves, which takes
each job out of the set and pushes it in one atomic step (moved once, never lost):

* :func:`due` is the poller's (``worker/poller.py``): every member due at ``now_s``, lowest
  score first, at most ``limit`` per call.  The payload is never decoded in Python (that would
  cost a round trip per job); Lua reads its ``queue`` and rewrites only its last field, so the
  arguments stay byte for byte as they were.
* :func:`member` and :func:`members` are the monitoring API's (``api/``: retry now, add to
  queue, and their bulk forms): exact members, each moved only if still in the set, so two
  admins clicking at once, or an admin and the poller, move a job once.  The caller gives the
  decoded payload to push: a retry by hand takes one off ``retry_count``, a change Lua could
  not encode without rounding large integers.  A member that does not parse never gets here
  (the API refuses to retry it, with ``InvalidPayloadError``, or leaves it in the set).

Both stamp ``enqueued_at`` the same way, in Lua, with the ``now_s`` given (see the script).

These are moves, not pushes: the job was enqueued once already, so the client middleware
chain, the enqueue callbacks and ``job_enqueued`` do not run again, and nothing here goes
through ``client``.  Core module: it imports no feature, nothing of ``worker`` or ``api``.
"""

from collections.abc import Iterable

import json

import redis

from django_bgjobs import keys, scripts
from django_bgjobs.payload import dumps, timestamp, unscheduled

SCRIPT = "move_to_queue"


def due(client: redis.Redis, set_key: str, *, now_s: float, limit: int) -> int:
    """Move up to ``limit`` members of sorted set ``set_key`` scored <= ``now_s`` (epoch seconds)
    to their queues, lowest score first; return how many moved.

    A member that names no queue goes to ``default``; one that is not a JSON object goes there
    unchanged (the worker buries it in the dead set with the reason).  Call again while it
    returns ``limit``.
    """
    return scripts.run(SCRIPT, [set_key, keys.queues()], ["due", *_now_args(now_s), keys.queue(""), limit],
                       client=client)


def member(client: redis.Redis, set_key: str, raw: str | bytes, *, payload: dict, now_s: float) -> bool:
    """Move the exact member ``raw`` of sorted set ``set_key`` to the head of ``payload["queue"]``
    (a valid queue name: the caller checks it), pushed as ``payload`` without ``at`` and with
    ``enqueued_at = now_s``; True when this call moved it, False (nothing written) when it was
    no longer in the set."""
    return members(client, set_key, [(raw, payload)], now_s=now_s) == 1


def members(client: redis.Redis, set_key: str, jobs: Iterable[tuple[str | bytes, dict]], *, now_s: float) -> int:
    """:func:`member` for each ``(raw, payload)`` of ``jobs``, in one script call; return how
    many moved.  Each is moved or skipped on its own, as :func:`member` would."""
    args = ["members", *_now_args(now_s), keys.queue("")]
    for raw, payload in jobs:
        args += [raw, payload["queue"], _unstamped(payload)]
    if len(args) == 4:
        return 0
    return scripts.run(SCRIPT, [set_key, keys.queues()], args, client=client)


def _now_args(now_s: float) -> list[str]:
    """The script's "due" bound (epoch seconds) and ``enqueued_at`` as JSON (:func:`~django_bgjobs.payload.timestamp`)."""
    return [repr(float(now_s)), json.dumps(timestamp(float(now_s)))]


def _unstamped(payload: dict) -> str:
    """``payload`` encoded without ``at`` and ``enqueued_at``, for the script to append the new
    ``enqueued_at``."""
    return dumps(unscheduled(payload))
