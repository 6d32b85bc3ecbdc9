"""Every code example of the docs is run by a test or marked as illustration.

The convention, for every ``.. code-block::`` of ``docs/*.rst`` and ``README.rst``:

``:class: tested`` with ``:name: some-id``
    Run here: ``RUNNERS[some-id]`` executes the block against the test Redis (or names the
    test that runs it, in ``COVERED_ELSEWHERE``).
``:class: illustration``
    Shown, never run (a view, a settings file, a shell command, names a reader supplies); the
    HTML marks it "illustration" (``docs/_static/examples.css``).

``code-block:: text`` shows figures, tables and diagrams, not code, and needs no mark.  A plain
``::`` literal block takes no option, so one is refused here: write a ``code-block``.  So no
example slips in unmarked, and no block marked ``tested`` goes unrun.
"""

import re
import sys
import textwrap
import types
import pytest
from django.core import mail

from django_bgjobs import registry
from tests.helpers import REPO_ROOT

SOURCES = [REPO_ROOT / "README.rst", *sorted((REPO_ROOT / "docs").glob("*.rst"))]
DIRECTIVE = re.compile(r"^(?P<indent>\s*)\.\. code-block::\s*(?P<language>\S+)\s*$")
OPTION = re.compile(r"^\s+:(?P<key>[\w-]+):\s*(?P<value>.*)$")
MARKS = {"tested", "illustration"}


def code_blocks():
    """(where, language, options, code) for every code-block of the sources."""
    blocks = []
    for path in SOURCES:
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            match = DIRECTIVE.match(line)
            if not match:
                continue
            indent, options, body = len(match["indent"]), {}, []
            rest = iter(lines[number + 1:])
            for line in rest:
                option = OPTION.match(line)
                if not option:
                    break
                options[option["key"]] = option["value"]
            for line in [line, *rest]:
                if line.strip() and len(line) - len(line.lstrip()) <= indent:
                    break
                body.append(line)
            where = f"{path.relative_to(REPO_ROOT)}:{number + 1}"
            blocks.append((where, match["language"], options, textwrap.dedent("\n".join(body)).strip("\n")))
    return blocks


def literal_blocks():
    """Lines that open a plain ``::`` literal block."""
    return [
        f"{path.relative_to(REPO_ROOT)}:{number}"
        for path in SOURCES
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if line.rstrip().endswith("::") and not line.lstrip().startswith("..")
    ]


def blocks_marked_tested():
    return {block[2].get("name", block[0]): block for block in code_blocks() if "tested" in block[2].get("class", "")}


# -- the convention --------------------------------------------------------------------------


def test_every_code_block_is_tested_or_marked_illustration():
    unmarked = [
        where for where, language, options, _ in code_blocks()
        if language != "text" and not MARKS & set(options.get("class", "").split())
    ]
    assert code_blocks(), "no code block found: the parser is broken"
    assert unmarked == [], "mark these ':class: tested' (with a runner here) or ':class: illustration'"
    assert literal_blocks() == [], "write these '::' blocks as '.. code-block:: LANGUAGE' with a mark"


def test_every_tested_block_has_a_name_and_a_runner_and_every_runner_a_block():
    blocks = blocks_marked_tested()
    assert all("name" in options for _, _, options, _ in blocks.values()), "a tested block needs :name:"
    assert sorted(blocks) == sorted([*RUNNERS, *COVERED_ELSEWHERE])


# -- the runners -----------------------------------------------------------------------------


EXAMPLE_MODULES = ("docs_examples", "accounts.jobs", "myapp.jobs_mw")


@pytest.fixture
def registered_here(monkeypatch):
    """Job classes and modules an example defines are forgotten after the test."""
    monkeypatch.setattr(registry, "_jobs", dict(registry._jobs))
    assert not set(EXAMPLE_MODULES) & set(sys.modules)
    yield
    for module in EXAMPLE_MODULES:
        sys.modules.pop(module, None)


