"""Every Redis key django-bgjobs reads or writes, and nothing else builds one.

The names are Sidekiq's, so a Ruby Sidekiq client or Web UI pointed at the same
database sees the same jobs.  ``BGJOBS["KEY_PREFIX"]`` (default empty) is put in
front of every key followed by a colon, like redis-namespace does for Sidekiq.
Changing any string here is a data migration: ``tests/test_keys.py`` pins them.
"""

import time

from django_bgjobs import conf


def _k(name):
    prefix = conf.get("KEY_PREFIX")
    return f"{prefix}:{name}" if prefix else name


def queues():
    """Set of every queue name that has been pushed to. Written by the client."""
    return _k("queues")


def queue(name):
    """List of payloads waiting in queue ``name``; pushed at the head, taken from the tail."""
    return _k(f"queue:{name}")


def schedule():
    """Sorted set of payloads to enqueue later, scored by epoch seconds. Written by the client."""
    return _k("schedule")


def retry():
    """Sorted set of failed payloads waiting to retry, scored by epoch seconds. Written by the worker."""
    return _k("retry")


def dead():
    """Sorted set of payloads that will not run again, scored by death time. Written by the worker."""
    return _k("dead")


def metrics(minute_epoch_s, version=None):
    """Hash of per-class job metrics for one UTC minute: ``CLASS|p`` (jobs run), ``CLASS|f``
    (of them failed), ``CLASS|ms`` (milliseconds spent); written by each worker's heartbeat,
    expiring after ``METRICS_TTL_S``.  Named as the Sidekiq of ``version`` (default
    ``BGJOBS["SIDEKIQ_VERSION"]``) names it: ``j|20231114|22:3`` up to 7, ``j|231114|22:03``
    from 8."""
    minute = time.gmtime(minute_epoch_s)
    if (version or conf.get("SIDEKIQ_VERSION")) == 8:
        return _k(f"j|{time.strftime('%y%m%d', minute)}|{minute.tm_hour}:{minute.tm_min:02d}")
    return _k(f"j|{time.strftime('%Y%m%d', minute)}|{minute.tm_hour}:{minute.tm_min}")


def metrics_ten_minutes(epoch_s):
    """Sidekiq 8's hash of the same metrics for ten minutes (``j|231114|22:0`` for 22:00 to
    22:09), kept 72 hours; written only with ``SIDEKIQ_VERSION = 8``."""
    return metrics(epoch_s, version=8)[:-1]


def being_cleared(token):
    """A queue or sorted set renamed to this while the API clears it: its jobs' unique locks
    and batches are told, then it is deleted (it expires on its own should the clearing
    process die first)."""
    return _k(f"clearing:{token}")


def stat(name, day=None):
    """String counter ``stat:processed`` / ``stat:failed``, or its per-day ``:YYYY-MM-DD`` twin."""
    return _k(f"stat:{name}:{day}") if day else _k(f"stat:{name}")


def processes():
    """Set of live worker identities (Sidekiq's ProcessSet). Written by each worker's heartbeat."""
    return _k("processes")


def process(identity):
    """Hash with one worker's ``info`` JSON, ``busy``, ``beat``, ``quiet``; expires without heartbeats."""
    return _k(identity)


def work(identity):
    """Hash of thread id -> JSON of the job that thread runs now (Sidekiq 7's name and later).
    Written by the worker's heartbeat (under :func:`own_work`'s name)."""
    return _k(f"{identity}:work")


def workers(identity):
    """Sidekiq 6's name for :func:`work`."""
    return _k(f"{identity}:workers")


def own_work(identity):
    """The name of :func:`work` that this process writes, by ``BGJOBS["SIDEKIQ_VERSION"]``
    (readers look at both)."""
    return workers(identity) if conf.get("SIDEKIQ_VERSION") == 6 else work(identity)


def process_signals(identity):
    """List of remote commands (``TSTP`` quiet, ``TERM`` stop) for one worker. Written by the admin."""
    return _k(f"{identity}-signals")


def inflight(identity, queue_name):
    """List of payloads worker ``identity`` took from ``queue_name`` and has not finished (reliable fetch)."""
    return _k(f"inflight:{identity}:{queue_name}")


def inflight_owners():
    """Hash of identity -> JSON list of queue names, for every worker that may own in-flight lists.

    Kept apart from ``processes`` because Sidekiq's Web UI prunes that set, and a
    dead worker must stay known until another worker has pushed its jobs back.
    """
    return _k("inflight-owners")


def paused():
    """Set of queue names that every worker skips until resumed. Written by the admin / API."""
    return _k("paused")


def unique_lock(digest):
    """Hash ``jid``, ``class``, ``queue``, ``lock``, ``at``, ``bid`` (and ``raw`` for
    ``on_conflict = "replace"``) of the job holding a unique job's enqueue lock; always
    with a TTL.  Written by the client's push (``unique.UniqueLocks``), deleted by the worker."""
    return _k(f"unique:{digest}")


def unique_run_lock(digest):
    """Hash ``jid``, ``class``, ``heartbeat`` (the holder process's heartbeat key) of the
    job running under a ``while_executing`` lock; always with a TTL.  Written by the worker."""
    return _k(f"unique:{digest}:run")


def batches():
    """Sorted set of batch ids scored by creation time (epoch seconds), for listing.
    Written by ``batches/batch.lua`` when a batch is created; pruned there of old entries."""
    return _k("batches")


def batch(bid):
    """Hash of one batch: description, created_at, callbacks, parent, counters and the
    times its callbacks fired.  Written by ``batches/batch.lua`` and the client's push (its total)."""
    return _k(f"b-{bid}")


def batch_jids(bid):
    """Set of the jids of a batch's jobs that have not succeeded yet. Written by the client's
    push (SADD, ``batches.BatchMembership``) and ``batches/batch.lua`` (SREM on success)."""
    return _k(f"b-{bid}-jids")


def batch_failures(bid):
    """Hash of jid -> JSON of the last error of each of a batch's jobs that failed and has
    not succeeded since. Written by ``batches/batch.lua``."""
    return _k(f"b-{bid}-failinfo")


def batch_dead(bid):
    """Set of the jids of a batch's jobs that went to the dead set. Written by ``batches/batch.lua``."""
    return _k(f"b-{bid}-died")


def batch_callbacks():
    """Sorted set, the outbox of batch callbacks fired and not pushed yet: JSON entries scored by
    when a drain may take them (epoch seconds).  Written by ``batches/batch.lua`` when a batch
    fires; emptied by ``batches.push_fired_callbacks`` through the one push."""
    return _k("batch-callbacks")


def crashes():
    """Hash of jid -> how many worker processes died while running it (poison-job detection), and
    ``<jid>:by`` -> the worker that started it after a crash.  Written by the worker (``lua/recover.lua``)."""
    return _k("crashes")


def cron_schedules():
    """Hash of recurring-job name -> JSON definition (cron, class, queue, args, source...).
    Written by each worker at start (settings, file) and by the Schedule model's signals."""
    return _k("cron:schedules")


def cron_state(name):
    """Hash ``last_tick``, ``last_enqueued_at``, ``last_jid`` of one recurring job. Written by
    the worker's scheduler in the push that enqueues a tick (its guard and writes)."""
    return _k(f"cron:state:{name}")


def task_result(result_id):
    """String: the JSON result of one ``django.tasks`` task run, with a TTL. Written by the
    client at enqueue (READY) and by the worker (RUNNING, SUCCESSFUL, FAILED)."""
    return _k(f"task:result:{result_id}")
