"""A Redis URL's credentials never show: not in exceptions, runjobs output, checks, logs or admin errors.

Each test uses a URL holding the password ``PASSWORD`` and asserts it appears nowhere.
"""

import io
import logging
import os
import subprocess
import sys
import traceback

import pytest
from django.core.management import call_command

from django_bgjobs import conf, connection
from django_bgjobs.connection import redact_url
from django_bgjobs.errors import ConfigurationError
from tests.admin_support import ADMIN, client_for, operator  # noqa: F401 - fixture
from tests.helpers import REPO_ROOT, free_port, subprocess_env

PASSWORD = "s3cr3t-PW"
BAD_URLS = [
    f"redis://user:{PASSWORD}@localhost:notaport/0",  # redis-py: "Port could not be cast ..."
    f"redis://user:{PASSWORD[:4]}/{PASSWORD[5:]}@localhost:6379/0",  # an unquoted "/" in the password
    f"user:{PASSWORD}@localhost:6379/0",  # no scheme
    f"http://user:{PASSWORD}@localhost:6379/0",  # another scheme
    f"redis://user:{PASSWORD}@[::1/0",  # a broken IPv6 host
    f"redis://localhost:6379/x?password={PASSWORD}&db=x",  # the password as a parameter
]


def assert_hidden(text):
    assert PASSWORD not in text and PASSWORD[:4] + "/" not in text and PASSWORD[5:] not in text, text


@pytest.fixture
def redis_url_env():
    """Point the library at a given REDIS_URL (the environment variable wins over settings)."""
    previous = os.environ["REDIS_URL"]

    def use(url):
        os.environ["REDIS_URL"] = url
        conf.get_settings.cache_clear()
        connection.reset()

    yield use
    use(previous)


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://user:pw@host:6379/0", "redis://***@host:6379/0"),
    ("rediss://:p@ss/w@host:6380/1", "rediss://***@host:6380/1"),
    ("user:pw@host:6379", "***@host:6379"),
    ("redis://host:6379/0?password=pw&db=1", "redis://host:6379/0?password=***&db=1"),
    ("redis+sentinel://u:pw@s1:26379/mymaster?sentinel_password=pw2", "redis+sentinel://***@s1:26379/mymaster?sentinel_password=***"),
    ("redis://localhost:6379/0", "redis://localhost:6379/0"),
    ("unix:///tmp/redis.sock?db=2", "unix:///tmp/redis.sock?db=2"),
])
def test_redact_url_hides_user_password_and_secret_parameters(url, shown):
    assert redact_url(url) == shown


@pytest.mark.parametrize("url", BAD_URLS)
def test_configuration_error_for_an_unparseable_url_never_shows_the_password(redis_url_env, url):
    redis_url_env(url)

    with pytest.raises(ConfigurationError, match=r"is not a valid Redis URL: .*\*\*\*") as raised:
        connection.get_redis().ping()

    assert_hidden("".join(traceback.format_exception(raised.value)))


@pytest.mark.parametrize("url", [BAD_URLS[0], BAD_URLS[1], f"redis://user:{PASSWORD}@127.0.0.1:{{port}}/0"],
                         ids=["bad-port", "slash-in-password", "nothing-listening"])
def test_runjobs_output_never_shows_the_password(url):
    url = url.format(port=free_port())
    done = subprocess.run(
        [sys.executable, "-m", "django", "runjobs"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        env=subprocess_env({"REDIS_URL": url}), stdin=subprocess.DEVNULL,
    )

    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "Redis" in output and "Traceback" not in output
    assert_hidden(output)


def test_check_deploy_warning_never_shows_the_password(redis_url_env):
    redis_url_env(BAD_URLS[1])
    out, err = io.StringIO(), io.StringIO()

    call_command("check", "--deploy", "--tag", "redis", stdout=out, stderr=err)

    assert "django_bgjobs.W051" in out.getvalue() + err.getvalue()
    assert_hidden(out.getvalue() + err.getvalue())


def test_admin_error_for_an_unparseable_url_never_shows_the_password(redis_url_env, operator, caplog):
    redis_url_env(BAD_URLS[1])
    client = client_for(operator, raise_request_exception=False)

    with caplog.at_level(logging.ERROR):
        response = client.get(ADMIN)

    assert response.status_code >= 500
    assert "not a valid Redis URL" in caplog.text
    assert_hidden(caplog.text)
    assert_hidden(response.content.decode())
