"""Batches as the monitoring API sees them: list them with their progress, open one.

Batches are indexed by creation time in the ``batches`` sorted set; a batch whose data has
expired (``BATCH_TTL_S`` after it ended) is skipped when listed.  Each batch is read as a
:class:`~django_bgjobs.batches.BatchStatus` (``failed_jobs()`` lists its failures).
"""

from django_bgjobs import keys
from django_bgjobs.api._common import DEFAULT_PAGE_SIZE, RedisUser, text, unless_wrong_type
from django_bgjobs.batches.client import BatchStatus


class BatchSet(RedisUser):
    """Every batch still in Redis, newest first."""

    def size(self):
        """Batches in the index (some may have expired since; :meth:`page` skips those)."""
        return unless_wrong_type(0, self.redis.zcard, keys.batches())

    def __len__(self):
        return self.size()

    def page(self, offset=0, limit=DEFAULT_PAGE_SIZE):
        """Up to ``limit`` :class:`~django_bgjobs.BatchStatus`, newest first, from ``offset`` in the index."""
        if offset < 0:
            raise ValueError(f"offset must be >= 0, not {offset}")
        if limit <= 0:
            return []
        bids = unless_wrong_type([], self.redis.zrevrange, keys.batches(), offset, offset + limit - 1)
        bids = [text(bid) for bid in bids]
        statuses = [BatchStatus(bid, client=self.redis) for bid in bids]
        return [status for status in statuses if status.exists]

    def __iter__(self):
        offset = 0
        while True:
            bids = [text(b) for b in unless_wrong_type(
                [], self.redis.zrevrange, keys.batches(), offset, offset + DEFAULT_PAGE_SIZE - 1,
            )]
            for bid in bids:
                status = BatchStatus(bid, client=self.redis)
                if status.exists:
                    yield status
            if len(bids) < DEFAULT_PAGE_SIZE:
                return
            offset += len(bids)

    def get(self, bid):
        """The :class:`~django_bgjobs.BatchStatus` of batch ``bid``, or None once it has expired."""
        status = BatchStatus(bid, client=self.redis)
        return status if status.exists else None
