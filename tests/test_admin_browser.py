"""End-to-end: the admin job pages in a real headless Chromium, driven by Playwright for Python.

The pages are served by pytest-django's ``live_server`` and read the test run's throwaway
Redis; a staff user holding the app's permissions (not a superuser) logs in through the
admin's login form.  One browser is started for this module and each test gets a fresh
context (cookies, storage).  Playwright's own temporary profile directory gives every
launch a fresh user-data dir.

A screenshot of every page goes to ``$BGJOBS_SCREENSHOTS`` (default: a new temporary
folder); the folder is printed at the start and end of the run.

Marked ``browser``; they run on the SQLite settings only (``runtests.py`` leaves them out
of the PostgreSQL run) and skip, saying why, when Playwright or Chromium is missing
(``.ci/run`` installs Debian's ``chromium``).  Set ``BGJOBS_TEST_BROWSER=require`` to fail
instead of skipping.
"""

import datetime
import os
import tempfile
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection

from django_bgjobs import keys
from django_bgjobs.api import DeadSet, Queue
from django_bgjobs.models import FailedJob
from django_bgjobs.models import Schedule as ScheduleRow
from django_bgjobs.payload import dumps, now_s
from django_bgjobs.worker.fetcher import Fetcher
from django_bgjobs.cron.server import Scheduler
from django_bgjobs.worker.processor import Processor
from django_bgjobs.worker.queues import QueueOrder
from tests.helpers import start_worker, stop_worker, wait_until
from tests.testapp.jobs import FlakyJob, RecordJob, SlowJob, performed

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips, saying so
    expect = None

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = os.environ.get("BGJOBS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
PASSWORD = "operator-password"
ADMIN = "/admin/django_bgjobs/dashboard/"


def unavailable_reason():
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[test]')"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set BGJOBS_CHROMIUM)"
    if connection.vendor != "sqlite":
        return "browser tests run on the SQLite settings only"
    return None


def say(config, line):
    """Print ``line`` on the terminal even while pytest captures output."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)


@pytest.fixture(scope="module")
def browser(request):
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("BGJOBS_TEST_BROWSER") == "require" and "SQLite" not in reason:
            pytest.fail(f"BGJOBS_TEST_BROWSER=require but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop running in this thread, so Django would refuse
    # the test's own ORM calls (creating users, reading rows) as "async".  Nothing here is async:
    # the live server answers from its own thread.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
    finally:
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="module")
def screenshots(request, browser):
    folder = Path(os.environ.get("BGJOBS_SCREENSHOTS") or tempfile.mkdtemp(prefix="bgjobs-screenshots-"))
    folder.mkdir(parents=True, exist_ok=True)
    say(request.config, f"\nbrowser tests: screenshots go to {folder}")
    yield folder
    say(request.config, f"\nbrowser tests: screenshots saved in {folder}")


@pytest.fixture
def operator(db):
    """A staff user (not a superuser) with the app's view and change permissions."""
    user = User.objects.create_user("operator", "ops@example.com", PASSWORD, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(
        content_type__app_label="django_bgjobs", codename__in=[
            "view_dashboard", "change_dashboard", "view_failedjob", "change_failedjob", "view_schedule",
            "add_schedule", "change_schedule",
        ],
    ))
    return user


def logged_in(browser, base_url, user, color_scheme="light"):
    """A fresh browser context, logged in as ``user`` through the admin's login form."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 860},
                                  color_scheme=color_scheme)
    context.set_default_timeout(10_000)
    tab = context.new_page()
    tab.goto(ADMIN)
    tab.fill("#id_username", user.username)
    tab.fill("#id_password", PASSWORD)
    with tab.expect_navigation(url=lambda url: url.endswith(ADMIN)):
        tab.click("input[type=submit]")
    return tab


@pytest.fixture
def page(browser, live_server, operator):
    tab = logged_in(browser, live_server.url, operator)
    yield tab
    tab.context.close()


@pytest.fixture
def dark_page(browser, live_server, operator):
    tab = logged_in(browser, live_server.url, operator, color_scheme="dark")
    yield tab
    tab.context.close()


def click_and_wait(page, locator, url_part):
    """Click a link or button and wait until the page it leads to has loaded."""
    with page.expect_navigation(url=lambda url: url_part in url):
        locator.click()


def open_tab(page, label, url_part):
    click_and_wait(page, page.locator(".bgjobs-nav a", has_text=label), url_part)


def shoot(page, folder, name):
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def processor():
    """A worker's processor thread, driven one step at a time from the test."""
    return Processor(Fetcher("browser-test:1:processor", QueueOrder(["critical", "default", "low"])))


def seed_history(redis, days=30):
    """Per-day counters as a worker's heartbeats leave them, so the chart has something to draw."""
    today = datetime.datetime.now(datetime.UTC).date()
    for n in range(days):
        day = (today - datetime.timedelta(days=n)).isoformat()
        processed = 400 + (n * 137) % 900
        redis.set(keys.stat("processed", day), processed)
        redis.set(keys.stat("failed", day), (n * 53) % 60 if n % 4 else 0)
    redis.set(keys.stat("processed"), 51_234)
    redis.set(keys.stat("failed"), 812)


def seed_sets(redis):
    """A few entries in each sorted set, shaped like the worker's."""
    now = now_s()
    for n in range(3):
        redis.zadd(keys.schedule(), {dumps({
            "class": "tests.testapp.jobs.RecordJob", "args": [f"report-{n}", {"format": "pdf"}], "retry": True,
            "queue": "low", "jid": f"{n:024x}", "created_at": now, "at": now + 3600 * (n + 1),
        }): now + 3600 * (n + 1)})
        redis.zadd(keys.retry(), {dumps({
            "class": "tests.testapp.jobs.FailingJob", "args": [f"payment {n} declined"], "retry": True,
            "queue": "default", "jid": f"{n + 10:024x}", "created_at": now - 600, "retry_count": n,
            "failed_at": now - 600, "error_class": "tests.testapp.jobs.JobFailure",
            "error_message": f"payment {n} declined", "error_backtrace": ["Traceback...", "JobFailure"],
            "enqueued_at": now - 300,
        }): now + 60 * (n + 1)})
    for n, (klass, args, error_class, message, hours_ago) in enumerate(DEAD_JOBS):
        DeadSet().kill({
            "class": klass, "args": args, "retry": 5, "queue": "default", "jid": f"{n + 20:024x}",
            "created_at": now - 86400 - 3600 * hours_ago, "retry_count": 5, "failed_at": now - 86400,
            "error_class": error_class, "error_message": message, "enqueued_at": now - 3600 * hours_ago,
            "error_backtrace": [
                "Traceback (most recent call last):",
                f'  File "{klass.split(".")[0]}/jobs.py", line 18, in perform',
                "    ...",
                f"{error_class}: {message}",
            ],
        }, reason="retries exhausted (5 of 5)", now=now - 3600 * hours_ago)


#: (class, args, error class, error message, hours since it died) of the dead jobs shown.
DEAD_JOBS = [
    ("accounts.jobs.EmailSenderJob", [1001, "welcome"], "smtplib.SMTPServerDisconnected",
     "Connection unexpectedly closed", 0.05),
    ("billing.jobs.ChargeCardJob", [{"order": 5521, "amount": "49.90"}], "billing.errors.CardDeclined",
     "Your card was declined (insufficient funds).", 2),
    ("search.jobs.ReindexJob", ["products", {"full": True}], "search.errors.ConnectionTimeout",
     "Connection to search-1:9200 timed out after 10s", 7),
    ("shop.jobs.SyncCartJob", [42], "KeyError", "'sku'", 26),
    ("reports.jobs.ExportCsvJob", ["2024-Q1", {"format": "csv", "columns": ["id", "email", "plan", "mrr"]}],
     "MemoryError", "", 75),
]


# -- the tests ------------------------------------------------------------------------------


def seed_schedules(settings):
    """Recurring jobs from settings and the database, loaded as a worker's start loads them."""
    settings.BGJOBS = {**settings.BGJOBS, "SCHEDULE": {
        "daily_report": {"cron": "0 6 * * *", "class": "tests.testapp.jobs.RecordJob", "args": ["daily"],
                         "description": "The sales report, mailed at six"},
        "cleanup_old_records": {"cron": "0 2 * * 0", "class": "tests.testapp.jobs.NoopJob", "queue": "low"},
    }}
    ScheduleRow.objects.create(name="sync_prices", cron="*/15 9-17 * * 1-5", job_class="tests.testapp.jobs.NoopJob",
                               queue="critical", enabled=False)
    Scheduler().sync()


def test_operator_opens_every_page_and_each_is_saved_as_a_screenshot(page, screenshots, redis, settings):
    # Given: history, waiting jobs, sets, failure rows, and a real worker busy with a slow job
    seed_history(redis)
    seed_sets(redis)
    RecordJob.perform_bulk([(n, "x" * 200 if n == 0 else "short") for n in range(40)])
    RecordJob.set(queue="low").perform_later("low priority")
    Queue("low").pause()
    worker = start_worker("-c", "2", "-q", "critical", "--tag", "browser-test")
    SlowJob.set(queue="critical").perform_later(60)
    wait_until(lambda: redis.llen("queue:critical") == 0 and any(
        redis.hget(key, "busy") == "1" for key in redis.smembers("processes")
    ), timeout=15, message="the worker running the slow job")
    seed_schedules(settings)  # after the worker's start, which drops entries its own settings lack

    try:
        # When / Then: each page opens with its heading and content
        page.goto(ADMIN)
        expect(page.locator("h1")).to_have_text("Dashboard")
        expect(page.locator("svg.bgjobs-chart rect.processed")).to_have_count(30)
        expect(page.locator(".bgjobs-cards")).to_contain_text("51,234")
        shoot(page, screenshots, "01-dashboard")

        open_tab(page, "Processes", "processes/")
        expect(page.locator(".bgjobs-process header")).to_contain_text("browser-test")
        expect(page.locator(".bgjobs-process table")).to_contain_text("tests.testapp.jobs.SlowJob")
        shoot(page, screenshots, "02-processes")

        open_tab(page, "Queues", "queues/")
        expect(page.locator("table.bgjobs-table tbody tr")).to_have_count(3)
        shoot(page, screenshots, "03-queues")

        click_and_wait(page, page.locator("table.bgjobs-table a", has_text="default"), "queues/default/")
        expect(page.locator(".bgjobs-paginator").first).to_contain_text("Page 1 of 2")
        shoot(page, screenshots, "04-queue")
        click_and_wait(page, page.locator("a", has_text="Next ›").first, "page=2")
        expect(page.locator(".bgjobs-paginator").first).to_contain_text("Page 2 of 2")
        click_and_wait(page, page.locator("table.bgjobs-table tbody tr a").first, "/jobs/")
        expect(page.locator("h2", has_text="Payload")).to_have_count(1)
        shoot(page, screenshots, "05-queue-job")

        open_tab(page, "Retries", "retries/")
        expect(page.locator("table.bgjobs-table tbody tr")).to_have_count(3)
        shoot(page, screenshots, "06-retries")

        open_tab(page, "Scheduled", "scheduled/")
        expect(page.locator("table.bgjobs-table tbody tr")).to_have_count(3)
        shoot(page, screenshots, "07-scheduled")

        open_tab(page, "Dead", "dead/")
        expect(page.locator("table.bgjobs-table tbody tr")).to_have_count(len(DEAD_JOBS))
        shoot(page, screenshots, "08-dead")
        click_and_wait(page, page.locator("table.bgjobs-table tbody tr a").first, "/dead/jobs/")
        expect(page.locator("#content")).to_contain_text("SMTPServerDisconnected: Connection unexpectedly closed")
        shoot(page, screenshots, "09-dead-job")

        open_tab(page, "Dead", "dead/")
        click_and_wait(page, page.locator("a", has_text="Retry all…"), "dead/all/retry/")
        expect(page.locator(".bgjobs-confirm")).to_contain_text(f"Move all {len(DEAD_JOBS)} dead jobs to their queues")
        shoot(page, screenshots, "10-dead-retry-all-confirm")

        open_tab(page, "Batches", "batches/")
        expect(page.locator("h1")).to_have_text("Batches")
        shoot(page, screenshots, "11-batches")

        open_tab(page, "Unique locks", "locks/")
        expect(page.locator("h1")).to_have_text("Unique locks")
        shoot(page, screenshots, "11-unique-locks")

        open_tab(page, "Recurring jobs", "recurring/")
        expect(page.locator("table.bgjobs-table tbody tr")).to_have_count(3)
        expect(page.locator("table.bgjobs-table")).to_contain_text("At 06:00")
        shoot(page, screenshots, "11-recurring-jobs")
        row = page.locator("table.bgjobs-table tbody tr", has_text="daily_report")
        click_and_wait(page, row.locator("button", has_text="Enqueue now"), "recurring/")
        expect(page.locator(".messagelist")).to_contain_text("Enqueued daily_report now")
        click_and_wait(page, page.locator("a", has_text="Schedules in the database"), "schedule/")
        expect(page.locator("#result_list tbody tr")).to_have_count(1)
        shoot(page, screenshots, "11-recurring-jobs-database")

        open_tab(page, "Failed jobs", "failedjob/")
        expect(page.locator("#result_list tbody tr")).to_have_count(len(DEAD_JOBS))
        shoot(page, screenshots, "11-failed-jobs")
        click_and_wait(page, page.locator("#result_list tbody tr th a").first, "/change/")
        expect(page.locator("#content")).to_contain_text("retries exhausted (5 of 5)")
        shoot(page, screenshots, "12-failed-job")
    finally:
        stop_worker(worker)


def test_dashboard_follows_the_admins_dark_mode_when_the_browser_prefers_dark(dark_page, screenshots, redis):
    # Given
    seed_history(redis)

    # When
    dark_page.goto(ADMIN)

    # Then: the page background is the admin's dark --body-bg, the bars use its variables
    expect(dark_page.locator("rect.processed")).to_have_count(30)
    assert dark_page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(18, 18, 18)"
    bar_fill = dark_page.evaluate("getComputedStyle(document.querySelector('rect.processed')).fill")
    assert bar_fill == "rgb(129, 212, 250)"  # --link-fg in dark mode
    shoot(dark_page, screenshots, "13-dashboard-dark")


def test_retrying_a_dead_job_from_the_dead_page_runs_it_again(page, screenshots, redis):
    # Given: a job that failed its only attempt and died (FailedJob row included)
    handle = FlakyJob.set(retry=0).perform_later("browser", 1)
    steps = processor()
    assert steps.process_one(block=False) is True
    assert redis.zcard("dead") == 1
    page.goto(f"{ADMIN}dead/")
    expect(page.locator("table.bgjobs-table tbody tr")).to_have_count(1)

    # When: the operator clicks the row's "Retry now"
    page.locator("table.bgjobs-table tbody tr button", has_text="Retry now").click()

    # Then: it left the dead set, the page says so, and a worker step runs it
    expect(page.locator(".messagelist")).to_contain_text("Retried 1 job.")
    expect(page.locator(".bgjobs-empty")).to_contain_text("No dead jobs.")
    assert redis.zcard("dead") == 0
    assert steps.process_one(block=False) is True
    assert [(run["jid"], run["attempt"]) for run in performed(redis)] == [(handle.jid, 2)]
    assert FailedJob.objects.get(jid=handle.jid).retried_at is not None
    shoot(page, screenshots, "14-dead-after-retry")


def test_clearing_a_queue_goes_through_the_confirmation_page(page, screenshots, redis):
    # Given
    RecordJob.set(queue="low").perform_bulk([(n,) for n in range(3)])
    page.goto(f"{ADMIN}queues/")

    # When: Clear… opens the confirmation page, which changes nothing by itself
    click_and_wait(page, page.locator("tr", has_text="low").locator("a", has_text="Clear…"), "queues/low/clear/")
    expect(page.locator(".bgjobs-confirm")).to_contain_text("Delete all 3 jobs waiting in queue low?")
    assert redis.llen("queue:low") == 3
    shoot(page, screenshots, "15-clear-queue-confirm")
    click_and_wait(page, page.locator("button", has_text="Yes, delete 3 jobs"), "/queues/")

    # Then
    expect(page.locator(".messagelist")).to_contain_text("Cleared queue low: deleted 3 jobs.")
    assert redis.llen("queue:low") == 0


def test_dead_page_loads_in_under_a_second_in_the_browser_when_100000_jobs_are_dead(page, screenshots, redis,
                                                                                   request):
    # Given
    now = now_s()
    for start in range(0, 100_000, 10_000):
        redis.zadd(keys.dead(), {dumps({
            "class": "shop.jobs.SyncCartJob", "args": [n], "queue": "default", "jid": f"{n:024x}",
            "error_class": "KeyError", "error_message": "'sku'", "retry_count": 25,
        }): now - n for n in range(start, start + 10_000)})

    # When: the last of 4,000 pages, the costliest offset
    page.goto(f"{ADMIN}dead/?page=4000")

    # Then
    expect(page.locator(".bgjobs-paginator").first).to_contain_text("Page 4,000 of 4,000")
    timing = page.evaluate(
        "(() => { const t = performance.getEntriesByType('navigation')[0];"
        " return {response: t.responseEnd - t.requestStart, load: t.loadEventEnd - t.startTime}; })()"
    )
    say(request.config, f"\nbrowser tests: dead page 4,000 of 100,000 entries: server response "
                        f"{timing['response']:.0f} ms, page loaded {timing['load']:.0f} ms")
    assert timing["response"] < 1000
    shoot(page, screenshots, "16-dead-100000")
