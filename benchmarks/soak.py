#!/usr/bin/env python3
"""Run one django-bgjobs worker (1 process, 10 threads) through many no-op jobs and watch its memory.

Usage::

    python benchmarks/soak.py                  # 1,000,000 jobs (about 4 minutes on 2 cores)
    python benchmarks/soak.py --jobs 200000

Keeps up to 100,000 jobs queued (bulk pushes of 20,000), samples the worker's resident set
(VmRSS) every 50,000 jobs, and reports its growth from the first sample after warm-up (the
first 100,000 jobs) to the end; the target is under 10%.  Writes ``results/soak.json``.
Uses the same virtualenv, Redis set-up and adapter as ``run.py``.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402  (the harness: virtualenv, redis-server, adapters)

WARMUP = 100_000
CHUNK = 20_000
SAMPLE_EVERY = 50_000


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    if not run.in_venv():
        python = run.ensure_venv()
        os.execv(str(python), [str(python), str(Path(__file__).resolve()), *argv])
    import redis

    server = run.RedisServer()
    bench = None
    try:
        client = redis.Redis.from_url(server.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise SystemExit("redis-server did not start")
                time.sleep(0.05)
        bench = run.Bench(server.url, run.parse_args(["--only", "bgjobs"]))
        info = bench.info("bgjobs")
        pushed = 0
        samples = []
        [worker] = bench.start_workers("bgjobs", info, 1, "soak")
        started = time.monotonic()
        next_sample = SAMPLE_EVERY
        while True:
            done = bench.done()
            if pushed < args.jobs and pushed - done < 5 * CHUNK:
                count = min(CHUNK, args.jobs - pushed)
                bench.client("bgjobs", "enqueue", count, "bulk")
                pushed += count
            if done >= next_sample:
                samples.append((done, rss_mib(worker.pid)))
                print(f"{done:>9,} jobs  RSS {samples[-1][1]:.1f} MiB  {done / (time.monotonic() - started):,.0f}/s",
                      flush=True)
                next_sample += SAMPLE_EVERY
            if done >= args.jobs:
                break
            if worker.poll() is not None:
                raise SystemExit(f"the worker exited with code {worker.returncode}")
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        bench.stop_workers([worker])
    finally:
        if bench is not None:
            bench.kill_all()
        server.stop()
    after_warmup = [rss for done, rss in samples if done >= WARMUP] or [samples[0][1]]
    growth = (samples[-1][1] - after_warmup[0]) / after_warmup[0]
    report = {
        "jobs": args.jobs, "seconds": elapsed, "jobs_per_s": args.jobs / elapsed,
        "rss_after_warmup_mib": after_warmup[0], "rss_end_mib": samples[-1][1], "rss_max_mib": max(r for _, r in samples),
        "growth_after_warmup": growth, "samples": samples,
    }
    print(f"RSS {after_warmup[0]:.1f} MiB after {WARMUP:,} jobs, {samples[-1][1]:.1f} MiB after {args.jobs:,} "
          f"({growth:+.1%}); {args.jobs / elapsed:,.0f} jobs/s")
    (run.RESULTS / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
