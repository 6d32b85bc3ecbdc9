"""Event loop: runs the jobs whose ``perform`` is ``async def``, many at once, in one worker
process.

One per worker process, owned by the :class:`~django_bgjobs.worker.manager.Manager`; its two
threads start with the first async job.  How an async job runs:

1. A :class:`~django_bgjobs.worker.processor.Processor` thread fetches it and makes the job
   like any other, waits for one of the ``BGJOBS["ASYNC_CONCURRENCY"]`` slots
   (:meth:`EventLoop.wait_for_slot`), then begins its attempt in the job's own context
   (``Attempt.begin``: ``job_started``, and the server chain called there, so its sync
   middleware -- expiry, unique locks -- run in that thread and the chain returns the
   coroutine) and hands the coroutine over with :meth:`EventLoop.submit`, which lists the
   attempt among the running jobs (the heartbeat reports it, and the stranded-job check sees
   it held) before the thread goes on to its next job.
2. On the loop's thread the coroutine -- the async middleware, the wrappers the sync ones
   returned (timeout, perform callbacks, metrics) and ``perform`` -- runs as one asyncio
   task.  Its outcome goes to the finisher thread at once.
3. The finisher thread takes every outcome waiting (jobs finish in waves: those started
   together end together), sends each one's ``job_succeeded`` / ``job_failed`` and ends its
   attempt (``Attempt.succeeded`` / ``Attempt.failed``: the unit of work's acknowledgement,
   or the retry or dead entry), then writes all those ends in one MULTI
   (:class:`~django_bgjobs.worker.fetcher.Endings`: one round trip, each end as atomic as
   alone), logs their "done" / "fail" lines, frees their slots and closes Django's stale
   database connections (its own, and those of the thread the jobs' ``sync_to_async`` calls
   run in), as the ASGI handler does per request.  It writes what it has ended every
   ``WRITE_WITHIN_S``, so a finished job is acknowledged within milliseconds of the end of
   ``perform`` (the window measured is in ``docs/guarantees.rst``).
   Redis writes, the signals' receivers and ``retry_in`` / ``retries_exhausted`` never run
   on the loop, which only ever runs the jobs' own coroutines (and async middleware).
4. At shutdown (:meth:`EventLoop.abandon`, after ``SHUTDOWN_TIMEOUT_S``) the jobs still
   running are marked abandoned and their tasks cancelled (``CancelledError`` is raised at
   their ``await``); they write nothing and the launcher pushes them back to their queues.

An async job must not block: a ``time.sleep`` or a synchronous ORM call (Django raises
``SynchronousOnlyOperation`` for the latter) holds up every job on the loop, timeouts included.
The loop notes the time every ``TICK_S``; each heartbeat calls :meth:`EventLoop.check_blocked`,
which logs an error naming the async jobs running when the loop has not ticked for
``BLOCKED_AFTER_S``: the one blocking it is among them.
"""

import asyncio
import itertools
import logging
import queue
import threading
import time

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from django_bgjobs.job_end import Outcome
from django_bgjobs.payload import printable
from django_bgjobs.worker.fetcher import Endings

logger = logging.getLogger(__name__)

TICK_S = 0.5
#: The finisher writes the ends it has made once making them has taken this long, or when no
#: other job has ended meanwhile: jobs that end together share a round trip, and the first
#: of them does not wait for the CPU of all the others (a failure costs a traceback).
WRITE_WITHIN_S = 0.002
#: A loop that has not ticked for this long is reported as blocked.
BLOCKED_AFTER_S = 5.0


