#!/usr/bin/env python3
"""CPU per enqueue, in-process: ``perform_later`` and ``perform_bulk`` of one checkout on a Redis.

Usage::

    python benchmarks/enqueue_cpu.py CHECKOUT REDIS_URL [CALLS] [ROUNDS]

``CHECKOUT`` is a django-bgjobs tree (this one, or another commit's, checked out elsewhere),
imported ahead of any installed copy; ``REDIS_URL`` a throwaway database (it is flushed).
Prints, per round, the CPU time per ``perform_later`` call over ``CALLS`` calls (20,000 by
default) and the CPU time of one ``perform_bulk`` of as many jobs; then the best of 15 passes
of 2,000 calls and of a bulk of 5,000, which varies less on a busy machine.  Run two
checkouts in turn, several times, to compare them (``docs/performance.rst``).
"""

import os
import sys
import time


def main():
    checkout, url = sys.argv[1], sys.argv[2]
    calls = int(sys.argv[3]) if len(sys.argv) > 3 else 20_000
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    sys.path[:0] = [checkout, os.path.join(checkout, "benchmarks")]
    os.environ.update(BENCH_REDIS_URL=url, REDIS_URL=url, DJANGO_SETTINGS_MODULE="bgjobs_bench.settings")
    import django

    django.setup()
    import redis

    from bgjobs_bench.jobs import NoopJob

    client = redis.Redis.from_url(url)
    client.flushdb()
    NoopJob.perform_later(0)  # the script loaded, the connection open

    def cpu_s(work):
        client.flushdb()
        started = time.process_time()
        work()
        return time.process_time() - started

    for number in range(rounds):
        one_by_one = cpu_s(lambda: [NoopJob.perform_later(i) for i in range(calls)])
        bulk = cpu_s(lambda: NoopJob.perform_bulk([(i,) for i in range(calls)]))
        print(f"{checkout}: round {number}: perform_later {1e6 * one_by_one / calls:.1f} µs CPU per call; "
              f"perform_bulk of {calls:,}: {1e3 * bulk:.0f} ms CPU", flush=True)
    best_later = min(cpu_s(lambda: [NoopJob.perform_later(i) for i in range(2000)]) for _ in range(15)) / 2000
    items = [(i,) for i in range(5000)]
    best_bulk = min(cpu_s(lambda: NoopJob.perform_bulk(items)) for _ in range(15)) / 5000
    print(f"{checkout}: best of 15: perform_later {1e6 * best_later:.1f} µs CPU per call; "
          f"perform_bulk of 5,000: {1e6 * best_bulk:.2f} µs CPU per job", flush=True)


if __name__ == "__main__":
    main()
