"""Soak run: a million no-op jobs through ``runjobs --processes 2``, watching the workers' memory.

Usage (needs ``redis-server`` on ``PATH``, or ``--redis-url`` of a Redis database that is empty)::

    python benchmarks/soak.py                       # 1,000,000 jobs, 2 processes of 5 threads
    python benchmarks/soak.py --jobs 5000000 --json soak.json
    python benchmarks/soak.py --processes 1 --concurrency 10   # one worker process

1. Starts a throwaway ``redis-server`` on a free port (nothing kept on disk), unless given
   ``--redis-url``.
2. Writes a minimal Django project to a temporary directory (settings, and an app whose
   ``NoopJob`` does nothing), so the run needs nothing but this package and Django.
3. Starts ``python -m django runjobs --processes N -c C -v 0`` (warnings only: no log line per
   job) and keeps its queue fed with bulk pushes from this process, never more than
   ``--backlog`` jobs waiting.
4. Every ``--sample-s`` seconds records the jobs done so far and the resident set size
   (``VmRSS``) of each worker process.  At the end prints the throughput, the RSS curve, and
   each process's growth from the first sample after ``--warmup-s`` to the last; growth over
   ``--max-growth`` (10%) is flagged and makes the exit status 1.

A benchmark, not part of the package or of the test suite: a full run takes minutes.  The enqueuing runs on the same machine
and takes its share of the CPU; the throughput is the system's, not the worker's alone.
"""

import argparse
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

