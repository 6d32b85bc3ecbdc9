"""Running worker processes: signal handling for one, and a supervisor for ``--processes N``.

``run_one`` runs in the main thread of a worker process:

1. Install signal handlers: the first ``SIGTERM``/``SIGINT`` starts a graceful stop
   (no new jobs, running jobs get the shutdown timeout, the rest go back to their
   queues); a second one exits at once, leaving unfinished jobs in the in-flight list
   for the next worker to push back.  ``SIGTSTP`` makes the worker quiet.
2. Start a :class:`Launcher` and wait until it is asked to stop (signal or admin).

``Supervisor`` forks N children that each call ``run_one``, replaces a child that dies
unexpectedly (``kill -9``, ``os._exit`` in a job, out of memory), and forwards stop
signals to the children.
"""

import logging
import os
import signal
import time

from django_bgjobs.worker.launcher import Launcher

logger = logging.getLogger(__name__)

EXIT_HARD = 1


def run_one(parent_pid=None, **launcher_options):
    """Run one worker process until stopped; return its exit code.

    ``parent_pid`` is the supervisor's: a child whose supervisor is gone (``kill -9``)
    stops gracefully instead of running on unsupervised.
    """
    launcher = Launcher(replace_when_stuck=parent_pid is not None, **launcher_options)
    signals_seen = []

    def on_stop(signum, frame):
        signals_seen.append(signum)
        if len(signals_seen) > 1:
            logger.warning("second %s: exiting now; unfinished jobs stay in the in-flight list",
                           signal.Signals(signum).name)
            os._exit(EXIT_HARD)
        logger.info("%s received: stopping gracefully (send it again to exit at once)", signal.Signals(signum).name)
        launcher.stopping.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGTSTP, lambda signum, frame: launcher.quiet_down())
    launcher.start()
    while not launcher.stopping.wait(0.5):
        if parent_pid is not None and os.getppid() != parent_pid:
            logger.warning("supervisor %d is gone; stopping", parent_pid)
            launcher.stopping.set()
    launcher.stop()
    return launcher.exit_code


class Supervisor:
    """Fork ``processes`` workers and keep that many alive until told to stop."""

    #: A child that dies this soon after starting, this many times in a row, makes the
    #: supervisor give up instead of forking in a tight loop (e.g. a broken deployment).
    MIN_LIFETIME_S = 2
    MAX_QUICK_DEATHS = 10

    def __init__(self, processes, **launcher_options):
        self.processes = processes
        self.launcher_options = launcher_options
        self.children = {}  # pid -> start time
        self.stopping = False
        self.quick_deaths = 0

    def run(self):
        def on_stop(signum, frame):
            if self.stopping:
                for pid in self.children:
                    _kill(pid, signal.SIGKILL)
                os._exit(EXIT_HARD)
            self.stopping = True
            for pid in self.children:
                _kill(pid, signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGTSTP, lambda s, f: [_kill(pid, signal.SIGTSTP) for pid in self.children])
        for _ in range(self.processes):
            self._fork()
        while self.children:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
            started = self.children.pop(pid, None)
            if started is None or self.stopping:
                continue
            logger.error("worker process %d died (%s); starting a new one", pid, _describe_status(status))
            self.quick_deaths = self.quick_deaths + 1 if time.monotonic() - started < self.MIN_LIFETIME_S else 0
            if self.quick_deaths >= self.MAX_QUICK_DEATHS:
                logger.error("worker processes keep dying at start; giving up")
                self.stopping = True
                for other in self.children:
                    _kill(other, signal.SIGTERM)
                continue
            self._fork()
        return EXIT_HARD if self.quick_deaths >= self.MAX_QUICK_DEATHS else 0

    def _fork(self):
        parent_pid = os.getpid()
        pid = os.fork()
        if pid == 0:  # child
            # Drop the supervisor's handlers before anything else, so a signal that arrives
            # before run_one installs its own is not mistaken for the supervisor's.
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTSTP, signal.SIG_IGN)
            code = 1
            try:
                from django.db import connections

                from django_bgjobs import connection

                connection.reset()
                connections.close_all()
                code = run_one(parent_pid=parent_pid, **self.launcher_options)
            except BaseException:
                logger.exception("worker process failed")
            finally:
                logging.shutdown()
                os._exit(code)
        self.children[pid] = time.monotonic()


def _kill(pid, signum):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _describe_status(status):
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.WEXITSTATUS(status)}"
