"""Jobs the fault cases run.  Each one that finishes appends its jid to the ledger file named
by ``BGJOBS_FAULT_LEDGER`` (one ``write`` of one line, in append mode, so lines from many
threads and processes never mix), a ledger no Redis fault can touch.

Jobs that fail are retried after 0.1 s instead of Sidekiq's 15 s and more, so a case that
makes jobs fail does not wait minutes for their retries.
"""

import os
import signal
import time

from django_bgjobs import Job

LEDGER_ENV = "BGJOBS_FAULT_LEDGER"


def record(jid):
    """Append one line, ``jid``, to the ledger."""
    fd = os.open(os.environ[LEDGER_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{jid}\n".encode())
    finally:
        os.close(fd)


class FaultJob(Job):
    abstract = True

    def retry_in(self, count, exception):
        return 0.1


class LedgerJob(FaultJob):
    """Records its jid: as cheap as a job that leaves a trace can be."""

    def perform(self, n):
        record(self.jid)


class SlowLedgerJob(FaultJob):
    """Runs ``seconds`` in Python (small sleeps, so a JobTimeout reaches it), then records."""

    def perform(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.01)
        record(self.jid)


class FailOnceLedgerJob(SlowLedgerJob):
    """Runs ``seconds``, records, then fails on its first attempt; its retry is an hour away,
    so each job ends in the retry set after one failure and one ledger line."""

    def retry_in(self, count, exception):
        return 3600

    def perform(self, seconds):
        super().perform(seconds)
        if self.retry_count is None:
            raise RuntimeError("first attempt fails")


class CrashJob(FaultJob):
    """Ends its worker process from inside ``perform``, as a segfault or the OOM killer would."""

    def perform(self, how):
        if how == "exit":
            os._exit(13)
        os.kill(os.getpid(), signal.SIGKILL)


class MemoryHogJob(FaultJob):
    """Asks for more memory than any machine has: Python raises MemoryError, the process lives."""

    retry = 1

    def perform(self):
        bytearray(1 << 62)


class LoopPastTimeoutJob(FaultJob):
    """Loops in Python for ``seconds``, past its 0.5 s timeout."""

    retry = 1
    timeout = 0.5

    def perform(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.01)
        record(self.jid)


class BlockedPastTimeoutJob(FaultJob):
    """Blocks in one C call (``time.sleep``) for ``seconds``, past its 0.5 s timeout: no
    exception can reach it there until the call returns."""

    retry = 1
    timeout = 0.5

    def perform(self, seconds):
        time.sleep(seconds)
        record(self.jid)
