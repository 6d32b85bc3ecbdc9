"""Batches: jobs tracked as a group, with callbacks when the group is done (Sidekiq Pro's Batch).

::

    batch = Batch(description="Newsletter")
    batch.on("success", NewsletterDoneCallback, {"user_ids": user_ids})
    with batch.jobs():
        for user_id in user_ids:
            ChildJob.perform_later(user_id)

    class NewsletterDoneCallback:
        def on_success(self, status, options): ...

Lifecycle of a batch, all of it in Redis (keys ``b-BID...``, see ``keys.py``):

1. The first ``jobs()`` block creates it, open (``batches/batch.lua`` "create"); a batch created
   inside another batch's ``jobs()`` block, or inside a job of another batch, is that
   batch's child.
2. Each job enqueued inside the block gets the payload field ``"bid"``, and the push that
   writes it adds its jid to the batch's pending set in the same atomic step (the client
   middleware :class:`BatchMembership`).
3. The block's end seals it (after the transaction's commit, when one is open, so jobs
   whose push waits for the commit are counted first).  A block that raises does not seal
   it: the batch then never fires, and expires.
4. The worker records each job's end in the MULTI that acknowledges it or writes its retry
   or dead entry (``unique/server.py`` and ``batches/server.py``).  The Lua step that records the last outcome records
   the callbacks in an outbox, each exactly once; right after, the process that wrote it
   pushes them through the one push, as jobs of :class:`BatchCallbackJob`
   (:func:`push_fired_callbacks`, which every worker's heartbeat also runs, for a process
   that died in between).
5. The batch's keys expire ``BATCH_TTL_S`` after it ended, or ``BATCH_UNFINISHED_TTL_S``
   after its last change if it never ends.

Callback classes are looked up, never imported: ``module.QualName`` is resolved only in a
module already in ``sys.modules`` (the worker imports every installed app's ``jobs.py``), and
only to a class defining ``on_<event>``.  A payload in Redis cannot make a worker import
a module or call anything else.

This module is client side: it imports no worker code and opens no connection at import.
The inline backend and the test capture give jobs their ``"bid"`` but write no batch to
Redis, so callbacks never fire there.
"""

import contextvars
import json
import logging
import math
import re
import secrets
import sys
from contextlib import contextmanager

from django_bgjobs import client, conf, execution, keys, scripts, serialization
from django_bgjobs.connection import answers, get_redis, unless_wrong_type
from django_bgjobs.errors import BgJobsError, ConfigurationError, UnknownJobError
from django_bgjobs.job import Job, check_queue_name
from django_bgjobs.payload import epoch_s, now_s, printable, timestamp

logger = logging.getLogger(__name__)

EVENTS = ("success", "complete", "death")
CALLBACK_JOB_NAME = "django_bgjobs.BatchCallback"
_BID_RE = re.compile(r"[A-Za-z0-9_\-]{1,64}")


def valid_bid(bid):
    """True when ``bid`` can be a batch id: 1 to 64 letters, digits, ``_`` or ``-`` (fullmatch:
    ``$`` would accept a trailing newline)."""
    return isinstance(bid, str) and _BID_RE.fullmatch(bid) is not None
_BID_PLACEHOLDER = "{bid}"

# The batches whose jobs() block runs here, innermost last: a context variable, so each
# coroutine has its own (async jobs share one thread) and ``aperform_later`` -- which runs
# the push in another thread through sync_to_async, context and all -- still sees it.
_stack = contextvars.ContextVar("django_bgjobs_batch_stack", default=())


def current_bid():
    """The bid of the innermost ``jobs()`` block running in this thread or task, or None."""
    stack = _stack.get()
    return stack[-1].bid if stack else None


def _running_bid():
    """The bid of the job whose ``perform`` runs in this thread, or None."""
    job = execution.current_job()
    return (job.payload or {}).get("bid") if job is not None else None


