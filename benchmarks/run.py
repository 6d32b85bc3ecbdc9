#!/usr/bin/env python3
"""Benchmark django-bgjobs side by side with Sidekiq, Dramatiq, Huey, Celery and RQ.

Usage (from anywhere; the first run takes a minute to build the virtualenv)::

    python benchmarks/run.py                 # 20,000 jobs per figure, every system
    python benchmarks/run.py --quick         # 2,000 jobs, for trying things
    python benchmarks/run.py --only bgjobs --only sidekiq

What it does, in one run on one Redis:

1. Makes ``benchmarks/.venv`` (once) with the Python peers pinned in ``requirements.txt``
   and django-bgjobs's own dependencies, and re-runs itself there.  Ruby's Sidekiq is used
   when Debian's ``ruby-sidekiq`` is installed; run as root, this script installs it with
   apt-get when apt has it (``--no-apt`` to skip), otherwise Sidekiq is skipped with the reason.
2. Starts its own ``redis-server`` on a free loopback port (nothing on disk) and flushes it
   between runs.
3. For each system, through its adapter (``adapters/<name>.py``), with the same no-op job
   (``INCR bench:done``; the harness polls that counter to see a run finish):

   * enqueue N jobs one call at a time (a client process of its own; seconds of the loop only);
   * drain them with one worker process of 10 threads: jobs/s from the worker's launch until
     the counter reaches N (start-up included, as an operator sees it); peak RSS of the worker;
   * bulk-enqueue N jobs (systems without a bulk call enqueue one by one, untimed);
   * drain them with two worker processes of 10 threads each;
   * latency: on an idle one-process worker, enqueue 500 jobs at 100/s, each carrying its
     enqueue time; the job records ``start of perform - enqueue time``; p50 and p99.

4. Prints one table (each figure and its ratio to django-bgjobs's) and writes it as JSON
   to ``results/latest.json`` (``results/latest-quick.json`` with ``--quick``).
   Worker logs go to ``results/logs/``.

On a busy machine, ``--repeat N`` measures every system N times, in turn, and keeps each
figure's best (every run stays in the JSON).
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV = HERE / ".venv"
RESULTS = HERE / "results"
LOGS = RESULTS / "logs"

SYSTEMS = ["bgjobs", "sidekiq", "dramatiq", "huey", "celery", "rq"]
ALIASES = {"django-bgjobs": "bgjobs", "django_bgjobs": "bgjobs", "ruby": "sidekiq"}
BASELINE = "bgjobs"
THREADS = 10
DONE = "bench:done"
LATENCY = "bench:latency"
WARMUP_JOBS = 20

# (key, column title, unit, higher is better)
FIGURES = [
    ("enqueue_per_s", "enqueue 1 by 1", "/s", True),
    ("bulk_per_s", "bulk enqueue", "/s", True),
    ("drain_1p_per_s", "drain 1 proc", "/s", True),
    ("drain_2p_per_s", "drain 2 procs", "/s", True),
    ("latency_p50_ms", "latency p50", "ms", False),
    ("latency_p99_ms", "latency p99", "ms", False),
    ("rss_mib", "worker RSS", "MiB", False),
]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 jobs and 100 latency jobs, to try things")
    parser.add_argument("--jobs", type=int, help="jobs per enqueue/drain figure (default 20,000; 2,000 with --quick)")
    parser.add_argument("--latency-jobs", type=int, help="jobs in the latency run (default 500; 100 with --quick)")
    parser.add_argument("--latency-rate", type=float, default=100.0, help="jobs/s in the latency run (default 100)")
    parser.add_argument("--only", action="append", metavar="NAME",
                        help=f"run only these systems (repeat or comma-separate): {', '.join(SYSTEMS)}")
    parser.add_argument("--json", type=Path, help="where to write the results (default results/latest.json)")
    parser.add_argument("--no-apt", action="store_true", help="never apt-get install ruby-sidekiq")
    parser.add_argument("--phase-timeout", type=float, default=600, help="seconds one phase may take (default 600)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="measure every system N times, in turn, and keep each figure's best (for a busy machine)")
    args = parser.parse_args(argv)
    args.jobs = args.jobs or (2_000 if args.quick else 20_000)
    args.latency_jobs = args.latency_jobs or (100 if args.quick else 500)
    names = []
    for item in args.only or SYSTEMS:
        for name in item.split(","):
            name = ALIASES.get(name.strip().lower(), name.strip().lower())
            if name not in SYSTEMS:
                parser.error(f"unknown system {name!r}; choose from {', '.join(SYSTEMS)}")
            if name not in names:
                names.append(name)
    args.systems = names
    args.json = args.json or RESULTS / ("latest-quick.json" if args.quick else "latest.json")
    return args


# -- the virtualenv ----------------------------------------------------------------------


def project_dependencies():
    import tomllib

    with open(REPO / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    return project["dependencies"] + project["optional-dependencies"]["hiredis"]


def ensure_venv():
    """Create ``benchmarks/.venv`` and install the peers; return its python.  Reinstalls only
    when ``requirements.txt`` or the project's dependencies change."""
    python = VENV / "bin" / "python"
    wanted = (HERE / "requirements.txt").read_text() + "\n".join(project_dependencies())
    stamp = VENV / ".installed"
    digest = hashlib.sha256(wanted.encode()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == digest:
        return python
    if not python.exists():
        print(f"creating {VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    print("installing the peers into it (rq, celery[redis], dramatiq[redis], huey) ...", flush=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-r", str(HERE / "requirements.txt"), *project_dependencies()],
        check=True,
    )
    stamp.write_text(digest)
    return python


