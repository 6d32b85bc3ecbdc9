"""One small module per system under test, all driven the same way by ``run.py``.

Each adapter module (``bgjobs``, ``sidekiq``, ``dramatiq``, ``huey``, ``celery``, ``rq``)
defines the same no-op job on its system (the body is :func:`common.noop`, or its Ruby twin
in ``sidekiq_job.rb``) and these names, used by :mod:`adapters.__main__`:

* ``LABEL``, ``version()``: the name and version shown in the table.
* ``available()``: ``None``, or why the system cannot run here (printed, then skipped).
* ``BULK``: True when the system has a bulk enqueue call.
* ``MULTIPROCESS``: ``"native"`` when one worker command can run N processes, else
  ``"copies"`` (``run.py`` starts N copies of the one-process command).
* ``connect()``: open the client's connection before timing starts.
* ``enqueue(t)``: enqueue one job with argument ``t``; ``enqueue_bulk(n)``: n jobs with ``0``.
* ``worker_argv(processes, threads, index)``: the command line of a worker; ``run.py``
  runs it in a process of its own, so the pid it watches is the worker's.

Run as ``python -m adapters NAME ROLE ...`` from ``benchmarks/`` under the benchmark
virtualenv; ``run.py`` does that for you.
"""