class Batch:
    """A group of jobs with callbacks.  ``Batch()`` makes a new one; ``Batch(bid)`` reopens
    an existing one, to add jobs (``self.batch`` inside a running job is such a handle)."""

    def __init__(self, bid=None, *, description="", callback_queue="default"):
        check_queue_name(callback_queue)
        self.description = str(description or "")
        self.callback_queue = callback_queue
        self._callbacks = []
        self._created = False
        if bid is None:
            self.bid = secrets.token_hex(8)
            self._new = True
            #: The batch this one is a child of: the one whose jobs() block or job is running here.
            self.parent_bid = current_bid() or _running_bid()
        else:
            if not valid_bid(bid):
                raise ValueError(f"{bid!r} is not a batch id")
            self.bid = bid
            self._new = False
            self.parent_bid = None

    def __repr__(self):
        return f"<Batch {self.bid}>"

    def on(self, event, callback, options=None):
        """Call ``callback().on_<event>(status, options)`` in a worker when the batch reaches
        ``event``: ``"success"`` (every job succeeded), ``"complete"`` (every job ran at least
        once) or ``"death"`` (a job went to the dead set).  ``callback`` is a class (or its
        ``"module.QualName"``) defining ``on_<event>``; ``options`` a JSON-able dict.
        Returns the batch, so calls chain.  Only before the batch's first ``jobs()`` block."""
        if event not in EVENTS:
            raise ValueError(f"batch event {event!r} is unknown; use one of {', '.join(EVENTS)}")
        if not self._new or self._created:
            raise BgJobsError(f"{self!r}: callbacks are set before the batch's first jobs() block, not after")
        module, qualname = callback_path(callback, event)
        encoded = serialization.encode_args((options if options is not None else {},), {})
        self._callbacks.append({"event": event, "module": module, "qualname": qualname, "options": encoded})
        return self

    @contextmanager
    def jobs(self):
        """Inside this block, every job enqueued (one by one, in bulk or scheduled) joins the
        batch.  The batch can end only once the block is over."""
        counts = False
        if client.writes_to_redis():
            counts = self._open()
        token = _stack.set((*_stack.get(), self))
        try:
            yield self
        finally:
            _stack.reset(token)
        # Only reached when the block did not raise: a half-filled batch must not fire.
        if counts:
            self._seal()

    def status(self):
        """A :class:`BatchStatus` read now."""
        return BatchStatus(self.bid)

    def _open(self):
        """Create or reopen the batch in Redis; return True when the block counts as open."""
        if self._new and not self._created:
            callbacks = json.dumps(self._callbacks, separators=(",", ":"))
            _run("create", self.bid, [self.description, callbacks, self.callback_queue, self.parent_bid or ""])
            self._created = True
            return True
        # A job of this batch adding to it needs no open count: its own pending place keeps
        # the batch from ending (and a crash there must not leave the batch open for ever).
        counts = _running_bid() != self.bid
        if not _run("open", self.bid, ["1" if counts else "0"]):
            raise BgJobsError(f"batch {self.bid} does not exist (it expired, or was never created)")
        return counts

    def _seal(self):
        seal = lambda: _run("seal", self.bid, [])  # noqa: E731
        alias = client._open_transaction() if conf.get("DEFER_ON_COMMIT") else None
        if alias is None:
            seal()
            return
        from django.db import transaction

        transaction.on_commit(seal, using=alias)


def _run(op, bid, extra, client_=None):
    """Run ``batches/batch.lua`` operation ``op`` on batch ``bid`` with the rest of its ARGV; push
    at once the callbacks it fired (see :func:`push_fired_callbacks`)."""
    client_ = client_ or get_redis()
    answer = _script(op, bid, extra, client_)
    if op in _ENDING_OPS and answer:
        push_fired_callbacks(client_)
    return answer


def _script(op, bid, extra, client_, now=None):
    return scripts.run("batches/batch", *script_args(op, bid, extra, now), client=client_)


# The operations of batches/batch.lua that can fire callbacks.
_ENDING_OPS = frozenset(("seal", "success", "failure", "dead", "dropped"))


def script_args(op, bid, extra, now=None):
    """``(keys, args)`` for a ``batches/batch.lua`` call."""
    return (
        [keys.batches(), keys.batch_callbacks()],
        [op, bid, repr(float(now_s() if now is None else now)), keys.batch(_BID_PLACEHOLDER),
         keys.batch_jids(_BID_PLACEHOLDER), keys.batch_failures(_BID_PLACEHOLDER), keys.batch_dead(_BID_PLACEHOLDER),
         _whole_s("BATCH_UNFINISHED_TTL_S"), _whole_s("BATCH_TTL_S"), *extra],
    )


