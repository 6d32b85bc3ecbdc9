"""Test helpers: waiting on conditions, throwaway Redis servers, worker subprocesses.

* :func:`wait_until` polls a predicate with a deadline; tests wait on conditions
  this way instead of sleeping.
* :func:`start_redis_server` starts a ``redis-server`` that keeps nothing on
  disk, on a free loopback port.  ``conftest.py`` uses it for the session's
  server; fault tests use it for extra servers they may kill and restart.
* :func:`start_worker` / :func:`stop_worker` run ``python -m django runjobs`` in a
  subprocess with the test settings, its output going to a log file (a PIPE
  nobody reads would fill up and block the worker).
"""

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

_started_procs = []
_proc_numbers = itertools.count(1)


def wait_until(predicate, timeout=10, interval=0.02, message=None):
    """Call ``predicate()`` until it returns a truthy value, and return that value.

    Raises ``AssertionError`` (naming ``message`` or the predicate) when
    ``timeout`` seconds pass first.  Exceptions from the predicate propagate.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", repr(predicate))
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port():
    """Return a TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1 that keeps nothing on disk.

    ``start()`` may be called again after ``stop()`` or ``kill()`` to bring the
    server back on the same port (empty), which is what reconnect tests need.
    """

    def __init__(self, port=None, extra_args=()):
        self.port = port or free_port()
        self.extra_args = tuple(extra_args)
        self.dir = Path(tempfile.mkdtemp(prefix="bgjobs-redis-"))
        self.log_path = self.dir / "redis.log"
        self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s=10):
        """Start the server and return once it answers PING."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found on PATH (apt-get install redis-server)")
        args = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--daemonize", "no",
            *self.extra_args,
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout_s
        while not self.ping():
            if self.proc.poll() is not None or time.monotonic() >= deadline:
                self.kill()
                log_text = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server on port {self.port} did not start:\n{log_text}")
            time.sleep(0.02)
        return self

    def ping(self):
        """True when the server answers PING (a raw socket, so this needs no client library)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s=10):
        """Stop the server with SIGTERM (SIGKILL if it has not exited in ``timeout_s``)."""
        self._end(signal.SIGTERM, timeout_s)

    def kill(self):
        """Kill the server at once with SIGKILL, as a crash would."""
        self._end(signal.SIGKILL, 10)

    def _end(self, sig, timeout_s):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self):
        """Kill the server if needed and remove its directory."""
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.cleanup()

    def __repr__(self):
        return f"<RedisServer {self.url} running={self.running}>"


def start_redis_server(port=None, extra_args=(), attempts=3):
    """Start a throwaway ``redis-server`` and return its :class:`RedisServer`.

    With no ``port`` a free one is picked; another process can take it between
    the pick and the server's bind, so that case is retried on a new port.
    """
    for attempt in range(attempts):
        server = RedisServer(port=port, extra_args=extra_args)
        try:
            return server.start()
        except RuntimeError:
            server.cleanup()
            if port is not None or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def subprocess_env(env=None):
    """The environment for a Django subprocess: this one, plus the repo on PYTHONPATH.

    It keeps ``DJANGO_SETTINGS_MODULE`` and the throwaway ``REDIS_URL`` /
    ``BGJOBS_TEST_REDIS_URL``, and on PostgreSQL names the current test
    database so the subprocess reads what the test committed.
    """
    child = dict(os.environ)
    child.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    paths = [str(REPO_ROOT)] + [p for p in child.get("PYTHONPATH", "").split(os.pathsep) if p]
    child["PYTHONPATH"] = os.pathsep.join(paths)
    child["PYTHONUNBUFFERED"] = "1"
    child["BGJOBS_TEST_SUBPROCESS"] = "1"
    test_db_name = _current_test_db_name()
    if test_db_name:
        child["BGJOBS_TEST_DB_NAME"] = test_db_name
    child.update(env or {})
    return child


def _current_test_db_name():
    try:
        from django.db import connection

        if connection.vendor == "postgresql":
            return str(connection.settings_dict["NAME"])
    except Exception:  # Django not set up: the subprocess uses its settings as they are
        return None
    return None


def start_django_command(command, *args, env=None, log_dir=None):
    """Run ``python -m django COMMAND ARGS`` in the background and return the ``Popen``.

    Output (stdout and stderr together) goes to ``proc.log_path``; read it with
    :func:`read_log`.  The process is remembered so :func:`kill_leftover_procs`
    can end it if a test forgets to.
    """
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="bgjobs-proc-"))
    log_path = log_dir / f"{command}-{next(_proc_numbers)}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "django", command, *args],
            cwd=REPO_ROOT,
            env=subprocess_env(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    proc.log_path = log_path
    _started_procs.append(proc)
    return proc


def start_worker(*args, env=None, log_dir=None):
    """Start ``runjobs ARGS`` (e.g. ``"-c", "2", "-q", "default"``) in a subprocess."""
    return start_django_command("runjobs", *args, env=env, log_dir=log_dir)


def read_log(proc):
    """Everything the subprocess has written so far."""
    return Path(proc.log_path).read_text(errors="replace")


def stop_worker(proc, sig=signal.SIGTERM, timeout=15):
    """Send ``sig`` to the worker, wait for it to exit, and return its exit code.

    Raises ``AssertionError`` with the end of the log if it is still running
    after ``timeout`` seconds (it is then killed so nothing leaks).
    """
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(
            f"worker pid {proc.pid} still running {timeout}s after signal {sig!r}; log tail:\n"
            + read_log(proc)[-3000:]
        ) from None


def started_procs():
    """The subprocesses started here and not yet reaped by :func:`kill_leftover_procs`."""
    return list(_started_procs)


def kill_leftover_procs(keep=()):
    """SIGKILL every subprocess started here, except those in ``keep``; return how many were running.

    ``conftest.py`` calls it after each test with ``keep`` = what was running
    before the test, so a worker started by a module-scoped fixture survives.
    """
    killed = 0
    for proc in list(_started_procs):
        if any(proc is kept for kept in keep):
            continue
        _started_procs.remove(proc)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            killed += 1
    return killed


def drain(processor, limit=50):
    """Run a worker ``Processor`` one step at a time until the queues are empty; return how many ran."""
    count = 0
    while processor.process_one(block=False):
        count += 1
        assert count < limit, "the queue never emptied"
    return count


def dead_entries(redis):
    """The dead set's payloads as dicts, oldest death first."""
    return [json.loads(raw) for raw in redis.zrange("dead", 0, -1)]


