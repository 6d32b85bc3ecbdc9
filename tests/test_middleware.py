"""django_bgjobs.middleware: the order of the chains, how they are built, and the E060 check.

What each chain wraps (every enqueue path, every attempt) is tested beside the code that runs
it: tests/test_middleware_client.py and tests/test_middleware_server.py.
"""

import subprocess
import sys

import pytest
from django.conf import settings
from django.test import override_settings

from django_bgjobs import conf, middleware
from django_bgjobs.checks import check_middleware
from django_bgjobs.errors import ConfigurationError
from tests.helpers import REPO_ROOT, subprocess_env
from tests.testapp import middleware as recorded

MW = "tests.testapp.middleware"


def bgjobs(**changes):
    return override_settings(BGJOBS={**settings.BGJOBS, **changes})


@pytest.fixture(autouse=True)
def _clear_calls():
    recorded.calls.clear()
    yield
    recorded.calls.clear()


def _endpoint(*args):
    recorded.calls.append(("endpoint", args))
    return "result"


def test_users_middleware_runs_outside_the_builtins_in_the_order_given():
    # Given
    with bgjobs(SERVER_MIDDLEWARE=[f"{MW}.Second", f"{MW}.First"]):
        # When
        paths = middleware.order(middleware.SERVER)

    # Then
    assert paths == [f"{MW}.Second", f"{MW}.First", *conf.SERVER_BUILTINS]


def test_a_builtin_named_in_the_setting_runs_at_that_place_instead_of_its_own(monkeypatch):
    # Given: two built-ins, and a user middleware put between them
    monkeypatch.setattr(conf, "CLIENT_BUILTINS", [f"{MW}.First", f"{MW}.Second"])
    with bgjobs(CLIENT_MIDDLEWARE=[f"{MW}.First", f"{MW}.factory"]):
        # When
        paths = middleware.order(middleware.CLIENT)

    # Then: each built-in appears once
    assert paths == [f"{MW}.First", f"{MW}.factory", f"{MW}.Second"]


def test_chain_calls_middleware_outermost_first_and_returns_the_endpoints_result():
    # Given
    with bgjobs(CLIENT_MIDDLEWARE=[f"{MW}.First", f"{MW}.Second"]):
        chain = middleware.build(middleware.CLIENT, _endpoint)

        # When
        result = chain({"jid": "x"})

    # Then
    assert result == "result"
    assert recorded.calls == [
        ("first", "in"), ("second", "in"), ("endpoint", ({"jid": "x"},)), ("second", "out"), ("first", "out"),
    ]


def _layers(handler):
    """The middleware classes of a chain, outermost first."""
    found = []
    while hasattr(handler, "call_next"):
        found.append(type(handler))
        handler = handler.call_next
    return found


def test_async_middleware_is_left_out_of_sync_jobs_chains_and_innermost_in_async_ones(monkeypatch):
    monkeypatch.setattr(conf, "SERVER_BUILTINS", [f"{MW}.Second"])
    with bgjobs(SERVER_MIDDLEWARE=[f"{MW}.AsyncOnly", f"{MW}.First"]):
        sync_chain = middleware.build(middleware.SERVER, _endpoint)
        async_chain = middleware.build(middleware.SERVER, _endpoint, for_async=True)

    assert _layers(sync_chain) == [recorded.First, recorded.Second]
    # the sync ones (built-ins included) run first, in the worker's thread; the async one around the coroutine
    assert _layers(async_chain) == [recorded.First, recorded.Second, recorded.AsyncOnly]


def test_cached_chain_is_rebuilt_when_the_setting_changes():
    # Given
    with bgjobs(CLIENT_MIDDLEWARE=[f"{MW}.First"]):
        first = middleware.chain(middleware.CLIENT, _endpoint)
        assert middleware.chain(middleware.CLIENT, _endpoint) is first

    # When
    with bgjobs(CLIENT_MIDDLEWARE=[f"{MW}.Second"]):
        # Then
        assert isinstance(middleware.chain(middleware.CLIENT, _endpoint), recorded.Second)