def _whole_s(setting):
    """A TTL setting in whole seconds (EXPIRE takes no fractions), at least 1."""
    return max(1, math.ceil(conf.get(setting)))


class BatchMembership:
    """Client middleware (built in, :data:`conf.CLIENT_BUILTINS`): a payload enqueued inside a
    ``jobs()`` block gets the block's ``"bid"``, and its push adds its jid to the batch's pending
    set and total, in the same atomic step as the payload (writes attached to the push).

    A payload that already has a ``"bid"`` is left as it is and not counted: a batch callback
    (counted in its parent when it fired) or a payload pushed again through the API.  With
    ``DEFER_ON_COMMIT`` the chain runs at the commit in a copy of the enqueuing context, so the
    block is still seen there.
    """

    def __init__(self, call_next):
        self.call_next = call_next

    def __call__(self, payload):
        stack = _stack.get()
        if not stack or "bid" in payload:
            return self.call_next(payload)
        bid = stack[-1].bid
        payload["bid"] = bid
        payload = self.call_next(payload)
        push = client.current_push()
        if payload is not None and payload.get("bid") == bid and push is not None:
            jid, ttl_s = payload["jid"], _whole_s("BATCH_UNFINISHED_TTL_S")
            push.write(jid, "SADD", keys.batch_jids(bid), jid)
            push.write(jid, "HINCRBY", keys.batch(bid), "total", 1)
            push.write(jid, "EXPIRE", keys.batch(bid), ttl_s)
            push.write(jid, "EXPIRE", keys.batch_jids(bid), ttl_s)
        return payload


def forget(bid, jid):
    """A batch's job that will never run (a unique job replaced while waiting): count it as
    done, so the batch does not wait for it."""
    _run("success", bid, [jid])


def _forget_evicted(sender, payload, **kwargs):
    """A waiting payload a push removed to make room (``client.payload_evicted``): its batch,
    if any, counts it as done."""
    bid = payload.get("bid")
    if valid_bid(bid) and isinstance(payload.get("jid"), str):
        forget(bid, payload["jid"])


client.payload_evicted.connect(_forget_evicted, dispatch_uid="django_bgjobs.batches.forget_evicted")


# -- the callback outbox ----------------------------------------------------------------------

#: How long a drain hides the outbox entries it took from other drains: one that dies before
#: pushing them lets them reappear after this long.
CLAIM_S = 60
#: Outbox entries taken per round trip.
DRAIN_PAGE = 100


def push_fired_callbacks(client_=None, now=None):
    """Push the batch callbacks waiting in the outbox (``keys.batch_callbacks()``) through the
    one push, each exactly once; return how many this call pushed.

    ``batches/batch.lua`` records a callback there in the atomic step that ends its batch.  The
    process that wrote that end calls this right after (the worker after its acknowledgement,
    the client after a seal); every worker's heartbeat calls it too, for entries whose writer
    died in between.  Each entry is taken for :data:`CLAIM_S` (so two drains do not run the
    client middleware for it twice), then pushed with a guard that removes it from the outbox
    in the push's atomic step: it is pushed once, however many drains run.  One a client
    middleware stops is dropped, and counts as done in the parent batch it joined.

    Never raises: what fails is logged and left in the outbox for a later drain.
    """
    client_ = client_ or get_redis()
    pushed = 0
    for _ in range(100):  # bounded: callbacks that fire callbacks (a parent's) take a few rounds
        now_ = now_s() if now is None else now
        try:
            entries = _script("claim", "", [repr(now_ + CLAIM_S), DRAIN_PAGE], client_, now=now_)
        except Exception:
            logger.warning("batch callbacks not pushed now (the outbox could not be read); a later drain will",
                           exc_info=True)
            return pushed
        fired = False
        for raw in entries:
            try:
                done, dropped_fired = _push_callback(client_, raw.decode() if isinstance(raw, bytes) else raw)
            except Exception:
                logger.exception("batch callback %s not pushed; it is tried again in %ds", printable(raw), CLAIM_S)
                continue
            pushed += done
            fired = fired or dropped_fired
        if len(entries) < DRAIN_PAGE and not fired:
            break
    return pushed