def register_process(redis, identity, *, busy=0, quiet=False, alive=True, work=None, concurrency=5,
                     async_concurrency=None, queues=("critical", "default")):
    """A worker process as its heartbeat leaves it in Redis (``alive=False``: its hash expired)."""
    from django_bgjobs import keys

    redis.sadd(keys.processes(), identity)
    if alive:
        info = {
            "hostname": "host-1", "pid": 4242, "tag": "app", "started_at": 1_700_000_000.5,
            "queues": list(queues), "concurrency": concurrency, "identity": identity,
        }
        if async_concurrency is not None:
            info["async_concurrency"] = async_concurrency
        redis.hset(keys.process(identity), mapping={
            "info": json.dumps(info), "busy": busy, "beat": 1_700_000_100.25, "quiet": str(quiet).lower(),
        })
        redis.expire(keys.process(identity), 60)
    for thread_id, job in (work or {}).items():
        redis.hset(keys.work(identity), thread_id, json.dumps(job))


@contextlib.contextmanager
def worker_manager(identity, queues=("default",), concurrency=1, async_concurrency=50):
    """A worker process's Manager (processor threads not started, the event loop for async
    jobs) for a test to drive with :func:`run_queued`; the loop is stopped afterwards."""
    from django_bgjobs.worker.fetcher import Fetcher
    from django_bgjobs.worker.manager import Manager
    from django_bgjobs.worker.queues import QueueOrder

    manager = Manager(Fetcher(identity, QueueOrder(list(queues))), concurrency, async_concurrency=async_concurrency)
    try:
        yield manager
    finally:
        manager.event_loop.abandon()
        manager.event_loop.stop()


def run_queued(manager, timeout=10):
    """Hand every queued job to ``manager``'s first processor (in this thread), then wait until
    the event loop has ended every async one."""
    while manager.processors[0].process_one(block=False):
        pass
    wait_until(lambda: not manager.busy_work(), timeout=timeout, message="async jobs to end")


def snapshot(raw_redis):
    """Every key's type, serialized value and whether it has a TTL: equal snapshots = nothing written."""
    return {
        key: (raw_redis.type(key), raw_redis.dump(key), raw_redis.pttl(key) > 0)
        for key in sorted(raw_redis.scan_iter(count=1000))
    } | {"__dbsize__": raw_redis.dbsize()}


def unit_in_flight(raw, identity, queue="default"):
    """The worker's unit of work for ``raw``, a payload the test moved into ``identity``'s
    in-flight list of ``queue`` itself (as a fetch would): end it with ``acknowledge`` / ``fail``."""
    from django_bgjobs.worker.fetcher import Fetcher, UnitOfWork
    from django_bgjobs.worker.queues import QueueOrder

    return UnitOfWork(Fetcher(identity, QueueOrder([queue])), queue, raw)
