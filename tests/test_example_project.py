"""The example project runs end to end: ``example_project/run.py --smoke``."""

import os
import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT


@pytest.mark.slow
def test_smoke_run_sends_the_welcome_email_through_a_real_worker(redis_url, tmp_path):
    # Given the example's own settings, the throwaway Redis and a throwaway database
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "BGJOBS_TEST_SUBPROCESS")}
    env.update(REDIS_URL=redis_url, EXAMPLE_DB_PATH=str(tmp_path / "example.sqlite3"))

    # When
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "example_project" / "run.py"), "--smoke"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )

    # Then
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"using Redis at {redis_url}" in output
    assert "Subject: Welcome to the example site" in output
    assert "To: demo@example.com" in output
    assert "smoke OK (worker stopped with exit code 0)" in output


def test_readme_testcase_example_is_the_example_project_test_and_passes(redis_url, tmp_path):
    # Given: the README's TestCase example is example_project/accounts/tests.py, word for word
    example = (REPO_ROOT / "example_project" / "accounts" / "tests.py").read_text()
    code = example.split('"""\n', 1)[1].strip("\n")
    readme = (REPO_ROOT / "README.rst").read_text()
    assert "\n".join("    " + line if line else "" for line in code.splitlines()) in readme

    # When: Django's own test runner runs it
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "BGJOBS_TEST_SUBPROCESS")}
    env.update(REDIS_URL=redis_url, EXAMPLE_DB_PATH=str(tmp_path / "example.sqlite3"))
    result = subprocess.run(
        [sys.executable, "manage.py", "test", "accounts"], cwd=REPO_ROOT / "example_project", env=env,
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )

    # Then
    assert result.returncode == 0, result.stderr
    assert "Ran 2 tests" in result.stderr and "\nOK" in result.stderr