def _push_callback(client_, raw):
    """Push one outbox entry as a :class:`BatchCallbackJob` payload; ``(1 if pushed, whether
    dropping it fired callbacks)``."""
    entry = json.loads(raw)
    payload = {
        "class": CALLBACK_JOB_NAME, "args": [entry["bid"], entry["event"], entry["index"]], "retry": True,
        "queue": entry["queue"], "jid": entry["jid"], "created_at": timestamp(float(entry["fired_at"])),
    }
    parent = entry.get("parent") or ""
    if parent:
        payload["bid"] = parent
    # Outside any jobs() block running here (a drain after a seal or a replaced job's end can
    # run inside one): a callback belongs to the batch it fired in, or to that one's parent.
    token = _stack.set(())
    try:
        [written] = client.push(
            BatchCallbackJob, [payload], guards={payload["jid"]: [client.Guard.member(keys.batch_callbacks(), raw)]},
            defer=False, redis_client=client_,
        )
    finally:
        _stack.reset(token)
    if written is not None:
        logger.info("batch %s: %s callback pushed (jid=%s)", printable(entry["bid"]), printable(entry["event"]),
                    payload["jid"])
        return 1, False
    # Stopped by a client middleware, or pushed meanwhile by another drain (then this does nothing).
    return 0, bool(_script("dropped", parent, [raw, payload["jid"]], client_))


# -- callbacks ------------------------------------------------------------------------------


def callback_path(callback, event):
    """``(module, qualname)`` of a callback class (or ``"module.QualName"``), checked now:
    it must resolve as :func:`resolve_callback` will in the worker."""
    if isinstance(callback, str):
        module, qualname = _split_path(callback)
        resolve_callback(module, qualname, event)
        return module, qualname
    if not isinstance(callback, type):
        raise TypeError(f"a batch callback is a class or 'module.QualName', not {type(callback).__name__}")
    module, qualname = callback.__module__, callback.__qualname__
    if "<locals>" in qualname:
        raise ConfigurationError(f"batch callback {qualname} is defined inside a function; define it at module level")
    try:
        found = resolve_callback(module, qualname, event)
    except UnknownJobError as exc:
        raise ConfigurationError(str(exc)) from None
    if found is not callback:
        raise ConfigurationError(f"batch callback {module}.{qualname} is not the class that name resolves to")
    return module, qualname


def _split_path(path):
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:cut])
        if module in sys.modules:
            return module, ".".join(parts[cut:])
    raise ConfigurationError(f"batch callback {path!r}: no imported module holds it (give 'module.QualName')")


def resolve_callback(module, qualname, event):
    """The class ``module.qualname``, from a module already imported, defining ``on_<event>``.

    Never imports anything and walks only class attributes, so a name read from Redis can
    reach nothing but an imported callback class.  Raises :class:`UnknownJobError`.
    """
    where = f"{module}.{qualname}"
    found = sys.modules.get(module)
    if found is None:
        raise UnknownJobError(f"batch callback {where}: module {module!r} is not imported in this process "
                              "(define callbacks in an installed app's jobs.py, which every worker imports)")
    for part in qualname.split("."):
        found = vars(found).get(part)
        if not isinstance(found, type):
            raise UnknownJobError(f"batch callback {where} is not a class")
    if not callable(getattr(found, f"on_{event}", None)):
        raise UnknownJobError(f"batch callback {where} defines no on_{event}(self, status, options) method")
    return found


def _job_batch(job):
    """The :class:`Batch` this job belongs to (None if none): inside ``perform``,
    ``with self.batch.jobs(): ...`` adds jobs to it."""
    bid = job.bid
    return Batch(bid) if bid else None


# Job.batch: added here, as Sidekiq Pro adds Job#batch, so that job.py imports no feature.
Job.batch = property(_job_batch, doc=_job_batch.__doc__)