class EventLoop:
    def __init__(self, concurrency):
        self.concurrency = concurrency
        self.processed = 0
        self.failed = 0
        self.loop = None
        self._slots = threading.Semaphore(concurrency)
        self._lock = threading.Lock()  # guards _running and the lazy start
        self._ending_lock = threading.Lock()  # an end being written vs abandon()
        self._running = {}  # Attempt -> (busy-work key, concurrent future)
        self._ended = queue.SimpleQueue()  # (attempt, result, exception) for the finisher; None: stop
        self._keys = itertools.count()
        self._tasks = set()  # the loop's own tasks (_close_jobs_connections), referenced until done
        self._threads = []
        self._closed = False  # set by abandon(): no job is started any more
        self.last_tick = None  # time.monotonic() of the loop's last tick (see check_blocked)
        self._stopped = False

    # -- the processor side ---------------------------------------------------------------

    def wait_for_slot(self, processor):
        """Block ``processor``'s thread until fewer than ``concurrency`` async jobs run.  False
        when the processor was abandoned at shutdown meanwhile (its job was pushed back), or
        the loop takes no more jobs (shutdown has begun: the job stays in flight, unstarted)."""
        while not self._slots.acquire(timeout=0.2):
            if processor.abandoned:
                return False
        if processor.abandoned or self._closed:
            self._slots.release()
            return False
        return True

    def release_slot(self):
        """Give back a slot taken by :meth:`wait_for_slot` for a job not submitted after all."""
        self._slots.release()

    def submit(self, attempt, coroutine):
        """Run ``coroutine``, the begun ``attempt``'s, on the loop (the caller holds a slot); it
        counts as running from now.

        Returns False, having freed the slot, when the loop has stopped taking jobs (shutdown
        has begun): the job was never started and stays in the in-flight list to be pushed back.
        The task runs in ``attempt.context``, so what ``job_started`` receivers put in context
        variables reaches ``perform`` and the end signals (:meth:`_end` sends them in it too).
        """
        self._start()
        with self._lock:  # held until it is listed: the finisher cannot drop it before
            if self._closed:
                self._slots.release()
                return False
            # In a copy: the finisher enters attempt.context itself, maybe while this thread is
            # still in this call (a Context can be entered by one thread at a time).
            future = attempt.context.copy().run(
                asyncio.run_coroutine_threadsafe, self._run(attempt, coroutine), self.loop,
            )
            self._running[attempt] = (f"async-{next(self._keys)}", future)
        return True

    # -- the loop ---------------------------------------------------------------------------

    async def _run(self, attempt, coroutine):
        result = exception = None
        try:
            result = await coroutine
        except asyncio.CancelledError:
            # Shutdown cancels only abandoned jobs (they write nothing); any other cancellation
            # came from the job's own code, and must not pass for a success.
            exception = None if attempt.abandoned else RuntimeError("the job's task was cancelled")
        except BaseException as exc:  # SystemExit and friends must not stop the loop
            exception = exc
        finally:
            self._ended.put((attempt, result, exception))

    # -- the finisher thread ----------------------------------------------------------------

    def _finish(self):
        while True:
            item = self._ended.get()
            if item is None:
                return
            group = []
            endings = Endings()
            deadline = time.perf_counter() + WRITE_WITHIN_S
            try:
                with self._ending_lock:
                    while True:
                        group.append(item)
                        self._end(endings, *item)
                        if time.perf_counter() >= deadline:
                            break
                        try:
                            item = self._ended.get_nowait()
                        except queue.Empty:
                            break
                        if item is None:
                            self._ended.put(None)  # stop once this group is written
                            break
                    endings.write()
            except Exception:  # a bug: those jobs stay in flight to run again
                logger.exception("writing the ends of %d async jobs failed", len(group))
            finally:
                with self._lock:
                    for attempt, _, _ in group:
                        self._running.pop(attempt, None)
                for _ in group:
                    self._slots.release()
                self._close_old_connections()

    def _close_old_connections(self):
        """Django's stale connections: the finisher's, and those of the thread the jobs'
        ``sync_to_async`` calls run in (one for the whole loop), as the ASGI handler does per
        request."""
        close_old_connections()
        if not self._stopped:
            self.loop.call_soon_threadsafe(self._close_jobs_connections)

    def _close_jobs_connections(self):
        """On the loop: close the stale connections of the thread the jobs' ``sync_to_async``
        calls run in."""
        task = self.loop.create_task(sync_to_async(close_old_connections)())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _end(self, endings, attempt, result, exception):
        """Send the end signal (in the job's context) and end the attempt, as a processor
        thread would, but its end only joins ``endings``, written with the others'."""
        if attempt.abandoned:
            return
        endings.join(attempt.unit)
        try:
            self._end_attempt(attempt, result, exception)
        except Exception:  # a bug: the job stays in flight to run again
            logger.exception("ending async job jid=%s failed", attempt.job.jid)

    def _end_attempt(self, attempt, result, exception):
        # A receiver that raises makes the attempt fail with its error, as in a thread.
        exception = attempt.end_signal(result=result, exception=exception)
        if exception is None:
            self.processed += attempt.succeeded()
            return
        if attempt.failed(exception) is not Outcome.RESCHEDULED:  # put back by its run lock: not a failure
            self.processed += 1
            self.failed += 1

    # -- lifecycle and reports ---------------------------------------------------------------

    def _start(self):
        if self.loop is not None:
            return
        with self._lock:
            if self.loop is not None:
                return
            loop = asyncio.new_event_loop()
            self.last_tick = time.monotonic()
            loop.call_soon_threadsafe(self._tick, loop)
            self._threads = [
                threading.Thread(target=loop.run_forever, name="bgjobs-event-loop", daemon=True),
                threading.Thread(target=self._finish, name="bgjobs-async-finisher", daemon=True),
            ]
            for thread in self._threads:
                thread.start()
            self.loop = loop

    def _tick(self, loop):
        self.last_tick = time.monotonic()
        loop.call_later(TICK_S, self._tick, loop)

    def check_blocked(self, now=None):
        """Log an error and return the blocked seconds when the loop has not ticked for
        ``BLOCKED_AFTER_S`` (an async job is blocking it); else return 0."""
        if self.loop is None or self._stopped:
            return 0
        blocked_s = (time.monotonic() if now is None else now) - self.last_tick
        if blocked_s < BLOCKED_AFTER_S:
            return 0
        with self._lock:
            running = [attempt.payload for attempt in self._running]
        logger.error(
            "the event loop has been blocked for %.1fs: an async job is not awaiting (time.sleep, a blocking "
            "call?), and every async job of this process waits, timeouts included; running: %s", blocked_s,
            ", ".join(f"{printable(p.get('class'))} jid={printable(p.get('jid'))}" for p in running) or "none",
        )
        return blocked_s

    def busy_work(self):
        """``{key: (queue, raw, run_at)}`` for every async job running or being ended now."""
        with self._lock:
            return {key: attempt.current for attempt, (key, _) in self._running.items()}

    def wait(self, deadline):
        """Wait until no async job runs or ``deadline`` (``time.monotonic()``) passes."""
        while self._running and time.monotonic() < deadline:
            time.sleep(0.02)

    def abandon(self, wait_s=1.0):
        """Stop taking jobs; mark the async jobs still running abandoned and cancel them;
        return their ``(queue, raw, run_at)``.  An end being written is waited for up to
        ``wait_s`` (not longer: during a Redis outage that write may retry for minutes)."""
        with self._lock:
            self._closed = True
        ending = self._ending_lock.acquire(timeout=wait_s)
        try:
            with self._lock:
                running = list(self._running.items())
            for attempt, _ in running:
                attempt.abandoned = True
        finally:
            if ending:
                self._ending_lock.release()
        for _, (_, future) in running:
            future.cancel()
        return [attempt.current for attempt, _ in running]

    def stop(self, timeout_s=2):
        """End the threads (after :meth:`abandon`), letting cancelled tasks unwind first."""
        with self._lock:
            if self.loop is None or self._stopped:
                return
            self._stopped = True
        try:
            asyncio.run_coroutine_threadsafe(self._cancel_all(timeout_s), self.loop).result(timeout_s + 1)
        except Exception:  # pragma: no cover - a job that will not unwind: the process exits regardless
            logger.warning("async jobs still unwinding at shutdown", exc_info=True)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._ended.put(None)

    @staticmethod
    async def _cancel_all(timeout_s):
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)