@pytest.mark.parametrize("path, says", [
    ("tests.testapp.no_such_module.Mw", "cannot be imported"),
    (f"{MW}.NoSuchClass", "cannot be imported"),
    (f"{MW}.NOT_A_CLASS", "is not a class or a callable"),
    (f"{MW}.NoCallNext", "cannot be built as"),
    (f"{MW}.NotCallable", "defines no __call__"),
    (42, "is not a dotted path"),
])
@pytest.mark.parametrize("side", ["CLIENT_MIDDLEWARE", "SERVER_MIDDLEWARE"])
def test_e060_names_the_entry_and_the_chain_raises_the_same_when_an_entry_is_broken(side, path, says):
    # Given
    with bgjobs(**{side: [f"{MW}.First", path]}):
        # When
        messages = check_middleware()

        # Then
        assert [m.id for m in messages] == ["django_bgjobs.E060"]
        assert side in messages[0].msg and repr(path) in messages[0].msg and says in messages[0].msg
        with pytest.raises(ConfigurationError, match=says):
            middleware.build(side, _endpoint)


@pytest.mark.parametrize("side, path", [
    ("SERVER_MIDDLEWARE", f"{MW}.ClientShaped"),
    ("CLIENT_MIDDLEWARE", f"{MW}.ServerShaped"),
])
def test_e060_when_the_call_does_not_take_what_its_chain_passes(side, path):
    with bgjobs(**{side: [path]}):
        messages = check_middleware()

    assert [m.id for m in messages] == ["django_bgjobs.E060"]
    assert "does not take what" in messages[0].msg and repr(path) in messages[0].msg


def test_e060_when_the_setting_is_not_a_list():
    with bgjobs(CLIENT_MIDDLEWARE=f"{MW}.First"):
        messages = check_middleware()

    assert [m.id for m in messages] == ["django_bgjobs.E060"]
    assert "must be a list" in messages[0].msg


def test_no_e060_when_every_entry_loads():
    with bgjobs(CLIENT_MIDDLEWARE=[f"{MW}.First", f"{MW}.factory"], SERVER_MIDDLEWARE=[f"{MW}.AsyncOnly"]):
        assert check_middleware() == []


def test_runjobs_refuses_to_start_with_the_check_error_when_a_middleware_cannot_be_imported():
    # When
    result = subprocess.run(
        [sys.executable, "-m", "django", "runjobs"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        env=subprocess_env({"BGJOBS_TEST_SERVER_MIDDLEWARE": "myapp.missing.TenantServer"}),
    )

    # Then
    assert result.returncode != 0
    assert "django_bgjobs.E060" in result.stderr
    assert "'myapp.missing.TenantServer' cannot be imported" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_middleware_is_left_out_of_the_chain_of_the_job_classes_it_does_not_apply_to():
    # Given
    from django_bgjobs import Job

    class Quick(Job):
        name = "tests.test_middleware.Quick"

        def perform(self):
            return None

    class Bounded(Job):
        name = "tests.test_middleware.Bounded"
        timeout = 5

        def perform(self):
            return None

    with bgjobs(SERVER_MIDDLEWARE=[f"{MW}.OnlyForTimeouts", f"{MW}.First"]):
        # When
        middleware.chain(middleware.SERVER, _endpoint, False, Quick)(Quick(), {})
        quick_calls = list(recorded.calls)
        recorded.calls.clear()
        middleware.chain(middleware.SERVER, _endpoint, False, Bounded)(Bounded(), {})

    # Then
    assert [c for c in quick_calls if c[0] != "endpoint"] == [("first", "in"), ("first", "out")]
    assert [c for c in recorded.calls if c[0] != "endpoint"] == [
        ("only-timeouts", "in"), ("first", "in"), ("first", "out"), ("only-timeouts", "out"),
    ]