class BatchCallbackJob(Job):
    """Internal: runs one callback of a batch.  Pushed by :func:`push_fired_callbacks` with the
    arguments ``(bid, event, index)``; in the parent batch when the batch has one."""

    name = CALLBACK_JOB_NAME
    schedulable = False  # internal: pushed by a batch, never on its own

    def perform(self, bid, event, index):
        raw = get_redis().hget(keys.batch(bid), "callbacks")
        if raw is None:
            logger.warning("batch %s expired before its %s callback ran; skipped", printable(bid), printable(event))
            return
        callback = json.loads(raw)[index]
        target = resolve_callback(callback["module"], callback["qualname"], event)
        options = serialization.decode_args(callback["options"])[0][0]
        getattr(target(), f"on_{event}")(BatchStatus(bid), options)


# -- status ---------------------------------------------------------------------------------


class BatchStatus:
    """A batch's state, read from Redis when created (Sidekiq Pro's ``Batch::Status``).

    ``total`` jobs ever added, ``pending`` not succeeded yet, ``failures`` failed and not
    succeeded since (``dead`` of them in the dead set); ``complete`` (every job ran at least
    once) and ``success`` (every job succeeded); ``created_at``, ``complete_at``,
    ``success_at`` in epoch seconds; ``exists`` is False once the batch has expired.
    """

    def __init__(self, bid, client=None):
        self.bid = bid
        redis = client or get_redis()
        pipe = redis.pipeline(transaction=False)
        pipe.hgetall(keys.batch(bid))
        pipe.scard(keys.batch_jids(bid))
        pipe.hlen(keys.batch_failures(bid))
        pipe.scard(keys.batch_dead(bid))
        pipe.ttl(keys.batch(bid))
        # A key of another type (another program's) reads as empty.
        fields, pending, failures, dead, ttl = answers(pipe)
        self.pending, self.failures, self.dead = pending or 0, failures or 0, dead or 0
        self._redis = redis
        fields = {_text(k): _text(v) for k, v in (fields or {}).items()}
        self.exists = bool(fields)
        self.description = fields.get("description", "")
        self.parent_bid = fields.get("parent") or None
        self.callback_queue = fields.get("callback_queue")
        self.total = _int(fields.get("total"))
        self.kids = _int(fields.get("kids"))
        self.created_at = _float(fields.get("created_at"))
        self.complete_at = _float(fields.get("complete_at"))
        self.success_at = _float(fields.get("success_at"))
        self.death_at = _float(fields.get("death_at"))
        self.open_blocks = _int(fields.get("open"))
        #: Seconds until the batch's data leaves Redis (None when it does not exist).
        self.expires_in_s = ttl if ttl is not None and ttl >= 0 else None
        try:
            self.callbacks = [(c["event"], f"{c['module']}.{c['qualname']}") for c in json.loads(fields.get("callbacks") or "[]")]
        except (ValueError, KeyError, TypeError, RecursionError):
            self.callbacks = []

    def __repr__(self):
        return f"<BatchStatus {self.bid} {self.total - self.pending}/{self.total} done, {self.failures} failing>"

    @property
    def done(self):
        """Jobs that succeeded (``total - pending``)."""
        return max(self.total - self.pending, 0)

    @property
    def complete(self):
        """Every job ran at least once (some may still be retrying)."""
        return self.complete_at is not None

    @property
    def success(self):
        """Every job succeeded (and every child batch)."""
        return self.success_at is not None

    def failed_jobs(self):
        """The jobs that failed and have not succeeded since: a list of dicts with ``jid``,
        ``class``, ``error_class``, ``error_message``, ``failed_at``, ``retry_count``, ``dead``."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(keys.batch_failures(self.bid))
        pipe.smembers(keys.batch_dead(self.bid))
        failures, dead = answers(pipe)
        dead = {_text(jid) for jid in dead or ()}
        found = []
        for jid, raw in (failures or {}).items():
            jid = _text(jid)
            try:
                info = json.loads(raw)
            except (ValueError, RecursionError):
                info = None
            info = info if isinstance(info, dict) else {}
            found.append({**info, "failed_at": epoch_s(info.get("failed_at")),
                          "retried_at": epoch_s(info.get("retried_at")), "jid": jid, "dead": jid in dead})
        return sorted(found, key=lambda f: (f["failed_at"] or 0, f["jid"]))

    def jids(self):
        """The jids of the jobs not succeeded yet."""
        return sorted(_text(jid) for jid in unless_wrong_type((), self._redis.smembers, keys.batch_jids(self.bid)))


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _float(value):
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None

