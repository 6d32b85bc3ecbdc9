"""Launcher: the top of one worker process, run by ``manage.py runjobs`` in the main thread.

Duties:

1. On start, write the first heartbeat (so this process is known before it takes a
   job), push back the in-flight jobs of any dead worker, then start the
   :class:`Manager` (processor threads), the :class:`Poller` and the heartbeat thread.
2. :meth:`beat`, every ``HEARTBEAT_INTERVAL_S`` in the heartbeat thread: refresh this
   process's hash in ``processes`` (expiring after ``HEARTBEAT_TTL_S``), the jobs running
   now, the ``inflight-owners`` entry, add the processed/failed counts to ``stat:*`` and the
   per-class job metrics to this minute's hash (``worker/metrics.py``), and read remote
   commands (``TSTP`` quiet, ``TERM`` stop) sent from the admin.
3. :meth:`recover_orphans`, after each beat: a worker whose heartbeat has expired is
   gone (``kill -9``, lost machine); its in-flight jobs go back to the tail of their
   queues (``lua/recover.lua``, atomic, so two workers never both push them back).
   Each recovery counts a crash against those jobs (see the script for which); a job whose
   worker died ``MAX_CRASHES`` times while running it is a poison job: the dead set.
   Then :meth:`reclaim_stranded` pushes back jobs in this worker's own in-flight lists that
   none of its threads holds: a fetch whose reply was lost with its connection left them.
   Then the ``heartbeat`` duties of the server middleware (``middleware.duties``): batches
   push the callbacks left in their outbox by a process that died right after its batch ended.
   The :class:`Scheduler` thread (unless ``runjobs --no-schedule``) enqueues recurring jobs.
4. :meth:`stop`: stop fetching, give running jobs ``shutdown_timeout_s`` to finish, push
   the unfinished and the prefetched ones back to their queues, flush the counts and leave
   ``processes``.  :meth:`quiet_down` gives the prefetched jobs back at once.
5. When a registered job sets ``timeout``, start the :class:`Watchdog` thread, which raises
   ``JobTimeout`` in a job's thread past its timeout; a job it cannot reach within
   ``JOB_TIMEOUT_GRACE_S`` fails and, under ``--processes``, this process stops to be
   replaced (:meth:`_on_stuck`).
"""

import collections
import json
import logging
import os
import secrets
import socket
import threading
import time

import redis

from django_bgjobs import __version__, conf, job_end, keys, middleware, registry, signals
from django_bgjobs.connection import get_redis
from django_bgjobs.errors import JobTimeout, PoisonJobError, UnknownJobError
from django_bgjobs.job_end import Outcome
from django_bgjobs.payload import now_s, printable
from django_bgjobs.worker import metrics
from django_bgjobs.worker.backoff import Reconnect, repeat
from django_bgjobs.worker.fetcher import Fetcher
from django_bgjobs.worker.manager import Manager
from django_bgjobs.cron.server import Scheduler
from django_bgjobs.worker.poller import Poller
from django_bgjobs.worker.queues import QueueOrder
from django_bgjobs.worker.watchdog import Guard, Watchdog

logger = logging.getLogger(__name__)

STATS_TTL_S = 5 * 365 * 24 * 60 * 60  # per-day counters, as Sidekiq keeps them
EXIT_JOB_STUCK = 3  # the exit code of a process stopped because a job could not be interrupted


