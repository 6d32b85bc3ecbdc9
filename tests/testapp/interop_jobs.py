"""Jobs shared with the Ruby side in ``tests/test_sidekiq_interop.py``.

``GateJob`` runs until the test opens its gate, so a test can look at a busy worker
from Ruby while the job is still running.  Ruby's ``sidekiq`` process runs the
classes in ``tests/ruby/jobs.rb``, which append to the same ledger as
:func:`tests.testapp.jobs.record` (with ``"ruby": true``).
"""

import json

from django_bgjobs import Job
from django_bgjobs.connection import get_redis
from tests.testapp.jobs import record

GATE_KEY = "test:gate"


class GateJob(Job):
    """Records that it started, waits (up to ``seconds``) for a push to ``test:gate``, then records."""

    name = "InteropGateJob"

    def perform(self, label, seconds=30):
        record(self.jid, [label], phase="started")
        get_redis().blpop(GATE_KEY, timeout=seconds)
        record(self.jid, [label], phase="done")


class InteropRecordJob(Job):
    """A bare Ruby-style name (``HardWorker``-like), so Ruby's client can push it by that name."""

    name = "InteropRecordJob"

    def perform(self, *args, **kwargs):
        record(self.jid, args, kwargs=kwargs)


class RubyRecordJob(Job):
    """The Python name of ``RubyRecordJob`` in ``tests/ruby/jobs.rb``: enqueued here (to the
    ``ruby`` queue, which no Python worker serves), run by Ruby's ``sidekiq``."""

    name = "RubyRecordJob"

    def perform(self, *args):
        raise NotImplementedError("RubyRecordJob runs in Ruby's sidekiq")


class RailsStyleJob(Job):
    """Named as a Rails ActiveJob class: runs ActiveJob payloads that Rails enqueued."""

    name = "ReportJob"

    def perform(self, *args, **kwargs):
        # dates, decimals...: recorded as their repr
        record(self.jid, json.loads(json.dumps(args, default=repr)), kwargs=json.loads(json.dumps(kwargs, default=repr)))


class ToRailsJob(Job):
    """Enqueued in ActiveJob's form (``activejob = True``), for a Rails worker."""

    name = "DigestMailerJob"
    activejob = True

    def perform(self, *args, **kwargs):
        record(self.jid, json.loads(json.dumps(args, default=repr)), kwargs=json.loads(json.dumps(kwargs, default=repr)))
