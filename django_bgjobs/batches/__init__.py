"""Batches (Sidekiq Pro's Batch), as a feature package:

* ``client.py`` -- :class:`Batch` and :class:`BatchStatus`, the client middleware
  ``BatchMembership`` (a job enqueued inside ``batch.jobs()`` gets its ``bid``, and its push
  counts it in the batch in the same atomic step), the callbacks' outbox drain
  (:func:`push_fired_callbacks`) and ``BatchCallbackJob``;
* ``server.py`` -- the server middleware ``BatchEnds``, whose end writes record each job's end
  in the MULTI that ends it, and push the callbacks that end fired;
* ``batch.lua`` -- every change to a batch that can end it, in one atomic step.

The monitoring side reads batches through ``django_bgjobs.api.batches``.
"""

from django_bgjobs.batches.client import (
    CALLBACK_JOB_NAME,
    EVENTS,
    Batch,
    BatchCallbackJob,
    BatchMembership,
    BatchStatus,
    current_bid,
    push_fired_callbacks,
    script_args,
)

__all__ = [
    "CALLBACK_JOB_NAME", "EVENTS", "Batch", "BatchCallbackJob", "BatchMembership", "BatchStatus", "current_bid",
    "push_fired_callbacks", "script_args",
]
