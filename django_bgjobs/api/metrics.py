"""Job metrics: per job class, how many ran, failed and how long they took, minute by minute.

Workers add to one hash per UTC minute (``keys.metrics``, written with each heartbeat; see
``worker/metrics.py``), kept eight hours.  :class:`JobMetrics` reads a window of them::

    for row in JobMetrics(minutes=60).classes():       # the busiest first (time spent)
        print(row.name, row.processed, row.failed, row.avg_ms)
"""

from dataclasses import dataclass

from django_bgjobs import keys
from django_bgjobs.api._common import RedisUser, answers, text, to_int
from django_bgjobs.payload import now_s

#: The longest window: the hashes live this long (worker.metrics.METRICS_TTL_S).
MAX_MINUTES = 8 * 60


@dataclass(frozen=True)
class ClassMetrics:
    """One job class's totals over the window."""

    name: str
    processed: int
    failed: int
    total_ms: int

    @property
    def avg_ms(self):
        """Milliseconds per run (0 when none ran)."""
        return self.total_ms / self.processed if self.processed else 0.0

    @property
    def failure_rate(self):
        return self.failed / self.processed if self.processed else 0.0


class JobMetrics(RedisUser):
    """The last ``minutes`` (1 to 480) of per-class metrics, up to ``now`` (epoch seconds).
    One pipelined round trip, made on first use."""

    def __init__(self, minutes=60, now=None, client=None):
        super().__init__(client)
        if not isinstance(minutes, int) or isinstance(minutes, bool) or not 1 <= minutes <= MAX_MINUTES:
            raise ValueError(f"minutes must be a whole number from 1 to {MAX_MINUTES}, not {minutes!r}")
        self.minutes = minutes
        last = int((now_s() if now is None else now) // 60) * 60
        #: Epoch seconds of each minute in the window, oldest first.
        self.minute_starts = [last - 60 * n for n in range(minutes - 1, -1, -1)]
        self._hashes = None

    def __repr__(self):
        return f"<JobMetrics last {self.minutes} min>"

    def _read(self):
        if self._hashes is None:
            pipe = self.redis.pipeline(transaction=False)
            for start in self.minute_starts:  # both names of the minute: up to Sidekiq 7, and 8
                pipe.hgetall(keys.metrics(start, version=7))
                pipe.hgetall(keys.metrics(start, version=8))
            replies = answers(pipe)
            self._hashes = []
            for older, newer in zip(replies[::2], replies[1::2]):
                fields = {}
                for name, value in [*(older or {}).items(), *(newer or {}).items()]:
                    fields[text(name)] = fields.get(text(name), 0) + to_int(value)
                self._hashes.append(fields)
        return self._hashes

    def classes(self):
        """A :class:`ClassMetrics` per class that ran in the window, most time spent first."""
        totals = {}
        for fields in self._read():
            for field, value in fields.items():
                name, _, kind = field.rpartition("|")
                entry = totals.setdefault(name, {"p": 0, "f": 0, "ms": 0})
                if kind in entry:
                    entry[kind] += value
        rows = [ClassMetrics(name, t["p"], t["f"], t["ms"]) for name, t in totals.items()]
        return sorted(rows, key=lambda row: (-row.total_ms, row.name))

    def series(self, name):
        """``[(minute_start, processed, failed, ms)]`` of class ``name``, oldest minute first."""
        return [
            (start, fields.get(f"{name}|p", 0), fields.get(f"{name}|f", 0), fields.get(f"{name}|ms", 0))
            for start, fields in zip(self.minute_starts, self._read())
        ]
