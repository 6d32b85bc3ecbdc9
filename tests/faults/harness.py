"""What every fault case needs: a Redis of its own, real ``runjobs`` processes, and the ledger check.

A :class:`FaultCase` owns one ``redis-server`` (started with :func:`tests.helpers.start_redis_server`,
so it may be killed, filled or restarted without touching the session's server), points this
process's django_bgjobs at it (so ``perform_later`` enqueues there), starts workers as
``python -m django runjobs`` with ``tests.faults.settings`` in sessions of their own (the end of
the case SIGKILLs each whole process group, ``--processes`` children included), and keeps the
ledger file the fault jobs append their jid to.

:meth:`FaultCase.check` is the verdict of every case: each jid enqueued was performed, or is in
the dead set with a reason; none is missing; nothing ran that was not enqueued; a jid that ran
more than once was in flight at a fault.  It returns the figures and prints them; the
``faults`` conftest repeats them all at the end of the run.
"""

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import redis as redis_lib

from django_bgjobs import conf, connection
from tests.faults.jobs import LEDGER_ENV
from tests.helpers import REPO_ROOT, start_redis_server, subprocess_env, wait_until

#: Figures of every case run in this session, printed again at its end (see conftest.py).
REPORTS = []


@dataclass
class Figures:
    case: str
    enqueued: int
    performed: int
    runs: int
    dead: int
    duplicates: int
    in_flight_at_faults: int
    extra: dict = field(default_factory=dict)

    def line(self):
        extra = "".join(f" {key}={_fmt(value)}" for key, value in self.extra.items())
        return (
            f"{self.case}: enqueued={self.enqueued} performed={self.performed} dead={self.dead} "
            f"duplicates={self.duplicates} (runs={self.runs}, in flight at the faults={self.in_flight_at_faults})"
            f"{extra}"
        )


def _fmt(value):
    return f"{value:.2f}" if isinstance(value, float) else str(value)