def in_venv():
    return Path(sys.prefix).resolve() == VENV.resolve()


def ensure_sidekiq(no_apt):
    """None when ``sidekiq`` is on PATH (installing Debian's ruby-sidekiq if allowed), else why not."""
    if shutil.which("sidekiq") and shutil.which("ruby"):
        return None
    if no_apt:
        return "ruby-sidekiq is not installed and --no-apt was given"
    if shutil.which("apt-get") is None:
        return "ruby-sidekiq is not installed and this machine has no apt-get"
    if os.geteuid() != 0:
        return "ruby-sidekiq is not installed; run as root, or: sudo apt-get install -y ruby-sidekiq"

    def candidate():
        out = subprocess.run(["apt-cache", "policy", "ruby-sidekiq"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.strip().startswith("Candidate:"):
                value = line.split(":", 1)[1].strip()
                return None if value == "(none)" else value
        return None

    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if candidate() is None:
        print("apt-get update (looking for ruby-sidekiq) ...", flush=True)
        subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL)
    version = candidate()
    if version is None:
        return "apt has no ruby-sidekiq package here"
    print(f"apt-get install -y ruby-sidekiq ({version}) ...", flush=True)
    done = subprocess.run(["apt-get", "install", "-y", "-q", "ruby-sidekiq"], env=env, stdout=subprocess.DEVNULL)
    if done.returncode != 0 or not shutil.which("sidekiq"):
        return f"apt-get install ruby-sidekiq failed (exit {done.returncode})"
    return None


# -- Redis -------------------------------------------------------------------------------


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A throwaway ``redis-server`` on a free loopback port that keeps nothing on disk."""

    def __init__(self):
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not on PATH (apt-get install -y redis-server)")
        self.dir = tempfile.mkdtemp(prefix="bgjobs-bench-redis-")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir, "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


# -- processes ---------------------------------------------------------------------------


def descendants(pid):
    """``pid`` and every process below it (read from /proc)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def peak_rss_mib(pids):
    """The largest peak resident set (VmHWM) of any process in the trees of ``pids``, in MiB."""
    peak = 0
    for root in pids:
        for pid in descendants(root):
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            peak = max(peak, int(line.split()[1]))
            except OSError:
                continue
    return peak / 1024


class PhaseError(Exception):
    pass


class Bench:
    def __init__(self, redis_url, args):
        import redis

        self.args = args
        self.url = redis_url
        self.redis = redis.Redis.from_url(redis_url)
        self.env = dict(
            os.environ, BENCH_REDIS_URL=redis_url, REDIS_URL=redis_url, PYTHONUNBUFFERED="1",
            PYTHONPATH=os.pathsep.join([str(HERE), str(REPO)]),
        )
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        self.running = []
        self.tmp = tempfile.mkdtemp(prefix="bgjobs-bench-")
        if BASELINE in args.systems:  # django-bgjobs's database, migrated once for every process
            self.env["BENCH_DB"] = os.path.join(self.tmp, "db.sqlite3")
            subprocess.run(
                [sys.executable, "-m", "django", "migrate", "-v", "0"], cwd=HERE, check=True,
                env=dict(self.env, DJANGO_SETTINGS_MODULE="bgjobs_bench.settings"),
            )

    def adapter(self, name, *args):
        return [sys.executable, "-m", "adapters", name, *map(str, args)]

    def info(self, name):
        out = subprocess.run(self.adapter(name, "info"), cwd=HERE, env=self.env, capture_output=True, text=True)
        if out.returncode != 0:
            return {"unavailable": f"adapter failed: {out.stderr.strip().splitlines()[-1:]}"}
        return json.loads(out.stdout.strip().splitlines()[-1])

    def client(self, name, *args):
        """Run a client role of the adapter; return the JSON it printed."""
        out = subprocess.run(
            self.adapter(name, *args), cwd=HERE, env=self.env, capture_output=True, text=True,
            timeout=self.args.phase_timeout,
        )
        if out.returncode != 0:
            raise PhaseError(f"{name} {' '.join(map(str, args))} failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    def start_workers(self, name, info, processes, log_name):
        LOGS.mkdir(parents=True, exist_ok=True)
        copies = 1 if info["multiprocess"] == "native" else processes
        per_command = processes if info["multiprocess"] == "native" else 1
        procs = []
        for index in range(copies):
            log = open(LOGS / f"{name}-{log_name}-{index}.log", "wb")
            procs.append(subprocess.Popen(
                self.adapter(name, "worker", per_command, THREADS, index), cwd=HERE, env=self.env,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            ))
            log.close()
        self.running.extend(procs)
        return procs

    def stop_workers(self, procs, timeout_s=30):
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of its process group
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
            self.running.remove(proc)

    def kill_all(self):
        shutil.rmtree(self.tmp, ignore_errors=True)
        for proc in list(self.running):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
            self.running.remove(proc)

    def done(self):
        return int(self.redis.get(DONE) or 0)

    def wait_done(self, target, procs, since):
        """Poll the counter until it reaches ``target``; return (first job seen, all done) as
        monotonic times."""
        first = None
        deadline = since + self.args.phase_timeout
        while True:
            count = self.done()
            now = time.monotonic()
            if count and first is None:
                first = now
            if count >= target:
                return first, now
            if now > deadline:
                raise PhaseError(f"only {count} of {target} jobs done after {self.args.phase_timeout:.0f}s")
            for proc in procs:
                if proc.poll() is not None:
                    raise PhaseError(f"a worker exited with code {proc.returncode} after {count} jobs (see results/logs/)")
            time.sleep(0.002)

    def fresh(self):
        self.redis.flushall()

    # -- the figures ---------------------------------------------------------------------

    def measure(self, name, info):
        n = self.args.jobs
        result = {"label": info["label"], "version": info["version"]}
        self.fresh()
        out = self.client(name, "enqueue", n, "single")
        result["enqueue_per_s"] = n / out["seconds"]
        print(f"  enqueue one by one: {result['enqueue_per_s']:,.0f}/s", flush=True)
        result.update(self.drain(name, info, 1, n))
        print(f"  drain, 1 process: {result['drain_1p_per_s']:,.0f}/s; peak RSS {result['rss_mib']:.0f} MiB", flush=True)

        self.fresh()
        if info["bulk"]:
            out = self.client(name, "enqueue", n, "bulk")
            result["bulk_per_s"] = n / out["seconds"]
            print(f"  bulk enqueue: {result['bulk_per_s']:,.0f}/s", flush=True)
        else:
            self.client(name, "enqueue", n, "single")
            result["bulk_per_s"] = None
        result.update(self.drain(name, info, 2, n))
        print(f"  drain, 2 processes: {result['drain_2p_per_s']:,.0f}/s", flush=True)

        result.update(self.latency(name, info))
        print(f"  latency: p50 {result['latency_p50_ms']:.2f} ms, p99 {result['latency_p99_ms']:.2f} ms", flush=True)
        return result

    def drain(self, name, info, processes, n):
        key = f"drain_{processes}p"
        started = time.monotonic()
        procs = self.start_workers(name, info, processes, key)
        try:
            first, finished = self.wait_done(n, procs, started)
            rss = peak_rss_mib([p.pid for p in procs])
        finally:
            self.stop_workers(procs)
        figures = {
            f"{key}_per_s": n / (finished - started),
            f"{key}_startup_s": first - started,
            f"{key}_after_first_job_per_s": n / max(finished - first, 1e-9),
            f"{key}_jobs_run": self.done(),
        }
        if processes == 1:
            figures["rss_mib"] = rss
        return figures

    def latency(self, name, info):
        self.fresh()
        procs = self.start_workers(name, info, 1, "latency")
        try:
            started = time.monotonic()
            self.client(name, "enqueue", WARMUP_JOBS, "single")
            self.wait_done(WARMUP_JOBS, procs, started)
            time.sleep(1.0)  # idle
            self.redis.delete(DONE)
            count = self.args.latency_jobs
            self.client(name, "latency", count, self.args.latency_rate)
            self.wait_done(count, procs, time.monotonic())
            samples = sorted(float(x) * 1000 for x in self.redis.lrange(LATENCY, 0, -1))
        finally:
            self.stop_workers(procs)
        return {
            "latency_p50_ms": percentile(samples, 50), "latency_p99_ms": percentile(samples, 99),
            "latency_max_ms": samples[-1], "latency_samples": len(samples),
        }


def best_of(runs):
    """One result from several runs of a system: each figure's best (most jobs/s, fewest ms
    or MiB), with every run kept under ``runs``."""
    best = dict(runs[0])
    for key, _, _, higher_is_better in FIGURES:
        values = [run[key] for run in runs if run.get(key) is not None]
        if values:
            best[key] = max(values) if higher_is_better else min(values)
    if len(runs) > 1:
        best["runs"] = runs
    return best


def percentile(sorted_values, p):
    """Nearest-rank percentile of an already sorted list."""
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


# -- output ------------------------------------------------------------------------------


def machine(redis_version):
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kib = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    except (OSError, StopIteration):
        mem_kib = 0
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "os": platform.platform(), "python": platform.python_version(), "redis": redis_version,
    }


def fmt(key, value):
    if value is None:
        return "—"
    if key.endswith("_per_s"):
        return f"{value:,.0f}/s"
    if key.endswith("_ms"):
        return f"{value:.2f} ms"
    return f"{value:.0f} MiB"


def table(results, order):
    """The results as rows of text: each figure with its ratio to django-bgjobs's."""
    base = results.get(BASELINE) or {}
    header = ["system"] + [title for _, title, _, _ in FIGURES]
    rows = [header]
    for name in order:
        res = results.get(name)
        if res is None:
            continue
        row = [f"{res['label']} {res['version']}"]
        for key, _, _, _ in FIGURES:
            value, ref = res.get(key), base.get(key)
            cell = fmt(key, value)
            if value is not None and ref:
                cell += f" ({value / ref:.2f}×)"
            row.append(cell)
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def main(argv):
    args = parse_args(argv)
    if not in_venv():
        python = ensure_venv()
        os.execv(str(python), [str(python), str(Path(__file__).resolve()), *argv])
    skipped = {}
    if "sidekiq" in args.systems:
        reason = ensure_sidekiq(args.no_apt)
        if reason:
            skipped["sidekiq"] = reason
    server = RedisServer()
    bench = None
    load_before = os.getloadavg()
    try:
        import redis

        deadline = time.monotonic() + 10
        while True:
            try:
                redis_version = redis.Redis.from_url(server.url).info("server")["redis_version"]
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise SystemExit("redis-server did not start")
                time.sleep(0.05)
        bench = Bench(server.url, args)
        print(f"Redis {redis_version} at {server.url}; {args.jobs:,} jobs; load average {load_before[0]:.2f}",
              flush=True)
        runs = {}
        infos = {}
        for name in args.systems:
            if name in skipped:
                print(f"{name}: skipped: {skipped[name]}", flush=True)
                continue
            infos[name] = bench.info(name)
            if infos[name].get("unavailable"):
                skipped[name] = infos[name]["unavailable"]
                print(f"{name}: skipped: {skipped[name]}", flush=True)
        for round_number in range(1, args.repeat + 1):
            for name in [n for n in args.systems if n not in skipped]:
                info = infos[name]
                suffix = f" (round {round_number} of {args.repeat})" if args.repeat > 1 else ""
                print(f"{info['label']} {info['version']}{suffix}:", flush=True)
                try:
                    runs.setdefault(name, []).append(bench.measure(name, info))
                except (PhaseError, subprocess.TimeoutExpired) as exc:
                    bench.kill_all()
                    skipped[name] = f"failed: {exc}"
                    runs.pop(name, None)
                    print(f"  FAILED: {exc}", flush=True)
        results = {name: best_of(measured) for name, measured in runs.items()}
    finally:
        if bench is not None:
            bench.kill_all()
        server.stop()
    load_after = os.getloadavg()
    lines = table(results, args.systems)
    print()
    print("\n".join(lines))
    print(f"(ratio = the system's figure / django-bgjobs's; load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after)")
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/run.py " + " ".join(argv),
        "jobs": args.jobs, "threads": THREADS, "latency_jobs": args.latency_jobs, "repeat": args.repeat,
        "latency_rate_per_s": args.latency_rate,
        "machine": machine(redis_version) | {"load_average_before": load_before[0], "load_average_after": load_after[0]},
        "systems": results, "skipped": skipped, "table": lines,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.json}")
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
