"""Queue lists as given to ``runjobs -q`` or ``BGJOBS["QUEUES"]``: strict or weighted.

``["critical", "default", "low"]`` is strict priority: a job in ``default`` waits while
``critical`` has any.  Any ``name,weight`` entry makes the order weighted, as in
Sidekiq: each fetch tries the queues in a random order where a queue of weight 3 is
three times as likely as one of weight 1 to come first, so no queue starves.
"""

import random

from django_bgjobs.job import check_queue_name


class QueueOrder:
    """The queues one worker process serves and the order of each fetch attempt."""

    def __init__(self, specs):
        self.weights = {}
        weighted = False
        for spec in specs:
            name, weight = _parse(spec)
            weighted = weighted or weight is not None
            self.weights[name] = weight or 1
        if not self.weights:
            raise ValueError("no queues to serve")
        self.names = list(self.weights)
        self.weighted = weighted
        self._pool = [name for name, weight in self.weights.items() for _ in range(weight)]

    def order(self):
        """The queue names in the order to try for one fetch."""
        if not self.weighted:
            return self.names
        random.shuffle(self._pool)
        return list(dict.fromkeys(self._pool))

    def __repr__(self):
        if self.weighted:
            return ", ".join(f"{name},{weight}" for name, weight in self.weights.items())
        return ", ".join(self.names)


def _parse(spec):
    if not isinstance(spec, str):
        raise ValueError(f"queue entry {spec!r} is not a string")
    name, sep, weight = spec.partition(",")
    name = name.strip()
    check_queue_name(name)
    if not sep:
        return name, None
    try:
        value = int(weight)
    except ValueError:
        raise ValueError(f"queue weight in {spec!r} is not a whole number") from None
    if value < 1:
        raise ValueError(f"queue weight in {spec!r} must be >= 1")
    return name, value
