"""Unique jobs (sidekiq-unique-jobs / Sidekiq Enterprise's unique jobs), as a feature package:

* ``client.py`` -- the lock options of a ``Job`` class (checked as it is created), the lock
  digest stamped on each payload, and the client middleware :class:`UniqueLocks`, which
  attaches to the push a guard and writes so that ``lua/push.lua`` takes the lock and writes
  the job in one atomic step;
* ``server.py`` -- the server middleware ``LockRules``: ``start.lua`` as a job starts (free an
  ``until_executing`` lock, take a run lock, or put the job back when the run lock is held),
  and ``end.lua`` in the MULTI that ends it (``job_end``'s end writes);
* ``start.lua``, ``end.lua`` -- those two scripts.

The monitoring side reads locks through ``django_bgjobs.api.unique``.  Importing this package
imports the client side only (``job.class_checks`` and ``job.payload_stamps`` get its entries).
"""

from django_bgjobs.unique.client import (
    CLIENT_STRATEGIES,
    LOCK_TYPES,
    SERVER_STRATEGIES,
    LockOptions,
    UniqueLocks,
    lock_digest,
    options_for,
    settle,
    stamp,
)

__all__ = [
    "CLIENT_STRATEGIES", "LOCK_TYPES", "SERVER_STRATEGIES", "LockOptions", "UniqueLocks", "lock_digest",
    "options_for", "settle", "stamp",
]