class Launcher:
    def __init__(self, queues=None, concurrency=None, shutdown_timeout_s=None, tag="", client=None, schedule=True,
                 replace_when_stuck=False):
        self.client = client or get_redis()
        self.queue_order = QueueOrder(queues or conf.get("QUEUES"))
        self.concurrency = concurrency or conf.get("CONCURRENCY")
        self.shutdown_timeout_s = conf.get("SHUTDOWN_TIMEOUT_S") if shutdown_timeout_s is None else shutdown_timeout_s
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}"
        self.tag = tag
        self.started_at = now_s()
        prefetch = conf.get("PREFETCH")
        self.fetcher = Fetcher(
            self.identity, self.queue_order, self.client, self.concurrency if prefetch is None else prefetch,
        )
        self.manager = Manager(self.fetcher, self.concurrency)
        self.poller = Poller(self.client)
        self.scheduler = Scheduler(self.client) if schedule else None
        #: Under ``--processes``: a job stuck past its timeout and grace stops this process (the
        #: supervisor forks another); alone, the process cannot end one of its threads and logs it.
        self.replace_when_stuck = replace_when_stuck
        self.exit_code = 0
        self._stuck = []  # (processor, attempt) of jobs failed by the watchdog, written at stop
        self.watchdog = self._make_watchdog()
        self._unheld_since = {}  # (queue, raw) in our in-flight lists but held by no thread -> since when
        socket_timeout_s = self.client.connection_pool.connection_kwargs.get("socket_timeout") or 30
        self._stranded_after_s = socket_timeout_s + conf.get("HEARTBEAT_INTERVAL_S")
        self.quiet = False
        self.stopping = threading.Event()  # set when this process should stop (signal or admin)
        self._heartbeat_stop = threading.Event()
        self._flushed = (0, 0)
        self._heartbeat_thread = None
        self._reconnect = Reconnect("heartbeat", conf.get("RECONNECT_MAX_WAIT_S"), self._heartbeat_stop)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self):
        self._until_redis_answers(self.beat, self.prune_processes, self.recover_orphans)
        self.manager.start()
        if self.watchdog is not None:
            self.watchdog.start()
        self.poller.start()
        if self.scheduler is not None:
            self._until_redis_answers(self.scheduler.sync)
            self.scheduler.start()
        self._heartbeat_thread = threading.Thread(target=self._run_heartbeat, name="bgjobs-heartbeat", daemon=True)
        self._heartbeat_thread.start()
        logger.info(
            "worker %s started: queues [%s], concurrency %d, Redis %s", self.identity, self.queue_order,
            self.concurrency, self.client.connection_pool.connection_kwargs.get("host", "?"),
        )

    def _until_redis_answers(self, *steps):
        """Run each start-up step, waiting out Redis errors with backoff: a blip while the
        worker starts must not end it (unless it is asked to stop meanwhile)."""
        reconnect = Reconnect("start", conf.get("RECONNECT_MAX_WAIT_S"), self.stopping)
        for step in steps:
            while not self.stopping.is_set():
                try:
                    step()
                    break
                except redis.RedisError as exc:
                    reconnect.failed(exc)
        reconnect.ok()

    def quiet_down(self):
        """Stop taking new jobs; running jobs finish.  Sidekiq's TSTP."""
        if not self.quiet:
            logger.info("worker %s is quiet: no new jobs will be fetched", self.identity)
        self.quiet = True
        self.manager.quiet()
        try:
            given_back = self.fetcher.give_back()
        except redis.RedisError as exc:  # they stay in flight; stop() pushes them back
            logger.warning("worker %s could not give back its prefetched jobs yet: %s", self.identity, exc)
        else:
            if given_back:
                logger.info("worker %s gave %d prefetched job(s) back to their queues", self.identity, given_back)

    def stop(self):
        """Shut down as described in the module docstring; return the number of jobs pushed back."""
        self.stopping.set()
        self.quiet = True
        logger.info("worker %s stopping; waiting up to %ss for running jobs", self.identity, self.shutdown_timeout_s)
        self.poller.stop_event.set()
        if self.scheduler is not None:
            self.scheduler.stop_event.set()
        busy = self.manager.stop(time.monotonic() + self.shutdown_timeout_s)
        if self.watchdog is not None:
            self.watchdog.stop_event.set()
        self._heartbeat_stop.set()
        if self._heartbeat_thread is not None:
            self._heartbeat_thread.join(5)
        pushed_back = self._leave(busy)
        logger.info("worker %s stopped; %d unfinished job(s) pushed back to their queues", self.identity, pushed_back)
        return pushed_back

    def _leave(self, busy):
        if busy:
            logger.warning(
                "%d job(s) still running after %ss; pushing them back: %s", len(busy), self.shutdown_timeout_s,
                ", ".join(_describe_work(current) for current in busy),
            )
        for attempt in range(50):
            try:
                self._fail_stuck()  # first: their failures join the counts written next
                counts = self.manager.counts()
                self._execute_with_metrics(self._flush_counts(self.client.pipeline(transaction=True), counts), now_s())
                self._flushed = counts
                self.client.delete(keys.process(self.identity), keys.own_work(self.identity))
                # Finished jobs leave the in-flight list first, so only unfinished ones go back;
                # prefetched ones go back with them (they are in the in-flight list too).
                self.fetcher.flush()
                self.fetcher.forget_prefetched()
                pushed_back = self._recover(self.identity, crashed=False)
                self.client.srem(keys.processes(), self.identity)
                self.fetcher.close()
                return max(pushed_back, 0)
            except redis.RedisError as exc:
                logger.warning("shutdown: Redis error (%s); retrying", exc)
                time.sleep(min(0.1 * 2**attempt, 2))
        logger.error("shutdown: Redis unreachable; in-flight jobs will be pushed back by the next worker")
        return 0

    # -- job timeouts --------------------------------------------------------------------

    def _make_watchdog(self):
        """A :class:`Watchdog` with a guard per processor, when a registered job sets ``timeout``."""
        if not any(getattr(job, "timeout", None) for job in registry.all_jobs().values()):
            return None
        guards = []
        for processor in self.manager.processors:
            processor.guard = Guard(processor)
            guards.append(processor.guard)
        return Watchdog(guards, conf.get("JOB_TIMEOUT_GRACE_S"), self._on_stuck)

    def _on_stuck(self, guard):
        """Called by the watchdog, under the guard's lock, for a job still running its grace
        after JobTimeout was raised in its thread (see ``worker/watchdog.py``)."""
        job, processor = guard.job, guard.processor
        attempt = processor.attempt
        if not self.replace_when_stuck or attempt is None:
            logger.error(
                "%s jid=%s is still running %gs after its timeout of %gs (blocked in C code, or it caught "
                "JobTimeout); a thread cannot be stopped from outside: it keeps its thread until it returns. "
                "Run runjobs --processes to have such a process replaced.",
                type(job).name, printable(job.jid), guard.timeout_s + self._grace_s(), guard.timeout_s,
            )
            return
        # Still armed, so the thread has written nothing for this job; from now on it writes nothing.
        processor.abandon()
        self._stuck.append((processor, attempt))
        self.exit_code = EXIT_JOB_STUCK
        logger.error(
            "%s jid=%s is still running %gs after its timeout of %gs; it fails, and this process stops "
            "to be replaced", type(job).name, printable(job.jid), guard.timeout_s + self._grace_s(), guard.timeout_s,
        )
        self.stopping.set()

    def _grace_s(self):
        return self.watchdog.grace_s if self.watchdog is not None else 0

    def _fail_stuck(self):
        """Write the failure of each job the watchdog gave up on (retry or dead, out of flight)."""
        while self._stuck:
            processor, attempt = self._stuck[0]
            job = attempt.job
            exc = JobTimeout(
                f"{type(job).name} was still running {self._grace_s():g}s after its timeout of {job.timeout:g}s; "
                "its worker process was replaced"
            )
            # As the processor would have, through the job's unit of work (its locks and batch
            # in the same MULTI); one try: _leave retries the whole step.
            attempt.failed(exc, patient=False)
            processor.failed += 1
            self.manager.metrics.record(type(job).display_name(job.payload), job.timeout + self._grace_s(), failed=True)
            self._stuck.pop(0)

    # -- heartbeat -----------------------------------------------------------------------

    def _run_heartbeat(self):
        repeat(self._heartbeat_step, conf.get("HEARTBEAT_INTERVAL_S"), self._heartbeat_stop, self._reconnect,
               wait_first=True)  # start() wrote the first beat

    def _heartbeat_step(self):
        self.act_on(self.beat())  # at once: beat() took the commands off their list
        self.manager.event_loop.check_blocked()
        self.recover_orphans()
        self.reclaim_stranded()
        for duty in middleware.duties("heartbeat"):  # the features' own (batches: the callback outbox)
            duty(self.client)

    def act_on(self, commands):
        """Obey remote commands returned by :meth:`beat`: ``TSTP`` quiets, ``TERM`` stops."""
        for command in commands:
            if command == "TSTP":
                self.quiet_down()
            elif command == "TERM":
                logger.info("worker %s asked to stop from Redis", self.identity)
                self.stopping.set()
            else:
                logger.warning("worker %s ignores unknown remote command %r", self.identity, command)

    def info(self):
        """The ``info`` JSON of this process's hash, in Sidekiq's shape."""
        return {
            "hostname": socket.gethostname(), "started_at": self.started_at, "pid": os.getpid(), "tag": self.tag,
            "concurrency": self.concurrency, "async_concurrency": self.manager.event_loop.concurrency,
            "queues": self.queue_order.names, "weights": self.queue_order.weights,
            "labels": [], "identity": self.identity, "version": __version__,
        }

    def beat(self, now=None):
        """Write one heartbeat (see the module docstring); return the remote commands received."""
        now = now_s() if now is None else now
        ttl_s = max(1, int(round(conf.get("HEARTBEAT_TTL_S"))))
        work = {  # run_at in whole seconds, as every Sidekiq writes it
            thread: json.dumps({"queue": queue, "payload": raw.decode() if isinstance(raw, bytes) else raw,
                                "run_at": int(run_at)})
            for thread, (queue, raw, run_at) in self.manager.busy_work().items()
        }
        work_key = keys.own_work(self.identity)
        rtt_us = self._round_trip_us()
        pipe = self.client.pipeline(transaction=True)
        pipe.sadd(keys.processes(), self.identity)
        pipe.hset(keys.process(self.identity), mapping={
            "info": json.dumps(self.info()), "busy": len(work), "beat": now, "quiet": str(self.quiet).lower(),
            "rss": rss_kb(), "rtt_us": rtt_us,  # as Sidekiq's heartbeat; its Web UI shows them
        })
        pipe.expire(keys.process(self.identity), ttl_s)
        pipe.delete(work_key)
        if work:
            pipe.hset(work_key, mapping=work)
            pipe.expire(work_key, ttl_s)
        pipe.hset(keys.inflight_owners(), self.identity, json.dumps(self.queue_order.names))
        counts = self.manager.counts()
        self._flush_counts(pipe, counts, now)
        signals_key = keys.process_signals(self.identity)
        commands_at = len(pipe)
        pipe.lrange(signals_key, 0, -1)
        pipe.delete(signals_key)
        results = self._execute_with_metrics(pipe, now)
        self._flushed = counts
        return [c.decode() if isinstance(c, bytes) else c for c in reversed(results[commands_at])]

    def _round_trip_us(self):
        """Microseconds a PING to Redis takes, as Sidekiq measures it each heartbeat."""
        started = time.perf_counter()
        self.client.ping()
        return int((time.perf_counter() - started) * 1_000_000)

    def _execute_with_metrics(self, pipe, now):
        """Add to ``pipe`` the job metrics recorded since the last write, then run it; when it
        fails they wait for the next one.  Returns the pipeline's results."""
        taken = self.manager.metrics.take()
        metrics.queue_write(pipe, taken, now)
        try:
            return pipe.execute()
        except BaseException:
            self.manager.metrics.put_back(taken)
            raise

    def _flush_counts(self, pipe, counts, now=None):
        """Queue on ``pipe`` the INCRBYs of the counts not yet written (the caller marks them
        written once the pipeline has run)."""
        day = time.strftime("%Y-%m-%d", time.gmtime(now_s() if now is None else now))
        for name, total, flushed in zip(("processed", "failed"), counts, self._flushed):
            if total > flushed:
                pipe.incrby(keys.stat(name), total - flushed)
                pipe.incrby(keys.stat(name, day), total - flushed)
                pipe.expire(keys.stat(name, day), STATS_TTL_S)
        return pipe

    # -- recovery ------------------------------------------------------------------------

    def prune_processes(self):
        """Remove from ``processes`` the identities whose heartbeat has expired (as Sidekiq
        does at start); return how many."""
        members = [m.decode() for m in self.client.smembers(keys.processes())]
        pipe = self.client.pipeline(transaction=False)
        for identity in members:
            pipe.exists(keys.process(identity))
        gone = [identity for identity, alive in zip(members, pipe.execute()) if not alive]
        if gone:
            self.client.srem(keys.processes(), *gone)
        return len(gone)

    def recover_orphans(self):
        """Push back the in-flight jobs of every worker whose heartbeat has expired."""
        owners = self.client.hgetall(keys.inflight_owners())
        others = [o.decode() for o in owners if o.decode() != self.identity]
        if not others:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for identity in others:
            pipe.exists(keys.process(identity))
        total = 0
        for identity, alive in zip(others, pipe.execute()):
            if not alive:
                queues = json.loads(owners[identity.encode()])
                moved = self._recover(identity, queues)
                if moved >= 0:
                    self.client.srem(keys.processes(), identity)
                if moved > 0:
                    logger.warning("worker %s is gone; pushed %d of its in-flight jobs back", identity, moved)
                total += max(moved, 0)
        return total

    def reclaim_stranded(self, now=None):
        """Push back the jobs in this worker's own in-flight lists that none of its threads
        holds (running, prefetched or acknowledged-but-not-yet-written), once they have been
        so for longer than a reply can take; return how many.

        How a job gets there: a fetch ran in Redis, moving it in flight, and the connection
        dropped before the reply arrived (``CLIENT KILL``, a proxy restart, a timeout).  The
        worker is alive, so no other worker would ever push it back.  A reply in transit is
        the only legitimate way to be in the list and not yet held, and none takes longer than
        the socket timeout, so a job not held for that long is stranded.
        """
        now = time.monotonic() if now is None else now
        listed = collections.Counter(self.fetcher.listed())
        held = collections.Counter(self.fetcher.held())  # read after the lists: a job held then is safe
        held.update((queue, raw) for queue, raw, _ in self.manager.busy_work().values())
        unheld = listed - held
        seen = {job: self._unheld_since.get(job, now) for job in unheld}
        stranded = [job for job, since in seen.items() if now - since > self._stranded_after_s]
        self._unheld_since = {job: since for job, since in seen.items() if job not in stranded}
        moved = self.fetcher.requeue([(queue, raw) for queue, raw in stranded for _ in range(unheld[(queue, raw)])])
        if moved:
            logger.warning("worker %s pushed back %d job(s) stranded in its in-flight list by a lost reply",
                           self.identity, moved)
        return moved

    def _recover(self, identity, queues=None, crashed=True):
        """Push back the in-flight jobs of ``identity`` (:meth:`Fetcher.recover`,
        ``lua/recover.lua``); return the number pushed back (-1: alive).  ``crashed``: the
        worker died, so each job's crash count goes up and a job at ``MAX_CRASHES`` goes to
        the dead set instead (``job_died`` is sent for it, and its locks and batch told)."""
        queues = self.queue_order.names if queues is None else queues
        moved, buried, reason = self.fetcher.recover(identity, queues, conf.get("MAX_CRASHES") if crashed else 0)
        for payload in buried:
            logger.error("%s jid=%s moved to the dead set: %s", printable(payload.get("class")),
                         printable(payload.get("jid")), reason)
            signals.notify(signals.job_died, _job_class(payload), payload=payload, exception=PoisonJobError(reason),
                           reason=reason)
        if buried:
            # After the burial, so a crash in between leaves the locks to their TTLs and the
            # batches waiting; by jid, so writing it again changes nothing.
            job_end.record(self.client, buried, Outcome.DEAD)
        return moved


def rss_kb():
    """This process's resident memory in kB (Sidekiq's ``rss`` field), 0 where it cannot be read."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        return 0


def _job_class(payload):
    try:
        return registry.get(payload.get("class"))
    except UnknownJobError:
        return None


def _describe_work(current):
    queue, raw, _ = current
    try:
        payload = json.loads(raw)
        return f"{printable(payload.get('class'))} jid={printable(payload.get('jid'))}"
    except (ValueError, AttributeError):  # not JSON, or JSON but not an object
        return f"(unreadable payload in {printable(queue)})"
