"""``manage.py runjobs``: run a worker (or ``--processes N`` of them) until stopped."""

import logging
import os
import sys
import time

import redis
from django.core.management.base import BaseCommand, CommandError

import django_bgjobs
from django_bgjobs import conf
from django_bgjobs.connection import describe, eviction_policy, eviction_warning, get_redis
from django_bgjobs.errors import ConfigurationError

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s pid=%(process)d %(threadName)s %(levelname)s %(name)s: %(message)s"


class Command(BaseCommand):
    help = "Run background jobs from Redis (like `bundle exec sidekiq`)."

    def get_version(self):
        """``runjobs --version`` prints django-bgjobs' version (Django's own for other commands)."""
        return django_bgjobs.__version__

    def add_arguments(self, parser):
        parser.add_argument("-c", "--concurrency", type=int, help="threads per process (default BGJOBS['CONCURRENCY'], 5)")
        parser.add_argument(
            "-q", "--queue", action="append", dest="queues", metavar="NAME[,WEIGHT]",
            help="a queue to serve; repeat for more. Strict priority in the order given; "
                 "NAME,WEIGHT for weighted order. Default BGJOBS['QUEUES'].",
        )
        parser.add_argument("-t", "--timeout", type=float, help="seconds running jobs get to finish on shutdown (default 25)")
        parser.add_argument("--processes", type=int, default=1, help="fork this many worker processes (default 1)")
        parser.add_argument("--tag", default="", help="a label shown in the admin's process list")
        parser.add_argument(
            "--no-schedule", action="store_false", dest="schedule",
            help="do not enqueue recurring jobs from this worker (other workers still do)",
        )

    def handle(self, *args, concurrency=None, queues=None, timeout=None, processes=1, tag="", schedule=True,
               **options):
        self._setup_logging(options.get("verbosity", 1))
        from django_bgjobs.worker.queues import QueueOrder
        from django_bgjobs.worker.runner import Supervisor, run_one

        if concurrency is not None and concurrency < 1:
            raise CommandError("--concurrency must be at least 1")
        if processes < 1:
            raise CommandError("--processes must be at least 1")
        if timeout is not None and timeout < 0:
            raise CommandError("--timeout must not be negative")
        try:
            QueueOrder(queues or conf.get("QUEUES"))
        except ValueError as exc:
            raise CommandError(f"bad queue list: {exc}") from None
        try:
            get_redis().ping()
        except ConfigurationError as exc:  # its message already hides the URL's credentials
            raise CommandError(str(exc)) from None
        except redis.RedisError as exc:
            raise CommandError(f"cannot reach Redis at {describe()}: {exc}") from None
        self._warn_if_redis_may_evict()
        options = {
            "queues": queues, "concurrency": concurrency, "shutdown_timeout_s": timeout, "tag": tag,
            "schedule": schedule,
        }
        if processes > 1:
            code = Supervisor(processes, **options).run()
        else:
            code = run_one(**options)
        if code:
            sys.exit(code)

    def _warn_if_redis_may_evict(self):
        """Log a warning, as Sidekiq does, when Redis's maxmemory-policy may drop jobs."""
        try:
            message = eviction_warning(eviction_policy())
        except redis.RedisError as exc:
            logger.warning("could not ask Redis for its maxmemory-policy: %s", exc)
            return
        if message:
            logger.warning(message)

    def _setup_logging(self, verbosity):
        """Show the worker's INFO lines on stderr unless the project configured logging for them."""
        log = logging.getLogger("django_bgjobs")
        if log.handlers or logging.getLogger().handlers:
            return
        handler = _LineHandler()
        handler.setFormatter(_Formatter(LOG_FORMAT))
        log.addHandler(handler)
        # The project configured no logging, so this is the process's only handler: skip what
        # its format does not show, the caller's file and line and the multiprocessing process
        # name (the logging HOWTO's "Optimization" knobs), a third of each per-job line's cost
        # (docs/performance.rst).
        logging._srcfile = None
        logging.logMultiprocessing = False
        log.setLevel(logging.DEBUG if verbosity > 2 else logging.WARNING if verbosity == 0 else logging.INFO)


class _Formatter(logging.Formatter):
    """``logging.Formatter`` with the same output, but the date and time part of ``asctime``
    is formatted once a second instead of once a line: the worker writes a line per job, and
    ``strftime`` was a third of that line's cost (docs/performance.rst)."""

    _second = None
    _text = ""

    def formatTime(self, record, datefmt=None):
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:  # a race here only formats the same second twice
            self._text, self._second = time.strftime(self.default_time_format, self.converter(second)), second
        return self.default_msec_format % (self._text, record.msecs)


class _LineHandler(logging.StreamHandler):
    """``StreamHandler`` on stderr that writes each record as one ``os.write`` of a whole line,
    formatted and written without the handler's lock.

    Ten processor threads each writing a line per job queued on that lock (it is held across
    the write), and the hand-offs cost an eighth of the worker's time (docs/performance.rst).
    One ``write`` of a whole line is not interleaved with another's on Linux, so no lock is
    needed; a stream without a file descriptor falls back to the locked path.
    """

    def handle(self, record):
        try:
            fd = self.stream.fileno()
        except (AttributeError, OSError, ValueError):
            return super().handle(record)
        if not self.filter(record):
            return False
        try:
            data = (self.format(record) + self.terminator).encode("utf-8", "backslashreplace")
            while data:
                data = data[os.write(fd, data):]
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)
        return True