class FaultCase:
    def __init__(self, name, tmp_path, redis_args=()):
        self.name = name
        self.dir = tmp_path
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.ledger_path = tmp_path / "ledger.txt"
        self.ledger_path.touch()
        self.server = start_redis_server(extra_args=redis_args)
        self.client = redis_lib.Redis.from_url(self.server.url, decode_responses=True)
        self.procs = []
        self._saved_url = os.environ.get("REDIS_URL")
        self._point_library_at(self.server.url)

    # -- this process's django_bgjobs -------------------------------------------------------

    def _point_library_at(self, url):
        os.environ["REDIS_URL"] = url
        conf.get_settings.cache_clear()
        connection.reset()

    def close(self):
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self.client.close()
        self.server.cleanup()
        if self._saved_url is not None:
            self._point_library_at(self._saved_url)

    # -- workers ------------------------------------------------------------------------------

    def worker(self, *args, settings=None):
        """Start ``runjobs ARGS`` with this case's Redis and ledger, plus ``settings`` over BGJOBS."""
        env = subprocess_env({
            "DJANGO_SETTINGS_MODULE": "tests.faults.settings",
            "REDIS_URL": self.server.url,
            "BGJOBS_TEST_REDIS_URL": self.server.url,
            LEDGER_ENV: str(self.ledger_path),
            "BGJOBS_FAULT_SETTINGS": json.dumps(settings or {}),
        })
        log_path = self.dir / f"runjobs-{len(self.procs) + 1}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "django", "runjobs", *args], cwd=REPO_ROOT, env=env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        proc.log_path = log_path
        self.procs.append(proc)
        return proc

    def log(self, proc):
        return proc.log_path.read_text(errors="replace")

    def live_identities(self):
        """Identities in ``processes`` whose heartbeat hash still exists."""
        return sorted(i for i in self.client.smembers("processes") if self.client.exists(i))

    def identity_of(self, pid, timeout=15):
        """The identity of the worker process ``pid``, once it has beaten."""
        return wait_until(
            lambda: next((i for i in self.live_identities() if int(i.rsplit(":", 2)[1]) == pid), None),
            timeout=timeout, message=f"worker pid {pid} in `processes`",
        )

    def kill9(self, pid):
        os.kill(pid, signal.SIGKILL)

    def kill9_and_count(self, pid, identity, label):
        """``kill -9`` worker ``pid`` (whose identity is ``identity``), wait for it to be gone,
        and count what its death sends back (:class:`KillCounts`, reported under ``label``):
        its in-flight jobs, split by the ledger's lines at that moment."""
        self.kill9(pid)
        wait_for(lambda: gone(pid), 10, f"pid {pid} gone")
        in_flight = self.in_flight(identity)
        counts = rerun_counts(in_flight, self.ledger_path.read_text().split())
        report(counts.line(f"{self.name}, {label}"))
        return counts

    # -- what Redis holds ---------------------------------------------------------------------

    def in_flight(self, identity=None):
        """jids in the in-flight lists of ``identity`` (every worker's when None)."""
        pattern = f"inflight:{identity}:*" if identity else "inflight:*"
        return [_jid(raw) for key in self.client.keys(pattern) for raw in self.client.lrange(key, 0, -1)]

    def queued(self, queue="default"):
        return [_jid(raw) for raw in self.client.lrange(f"queue:{queue}", 0, -1)]

    def dead(self):
        """jid -> dead entry (the parsed payload) for every job in the dead set."""
        entries = {}
        for raw in self.client.zrange("dead", 0, -1):
            entry = json.loads(raw)
            entries[entry.get("jid")] = entry
        return entries

    # -- the ledger ---------------------------------------------------------------------------

    def runs(self):
        """jid -> how many times a job with that jid finished ``perform``."""
        return collections.Counter(self.ledger_path.read_text().split())

    def runs_count(self):
        """Lines in the ledger, from its size (every line is a 24-character jid and a newline)."""
        return self.ledger_path.stat().st_size // 25

    def missing(self, jids):
        """The jids neither performed nor dead."""
        return set(jids) - set(self.runs()) - set(self.dead())

    def wait_accounted(self, jids, timeout):
        """Wait until every jid is performed or dead."""
        wait_until(lambda: not self.missing(jids), timeout=timeout, interval=0.1,
                   message=f"every one of {len(jids)} jobs performed or dead")

    def check(self, jids, in_flight_at_faults=(), **extra):
        """The ledger verdict (module docstring); return the :class:`Figures` and print them."""
        jids = set(jids)
        runs = self.runs()
        dead = self.dead()
        missing = jids - set(runs) - set(dead)
        strangers = set(runs) - jids
        repeated = {jid: n for jid, n in runs.items() if n > 1}
        unexplained = set(repeated) - set(in_flight_at_faults)
        reasonless = [jid for jid in set(dead) & jids if not dead[jid].get("dead_reason")]
        figures = Figures(
            case=self.name, enqueued=len(jids), performed=len(set(runs) & jids), runs=sum(runs.values()),
            dead=len(set(dead) & jids), duplicates=sum(n - 1 for n in repeated.values()),
            in_flight_at_faults=len(set(in_flight_at_faults)), extra=extra,
        )
        report(figures.line())
        assert not missing, f"{len(missing)} job(s) lost: {sorted(missing)[:10]}"
        assert not strangers, f"{len(strangers)} jid(s) ran that were never enqueued: {sorted(strangers)[:10]}"
        assert not unexplained, f"ran more than once but not in flight at a fault: {sorted(unexplained)[:10]}"
        assert not reasonless, f"dead without a reason: {reasonless[:10]}"
        return figures


@dataclass
class KillCounts:
    """What one ``kill -9`` sends back to run again: the jobs in the killed worker's in-flight
    lists at its death, split by whether they had finished (their ledger line written)."""

    #: Finished before the kill (ledger written), their end not yet in Redis: run again.
    finished: set
    #: Unfinished at the kill (running, or taken and not started): run again, as at-least-once allows.
    running: set

    def line(self, label):
        return (f"{label}: finished before the kill and run again={len(self.finished)}, "
                f"running at the kill and run again={len(self.running)}")


def rerun_counts(in_flight_at_kill, finished_before_kill):
    """Split the jids in a killed worker's in-flight lists (read once it is dead) by whether
    they had finished before the kill (:class:`KillCounts`)."""
    in_flight = set(in_flight_at_kill)
    return KillCounts(finished=in_flight & set(finished_before_kill), running=in_flight - set(finished_before_kill))


def report(line):
    """Print a case's figures now and again at the end of the run."""
    print("\n" + line)
    REPORTS.append(line)


def gone(pid):
    """True once ``pid`` has exited (a zombie its parent has not reaped yet counts: it runs nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def _jid(raw):
    try:
        return json.loads(raw).get("jid")
    except (ValueError, AttributeError):
        return raw


def wait_for(predicate, timeout, message):
    """:func:`tests.helpers.wait_until` with a coarser poll, for the longer waits of fault cases."""
    return wait_until(predicate, timeout=timeout, interval=0.05, message=message)


def elapsed_since(start):
    return time.monotonic() - start