# Run from a checkout (python benchmarks/soak.py): the package beside this folder.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SETTINGS = '''
import os
SECRET_KEY = "django-bgjobs-soak-not-secret"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["django_bgjobs", "soakapp"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
BGJOBS = {"REDIS_URL": os.environ["BGJOBS_SOAK_REDIS_URL"], "QUEUES": ["soak"]}
'''

JOBS = '''
from django_bgjobs import Job


class NoopJob(Job):
    queue = "soak"

    def perform(self, n):
        return None
'''


def main(argv=None):
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bgjobs-soak-"))
    server = None
    supervisor = None
    try:
        url = args.redis_url
        if url is None:
            server, url = start_redis(workdir)
        project = write_project(workdir)
        env = dict(os.environ, DJANGO_SETTINGS_MODULE="soak_settings", BGJOBS_SOAK_REDIS_URL=url,
                   PYTHONPATH=os.pathsep.join([str(project), *sys.path]))
        os.environ.update(DJANGO_SETTINGS_MODULE="soak_settings", BGJOBS_SOAK_REDIS_URL=url)
        os.environ.pop("REDIS_URL", None)  # it would win over the soak's own URL
        sys.path.insert(0, str(project))
        import django

        django.setup()
        from django_bgjobs.connection import get_redis

        client = get_redis()
        if client.dbsize():
            raise SystemExit(f"the Redis database at {url} is not empty; give an empty one")
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "django", "runjobs", "--processes", str(args.processes),
             "-c", str(args.concurrency), "-v", "0"],
            env=env, stdout=subprocess.DEVNULL, stderr=open(workdir / "runjobs.log", "wb"),
            start_new_session=True,
        )
        result = soak(args, client, supervisor)
    finally:
        if supervisor is not None and supervisor.poll() is None:
            supervisor.send_signal(signal.SIGTERM)
            try:
                supervisor.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(supervisor.pid, signal.SIGKILL)
        if server is not None:
            server.kill()
            server.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    report(args, result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 1 if result["flagged"] else 0


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python benchmarks/soak.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=5, help="threads per process")
    parser.add_argument("--sample-s", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=0.1,
                        help="the share of the jobs that warms up; growth is measured from the first sample after it")
    parser.add_argument("--max-growth", type=float, default=0.10)
    parser.add_argument("--backlog", type=int, default=100_000, help="most jobs waiting in the queue at once")
    parser.add_argument("--batch", type=int, default=10_000, help="jobs per bulk push")
    parser.add_argument("--redis-url", help="an empty Redis database to use instead of starting redis-server")
    parser.add_argument("--json", help="also write the result to this file")
    return parser.parse_args(argv)


def start_redis(workdir):
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH; install it or give --redis-url")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return server, f"redis://127.0.0.1:{port}/0"
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("redis-server did not start")
        time.sleep(0.05)


def write_project(workdir):
    project = workdir / "project"
    (project / "soakapp").mkdir(parents=True)
    (project / "soak_settings.py").write_text(SETTINGS)
    (project / "soakapp" / "__init__.py").write_text("")
    (project / "soakapp" / "jobs.py").write_text(JOBS)
    return project


def worker_pids(runjobs_pid, processes):
    """The worker processes: the supervisor's children under ``--processes N`` (N > 1), else
    ``runjobs`` itself (one process runs the worker, with no supervisor)."""
    if processes == 1:
        return [runjobs_pid]
    try:
        return sorted(int(pid) for pid in Path(f"/proc/{runjobs_pid}/task/{runjobs_pid}/children")
                      .read_text().split())
    except OSError:
        return []


def rss_mib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def soak(args, client, supervisor):
    from soakapp.jobs import NoopJob

    from django_bgjobs import keys

    queue_key = keys.queue("soak")
    pushed, samples, pids_seen = 0, [], set()
    started = time.monotonic()
    next_sample = started + args.sample_s
    done = 0
    while True:
        if supervisor.poll() is not None:
            raise SystemExit(f"runjobs exited with code {supervisor.returncode}")
        waiting = client.llen(queue_key)
        in_flight = sum(client.llen(key) for key in client.scan_iter(match=keys.inflight("*", "soak")))
        done = pushed - waiting - in_flight
        now = time.monotonic()
        if now >= next_sample or done >= args.jobs:
            pids = worker_pids(supervisor.pid, args.processes)
            pids_seen.update(pids)
            samples.append({
                "t_s": round(now - started, 1), "done": done, "rss_mib": {str(pid): rss_mib(pid) for pid in pids},
            })
            print(f"{samples[-1]['t_s']:>7.1f}s {done:>10,} jobs  "
                  + "  ".join(f"pid {pid}: {rss:.1f} MiB" for pid, rss in samples[-1]["rss_mib"].items() if rss),
                  flush=True)
            next_sample += args.sample_s
        if done >= args.jobs:
            break
        if pushed < args.jobs and waiting < args.backlog - args.batch:
            count = min(args.batch, args.jobs - pushed)
            NoopJob.perform_bulk([(n,) for n in range(pushed, pushed + count)])
            pushed += count
        else:
            time.sleep(0.05)
    elapsed_s = time.monotonic() - started
    return analyse(args, samples, elapsed_s, done, sorted(pids_seen))


def analyse(args, samples, elapsed_s, done, pids):
    """Growth of each worker process's RSS from the first sample after warm-up to the last."""
    growth = {}
    warmup_jobs = args.jobs * args.warmup
    warm = [s for s in samples if s["done"] >= warmup_jobs] or samples[-1:]
    for pid in map(str, pids):
        series = [s["rss_mib"].get(pid) for s in warm if s["rss_mib"].get(pid)]
        if len(series) >= 2:
            growth[pid] = (series[-1] - series[0]) / series[0]
    return {
        "jobs": done, "elapsed_s": round(elapsed_s, 1), "jobs_per_s": round(done / elapsed_s, 1),
        "processes": args.processes, "concurrency": args.concurrency, "warmup_jobs": int(args.jobs * args.warmup),
        "worker_pids": pids, "samples": samples, "growth_after_warmup": growth,
        "flagged": any(g > args.max_growth for g in growth.values()),
        "load_average": os.getloadavg(),
    }


def report(args, result):
    print(f"\n{result['jobs']:,} jobs in {result['elapsed_s']:.0f}s: {result['jobs_per_s']:,.0f} jobs/s "
          f"({result['processes']} processes x {result['concurrency']} threads); "
          f"load average at the end {', '.join(f'{x:.2f}' for x in result['load_average'])}")
    if len(result["worker_pids"]) != result["processes"]:
        print(f"worker processes seen: {result['worker_pids']} (a process was replaced during the run)")
    for pid, growth in result["growth_after_warmup"].items():
        verdict = "FLAGGED" if growth > args.max_growth else "ok"
        print(f"pid {pid}: RSS {growth:+.1%} from the first sample after {args.jobs * args.warmup:,.0f} jobs "
              f"to the end ({verdict})")


if __name__ == "__main__":
    sys.exit(main())
