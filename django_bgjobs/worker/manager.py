"""Manager: owns the :class:`Processor` threads of one worker process.

Created and driven by the :class:`~django_bgjobs.worker.launcher.Launcher` in the
main thread.  Duties:

1. Start ``concurrency`` processor threads, each with its own fetch slot.
2. ``quiet()``: tell every processor to stop fetching (running jobs go on).
3. ``stop(deadline)``: quiet, then wait until the deadline for running jobs to finish;
   return the processors still busy, marked abandoned (their jobs stay in the in-flight
   list, the launcher pushes them back to their queues, and the abandoned attempts write
   nothing when they end).
4. Report which jobs run now (:meth:`busy_work`) and the processed/failed counts to
   the heartbeat.
"""

import threading
import time

from django_bgjobs.worker.processor import Processor


class Manager:
    def __init__(self, fetcher, concurrency):
        self.stop_event = threading.Event()
        self.processors = [Processor(fetcher, slot, self.stop_event) for slot in range(concurrency)]

    def start(self):
        for processor in self.processors:
            processor.start()

    def quiet(self):
        self.stop_event.set()

    def stop(self, deadline):
        """Quiet, then wait until ``deadline`` (a ``time.monotonic()`` value); return the busy processors."""
        self.quiet()
        for processor in self.processors:
            if processor.thread is not None:
                processor.thread.join(max(0.0, deadline - time.monotonic()))
        busy = [p for p in self.processors if p.thread is not None and p.thread.is_alive() and p.current]
        for processor in busy:
            processor.abandoned = True
        return busy

    def counts(self):
        """Total ``(processed, failed)`` so far, over all processors."""
        return sum(p.processed for p in self.processors), sum(p.failed for p in self.processors)

    def busy_work(self):
        """``{thread_name: (queue, raw, run_at)}`` for every processor running a job now."""
        work = {}
        for processor in self.processors:
            current = processor.current
            if current is not None:
                work[f"p{processor.slot}"] = current
        return work
