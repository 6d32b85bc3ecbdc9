"""What a release says of itself agrees everywhere: ``django_bgjobs.__version__``, the admin's
footer and ``manage.py runjobs --version`` all say the installed distribution's version, which is
pyproject's, CHANGELOG.rst's latest release and the README's; the README's supported versions and
license are pyproject's.  (scripts/check_wheel.py checks the built wheel and sdist.)"""

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from django.urls import reverse

import django_bgjobs
from tests.admin_support import PAGES, operator, operator_client  # noqa: F401 - fixtures
from tests.helpers import REPO_ROOT, subprocess_env

PROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
PYPROJECT_VERSION = PROJECT["version"]


def test_version_is_the_installed_distributions_which_is_pyprojects():
    assert django_bgjobs.__version__ == metadata.version("django-bgjobs") == PYPROJECT_VERSION


def test_version_is_0_unknown_when_the_package_was_never_installed(monkeypatch):
    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    assert django_bgjobs._installed_version() == "0+unknown"


def test_changelog_latest_release_is_the_version():
    changelog = (REPO_ROOT / "CHANGELOG.rst").read_text()
    releases = re.findall(r"^(\d+\.\d+\.\d+) - \d{4}-\d\d-\d\d$", changelog, re.M)
    assert releases and releases[0] == PYPROJECT_VERSION


def test_readme_states_the_version_supported_versions_and_license_pyproject_states():
    fields = dict(re.findall(r"^:(\w+): (.*)$", (REPO_ROOT / "README.rst").read_text(), re.M))
    pythons = [c.rsplit(" :: ", 1)[1] for c in PROJECT["classifiers"]
               if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]
    djangos = [c.rsplit(" :: ", 1)[1] for c in PROJECT["classifiers"] if re.fullmatch(r"Framework :: Django :: [\d.]+", c)]

    assert fields["Version"].startswith(f"{PYPROJECT_VERSION};")
    assert fields["Supports"].startswith(f"Python {', '.join(pythons)} with Django {', '.join(djangos)} ")
    assert fields["License"] == f"{PROJECT['license']} (``LICENSE``)"
    assert (REPO_ROOT / "LICENSE").read_text().startswith(f"{PROJECT['license']} License\n")


MODEL_ADMIN_PAGES = [
    ("admin:django_bgjobs_failedjob_changelist", []),
    ("admin:django_bgjobs_schedule_changelist", []),
    ("admin:django_bgjobs_schedule_add", []),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "args"), PAGES + MODEL_ADMIN_PAGES)
def test_every_admin_page_of_the_app_shows_the_version_in_its_footer(operator_client, name, args):  # noqa: F811
    response = operator_client.get(reverse(name, args=args))

    assert response.status_code == 200
    footer = re.search(r'<footer id="footer">(.*?)</footer>', response.content.decode(), re.S)
    assert footer and f"django-bgjobs {PYPROJECT_VERSION}" in footer.group(1)


def test_runjobs_version_prints_django_bgjobs_version_and_starts_no_worker():
    result = subprocess.run(
        [sys.executable, "-m", "django", "runjobs", "--version"], cwd=REPO_ROOT, env=subprocess_env(),
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{PYPROJECT_VERSION}\n"


def test_a_test_run_meant_for_the_installed_wheel_stops_when_django_bgjobs_comes_from_elsewhere(tmp_path):
    # scripts/check_wheel.py sets BGJOBS_TEST_INSTALLED_IN to the fresh virtualenv's site-packages
    env = subprocess_env({"BGJOBS_TEST_INSTALLED_IN": str(tmp_path)})

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q", "tests/test_keys.py"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )

    assert result.returncode == 4, result.stdout + result.stderr  # pytest's usage error
    location = Path(django_bgjobs.__file__).resolve()
    assert f"django_bgjobs is imported from {location}, not from {tmp_path}" in result.stderr