def run(name, namespace=None, module="docs_examples"):
    """Execute the block named ``name`` as (part of) module ``module``; return its namespace.

    The module is in ``sys.modules``, as a ``jobs.py`` is, for what looks classes up there
    (batch callbacks)."""
    target = sys.modules.setdefault(module, types.ModuleType(module))
    target.__dict__.update(namespace or {})
    exec(compile(blocks_marked_tested()[name][3], f"<docs example {name}>", "exec"), target.__dict__)
    return target.__dict__


def define_email_job():
    return run("readme-define-job", module="accounts.jobs")


def check_console(name, namespace):
    """A ``pycon`` block of ``>>> call`` / ``ExceptionName: message`` pairs raises exactly that."""
    lines = blocks_marked_tested()[name][3].splitlines()
    for call, shown in zip(lines[::2], lines[1::2], strict=True):
        with pytest.raises(Exception) as caught:
            exec(call.removeprefix(">>> "), namespace)
        assert f"{type(caught.value).__name__}: {caught.value}" == shown


def readme_define_job(request):
    namespace = define_email_job()
    assert registry.get("accounts.jobs.EmailSenderJob") is namespace["EmailSenderJob"]


def readme_unstorable_argument(request):
    check_console("readme-unstorable-argument", define_email_job())


def readme_arguments_must_fit(request):
    check_console("readme-arguments-must-fit", define_email_job())


def readme_enqueue(request):
    from django.contrib.auth.models import User

    from django_bgjobs.api import Queue, ScheduledSet

    user = User.objects.create(username="ann", email="ann@example.com")
    namespace = run("readme-enqueue", {**define_email_job(), "user": user, "users": [user]})
    assert len(namespace["job"].jid) == 24
    assert Queue("default").size() == 3  # perform_later, perform_bulk, set(expires_in=...)
    assert ScheduledSet().size() == 1  # set(wait=...)
    assert [message.to for message in mail.outbox] == [["ann@example.com"]]  # perform_now


def readme_signals(request):
    from django_bgjobs.api import DeadSet
    from django_bgjobs.signals import job_died

    alerts = []
    namespace = run("readme-signals", {"notify_ops": alerts.append})
    request.addfinalizer(lambda: job_died.disconnect(namespace["alert"]))
    DeadSet().kill({"class": "accounts.jobs.EmailSenderJob", "args": [42], "jid": "a" * 24}, reason="bad data")
    assert alerts == [f"accounts.jobs.EmailSenderJob {'a' * 24} died: bad data"]


def api_import(request):
    run("api-import")


def api_stats(request):
    namespace = run("api-stats", run("api-import"))
    assert namespace["stats"].enqueued == 0


def api_queue(request):
    from django_bgjobs.api import Queue
    from tests.testapp.jobs import NoopJob

    jid = NoopJob.perform_later().jid
    payload = Queue("default").find_job(jid).item
    namespace = run("api-queue", {**run("api-import"), "jid": jid, "payload_dict": payload})
    assert namespace["queue"].size() == 1  # cleared, then the pushed copy
    assert not namespace["queue"].paused


def api_metrics(request):
    run("api-metrics")


def unique_define(request):
    namespace = run("unique-define")
    assert namespace["GenerateReportJob"].lock == "until_executed"


def batches_define(request):
    from django_bgjobs.api import BatchSet, Queue
    from django_bgjobs import Job

    class ChildJob(Job):
        def perform(self, user_id): ...

    namespace = run("batches-define", {"ChildJob": ChildJob})
    namespace["ParentJob"].perform_now([1, 2])
    [status] = BatchSet()
    assert (status.description, status.total, Queue("default").size()) == ("Newsletter", 2, 2)


