"""Manager: owns the :class:`Processor` threads of one worker process.

Created and driven by the :class:`~django_bgjobs.worker.launcher.Launcher` in the
main thread.  Duties:

1. Start ``concurrency`` processor threads, each with its own fetch slot, and keep the
   process's :class:`~django_bgjobs.worker.event_loop.EventLoop`, which runs the async
   jobs they hand over, ``async_concurrency`` at once.
2. ``quiet()``: tell every processor to stop fetching (running jobs go on).
3. ``stop(deadline)``: quiet, then wait until the deadline for running jobs, threaded and
   async, to finish; return what still runs, marked abandoned (those jobs stay in the
   in-flight list, the launcher pushes them back to their queues, and the abandoned
   attempts write nothing when they end; async ones are cancelled).
4. Report which jobs run now (:meth:`busy_work`) and the processed/failed counts to
   the heartbeat.
"""

import threading
import time

from django_bgjobs import conf
from django_bgjobs.worker.event_loop import EventLoop
from django_bgjobs.worker.metrics import ExecutionMetrics
from django_bgjobs.worker.processor import Processor


class Manager:
    def __init__(self, fetcher, concurrency, async_concurrency=None):
        self.stop_event = threading.Event()
        async_concurrency = async_concurrency or conf.get("ASYNC_CONCURRENCY")
        self.metrics = ExecutionMetrics()  # per job class, written by the heartbeat
        self.event_loop = EventLoop(async_concurrency)
        self.processors = [
            Processor(fetcher, slot, self.stop_event, self.event_loop, self.metrics) for slot in range(concurrency)
        ]

    def start(self):
        for processor in self.processors:
            processor.start()

    def quiet(self):
        self.stop_event.set()

    def stop(self, deadline):
        """Quiet, then wait until ``deadline`` (a ``time.monotonic()`` value); return the
        ``(queue, raw, run_at)`` of the jobs still running, now abandoned."""
        self.quiet()
        for processor in self.processors:
            if processor.thread is not None:
                processor.thread.join(max(0.0, deadline - time.monotonic()))
        self.event_loop.wait(deadline)
        busy = [p for p in self.processors if p.thread is not None and p.thread.is_alive() and p.current]
        for processor in busy:
            processor.abandon()
        abandoned = [p.current for p in busy] + self.event_loop.abandon()
        self.event_loop.stop()
        # dict.fromkeys: one handed to the loop just now may be listed by both
        return list(dict.fromkeys(current for current in abandoned if current is not None))

    def counts(self):
        """Total ``(processed, failed)`` so far, over all processors and the event loop."""
        workers = [*self.processors, self.event_loop]
        return sum(w.processed for w in workers), sum(w.failed for w in workers)

    def busy_work(self):
        """``{thread_name: (queue, raw, run_at)}`` for every job running now."""
        work = {}
        for processor in self.processors:
            current = processor.current
            if current is not None:
                work[f"p{processor.slot}"] = current
        work.update(self.event_loop.busy_work())
        return work
