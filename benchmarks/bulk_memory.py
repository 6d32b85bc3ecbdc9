#!/usr/bin/env python3
"""Client memory of one ``perform_bulk``: peak RSS growth and tracemalloc peak, per bulk size.

Usage::

    python benchmarks/bulk_memory.py CHECKOUT REDIS_URL [ITEMS ...]

``CHECKOUT`` is a django-bgjobs tree, imported ahead of any installed copy; ``REDIS_URL`` a
throwaway database (it is flushed).  Each size (default 200000 and 1000000) runs in a fresh
subprocess, so one size's freed memory does not hide the next one's peak.  For each it prints
the growth of the peak RSS (``ru_maxrss``) over the process's RSS just before the call, the
tracemalloc peak of a second call (tracemalloc slows the call down and adds its own memory,
so the two are measured apart), and the jobs written.  The handles ``perform_bulk`` returns
are part of what it costs: they are kept until the figures are taken.
"""

import json
import os
import resource
import subprocess
import sys
import time


def measure(checkout, url, items):
    sys.path[:0] = [checkout, os.path.join(checkout, "benchmarks")]
    os.environ.update(BENCH_REDIS_URL=url, REDIS_URL=url, DJANGO_SETTINGS_MODULE="bgjobs_bench.settings")
    import django

    django.setup()
    import tracemalloc

    import redis

    from bgjobs_bench.jobs import NoopJob

    client = redis.Redis.from_url(url)
    client.flushdb()
    NoopJob.perform_later(0)  # the script loaded, the connection open
    args = [(n,) for n in range(items)]
    before_kb = _rss_kb()
    started = time.perf_counter()
    handles = NoopJob.perform_bulk(args)
    elapsed_s = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    written = client.llen("queue:default") - 1
    del handles
    client.flushdb()
    tracemalloc.start()
    handles = NoopJob.perform_bulk(args)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"items": items, "written": written, "rss_growth_mb": (peak_kb - before_kb) / 1024,
            "tracemalloc_peak_mb": traced_peak / 2**20, "seconds": round(elapsed_s, 2)}


def _rss_kb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main():
    if sys.argv[1] == "--one":
        print(json.dumps(measure(sys.argv[2], sys.argv[3], int(sys.argv[4]))))
        return
    checkout, url = sys.argv[1], sys.argv[2]
    for items in [int(n) for n in sys.argv[3:]] or [200_000, 1_000_000]:
        out = subprocess.run([sys.executable, __file__, "--one", checkout, url, str(items)],
                             capture_output=True, text=True, check=True).stdout
        figures = json.loads(out.strip().splitlines()[-1])
        print(f"{figures['items']:>9,} items: written {figures['written']:,}, peak RSS +{figures['rss_growth_mb']:.0f} MB, "
              f"tracemalloc peak {figures['tracemalloc_peak_mb']:.0f} MB, {figures['seconds']} s")


if __name__ == "__main__":
    main()