def middleware(name):
    """The tenant middleware pair: the client stamps the payload, the server wraps the run."""

    def runner(request):
        from contextlib import contextmanager

        from django.conf import settings
        from django.test import override_settings

        from django_bgjobs import Job
        from django_bgjobs.testing import capture_jobs

        entered = []

        @contextmanager
        def tenant(name):
            entered.append(name)
            yield

        namespace = run(name, {"current_tenant": lambda: "acme", "tenant": tenant}, module="myapp.jobs_mw")

        class TenantJob(Job):
            def perform(self):
                return entered[:]

        base = {k: v for k, v in settings.BGJOBS.items() if k != "SCHEDULE_FILE"}
        with override_settings(BGJOBS={**base, **namespace["BGJOBS"]}):
            with capture_jobs() as jobs:
                TenantJob.perform_later()
            jobs.perform_all()
        assert jobs[0].payload["tenant"] == "acme"
        assert jobs[0].result == ["acme"]

    return runner


def held_lock():
    """A job holding its unique lock: (jid, lock key)."""
    from django_bgjobs import Job
    from django_bgjobs.api import UniqueLocks

    class GenerateReportJob(Job):
        lock = "until_executed"

        def perform(self, user_id): ...

    jid = GenerateReportJob.perform_later(7).jid
    [lock] = UniqueLocks()
    return jid, lock.key


def unique_locks(name):
    def runner(request):
        from django_bgjobs.api import UniqueLocks

        jid, key = held_lock()
        run(name, {"jid": jid, "key": key})
        assert list(UniqueLocks()) == []  # released by the example

    return runner


def batch_status(name):
    def runner(request):
        from django_bgjobs import Batch
        from tests.testapp.jobs import NoopJob

        batch = Batch(description="Newsletter")
        with batch.jobs():
            NoopJob.perform_later()
        namespace = run(name, {"bid": batch.bid})
        assert (namespace["status"].bid, namespace["status"].total) == (batch.bid, 1)

    return runner


def api_processes(request):
    from django_bgjobs import keys
    from tests.helpers import register_process

    redis = request.getfixturevalue("redis")
    register_process(redis, "host-1:4242:abc")
    run("api-processes", {**run("api-import"), "identity": "host-1:4242:abc"})
    assert sorted(redis.lrange(keys.process_signals("host-1:4242:abc"), 0, -1)) == ["TERM", "TSTP"]


def import_job_timeout(request):
    from django_bgjobs import Job

    namespace = run("guarantees-timeout", {"Job": Job})
    assert namespace["ImportJob"].timeout == 30


RUNNERS = {
    "unique-held-locks": unique_locks("unique-held-locks"),
    "api-unique-locks": unique_locks("api-unique-locks"),
    "batch-status": batch_status("batch-status"),
    "api-batches": batch_status("api-batches"),
    "api-processes": api_processes,
    "guarantees-timeout": import_job_timeout,
    "readme-middleware": middleware("readme-middleware"),
    "middleware-tenant": middleware("middleware-tenant"),
    "readme-define-job": readme_define_job,
    "readme-unstorable-argument": readme_unstorable_argument,
    "readme-arguments-must-fit": readme_arguments_must_fit,
    "readme-enqueue": readme_enqueue,
    "readme-signals": readme_signals,
    "api-import": api_import,
    "api-stats": api_stats,
    "api-queue": api_queue,
    "api-metrics": api_metrics,
    "unique-define": unique_define,
    "batches-define": batches_define,
}

#: Blocks another test runs, by that test's node id.
COVERED_ELSEWHERE = {
    "readme-testcase": "tests/test_example_project.py::"
                       "test_readme_testcase_example_is_the_example_project_test_and_passes",
}


@pytest.mark.django_db(transaction=True)  # autocommit: pushes are not deferred to a commit
@pytest.mark.parametrize("name", sorted(RUNNERS))
def test_example_runs(name, request, redis, registered_here):
    RUNNERS[name](request)


@pytest.mark.parametrize("name", sorted(COVERED_ELSEWHERE))
def test_example_covered_elsewhere_names_a_test_that_exists(name):
    path, function = COVERED_ELSEWHERE[name].split("::")
    assert f"\ndef {function}(" in (REPO_ROOT / path).read_text()
