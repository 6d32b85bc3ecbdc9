"""Fault case 5: SIGTERM while long jobs run.

Jobs that finish within the shutdown timeout are acknowledged; the rest go back to their queue
(at the end workers take from, so they run next); no job that finished runs again.
"""

import signal
import time

import pytest

from tests.faults.harness import wait_for
from tests.faults.jobs import LedgerJob, SlowLedgerJob

pytestmark = pytest.mark.slow

SHUTDOWN_TIMEOUT_S = 1.5


def test_jobs_done_within_the_timeout_are_acked_and_the_rest_go_back_when_sigterm_arrives(fault_case):
    # Given: 8 threads each running one job, four short (0.2 to 0.8 s) and four long (4 to 6 s),
    # 20 more jobs waiting, and a shutdown timeout of 1.5 s
    case = fault_case("case 5: SIGTERM during long jobs")
    short = [SlowLedgerJob.perform_later(s).jid for s in (0.2, 0.4, 0.6, 0.8)]
    long = [SlowLedgerJob.perform_later(s).jid for s in (4, 5, 6, 6)]
    worker = case.worker("-c", "8", "-t", str(SHUTDOWN_TIMEOUT_S))
    wait_for(lambda: len(case.in_flight()) == 8, 15, "the 8 jobs running")
    waiting = [handle.jid for handle in LedgerJob.perform_bulk([(n,) for n in range(20)])]

    # When
    running_at_term = set(case.in_flight())
    sent_at = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    code = worker.wait(timeout=15)
    stop_s = time.monotonic() - sent_at

    # Then: the short jobs ran once and were acknowledged, the long ones are back in the queue
    assert code == 0, case.log(worker)
    assert stop_s < SHUTDOWN_TIMEOUT_S + 2
    assert case.runs() == {jid: 1 for jid in short}
    assert set(case.queued()) == set(long) | set(waiting)
    assert case.in_flight() == []
    assert case.live_identities() == []

    # And a new worker runs the rest, none of the finished ones again
    case.worker("-c", "8")
    every = short + long + waiting
    case.wait_accounted(every, timeout=30)
    figures = case.check(
        every, running_at_term, shutdown_timeout_s=SHUTDOWN_TIMEOUT_S, stop_s=stop_s,
        acked_before_exit=len(short), pushed_back=len(long),
    )
    assert figures.duplicates == 0
    assert figures.performed == len(every)
