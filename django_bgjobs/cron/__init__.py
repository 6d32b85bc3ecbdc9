"""Recurring jobs (Sidekiq Enterprise's periodic jobs, sidekiq-cron), as a feature package:

* ``definitions.py`` -- :class:`~django_bgjobs.cron.definitions.CronDefinition`, one checked
  recurring job, from settings, the YAML file or a ``Schedule`` row, and when it is due;
* ``server.py`` -- the worker's ``Scheduler`` thread, which pushes each tick's job through the
  one push with a guard that claims the tick, so every tick is enqueued exactly once across
  workers, with the client middleware and unique locks like any enqueue.

The monitoring side reads them through ``django_bgjobs.api.cron``; the admin edits the
``Schedule`` rows.  Importing this package imports nothing of the worker.
"""
