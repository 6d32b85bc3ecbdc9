#!/usr/bin/env python
"""Build the release files from this checkout and prove the wheel works where a user installs it.

Usage: ``python scripts/check_wheel.py [--contents-only]`` (needs ``pip install -e ".[release]"``:
build, twine, trove-classifiers).  ``scripts/test.sh`` runs it after the test suite; the exit status is non-zero on
any failure.  ``--contents-only`` stops after step 3.

1. ``python -m build`` makes the sdist and the wheel, in a temporary directory, from a copy of
   the files git tracks or would add (so no egg-info, cache or virtualenv of the checkout counts).
2. Their file lists are compared with what a release must hold, and any difference fails:

   * **wheel**: every file of the package that git tracks or would add (``.py`` modules, migrations
     included, Lua scripts and templates, the kinds in :data:`PACKAGE_KINDS`), plus the
     dist-info files and the LICENSE; nothing else (no tests, benchmarks, soak script or
     example project).  A tracked package file of another kind fails too, until it is added
     to :data:`PACKAGE_KINDS` and to pyproject's package-data; so does a test module in it.
   * **sdist**: the same package files, plus what builds the wheel and describes the release
     (:data:`SDIST_FILES`) and setuptools' egg-info (MANIFEST.in says why no tests).

3. ``twine check --strict`` on both (the README must render on PyPI), and every classifier is one
   PyPI accepts (``trove-classifiers``; an unknown one makes the upload fail).
4. A fresh virtualenv gets the wheel with its ``test`` extra, never the checkout, and a copy of
   the checkout without ``django_bgjobs/`` is the working directory, so nothing can import
   the checkout's package; ``BGJOBS_TEST_INSTALLED_IN`` makes tests/conftest.py stop unless
   ``django_bgjobs`` comes from the virtualenv's site-packages.  In that copy it runs

   a. ``tests/test_example_project.py``: ``example_project/run.py --smoke`` sends the welcome
      email through a real ``runjobs`` worker, and the README's TestCase example passes;
   b. the fast suite (``-m "not slow and not browser and not faults_long"``) on SQLite.
"""

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile
from pathlib import Path

import trove_classifiers

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "django_bgjobs"
DISTRIBUTION = "django-bgjobs"
#: What a user's installation needs from the package directory, by file name ending.
PACKAGE_KINDS = (".py", ".lua", ".html")
#: The sdist's files beside the package.
SDIST_FILES = {
    "PKG-INFO", "setup.cfg", "pyproject.toml", "README.rst", "CHANGELOG.rst", "LICENSE", "MANIFEST.in",
    *(f"{PACKAGE}.egg-info/{name}" for name in (
        "PKG-INFO", "SOURCES.txt", "dependency_links.txt", "entry_points.txt", "requires.txt", "top_level.txt",
    )),
}
#: Names of files or folders that never belong in the package.
NOT_SHIPPED = {"tests", "benchmarks", "conftest.py", "soak.py", "example_project"}
FAST_TESTS = "not slow and not browser and not faults_long"


def main(argv):
    contents_only = argv == ["--contents-only"]
    if argv and not contents_only:
        fail(f"unknown arguments {argv}; usage: check_wheel.py [--contents-only]")
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    version = project["version"]
    with tempfile.TemporaryDirectory(prefix="bgjobs-wheel-") as tmp:
        tmp = Path(tmp)
        files = source_files()
        step(f"build {DISTRIBUTION} {version}")
        copy_files(files, tmp / "source")  # what git holds or would add: no egg-info, caches or venvs
        run([sys.executable, "-m", "build", "--outdir", str(tmp / "dist"), str(tmp / "source")], quiet=True)
        wheel = one(tmp / "dist", f"{PACKAGE}-{version}-py3-none-any.whl")
        sdist = one(tmp / "dist", f"{PACKAGE}-{version}.tar.gz")

        package_files = shipped_package_files(files)
        step(f"wheel contents ({wheel.name})")
        check_list("wheel", wheel_files(wheel), set(), package_files | {
            f"{PACKAGE}-{version}.dist-info/{name}"
            for name in ("METADATA", "WHEEL", "RECORD", "entry_points.txt", "top_level.txt", "licenses/LICENSE")
        })
        step(f"sdist contents ({sdist.name})")
        check_list("sdist", sdist_files(sdist, f"{PACKAGE}-{version}/"), package_files, package_files | SDIST_FILES)

        step("twine check --strict")
        run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)])
        unknown = sorted(set(project["classifiers"]) - trove_classifiers.classifiers)
        if unknown:
            fail(f"classifiers PyPI does not know (trove-classifiers): {unknown}")
        print(f"{len(project['classifiers'])} classifiers, all known to PyPI", flush=True)
        if contents_only:
            print("check_wheel: contents OK (--contents-only: not installed)", flush=True)
            return 0

        step("install the wheel into a fresh virtualenv")
        venv = tmp / "venv"
        run([sys.executable, "-m", "venv", str(venv)])
        python = venv / "bin" / "python"
        run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"{wheel}[test]"])
        site_packages = subprocess.check_output(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], text=True).strip()

        work = tmp / "checkout-without-package"
        copy_files([name for name in files if name.split("/", 1)[0] != PACKAGE], work)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE", "VIRTUAL_ENV")}
        env["BGJOBS_TEST_INSTALLED_IN"] = site_packages
        where = subprocess.check_output(
            [str(python), "-c", "import django_bgjobs; print(django_bgjobs.__file__, django_bgjobs.__version__)"],
            cwd=work, env=env, text=True).split()
        print(f"django_bgjobs {where[1]} imported from {where[0]}", flush=True)
        if not Path(where[0]).resolve().is_relative_to(Path(site_packages).resolve()) or where[1] != version:
            fail(f"expected django_bgjobs {version} from {site_packages}")

        pytest = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        step("(a) example_project/run.py --smoke and the README's TestCase, from the installed wheel")
        run([*pytest, "tests/test_example_project.py"], cwd=work, env=env)
        step(f"(b) the fast suite from the installed wheel (-m {FAST_TESTS!r})")
        started = time.monotonic()
        run([*pytest, "-m", FAST_TESTS], cwd=work, env=env)
        print(f"check_wheel: fast suite from the installed wheel took {time.monotonic() - started:.0f}s")
    print("check_wheel: OK", flush=True)
    return 0


def source_files():
    """The checkout's files that git tracks or would add (untracked ones not ignored)."""
    listed = subprocess.check_output(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT, text=True)
    return sorted(name for name in listed.split("\0") if name and (REPO_ROOT / name).is_file())


def shipped_package_files(files):
    """The package's files, refusing a kind outside :data:`PACKAGE_KINDS` and test modules."""
    package = {name for name in files if name.split("/", 1)[0] == PACKAGE}
    if not package:
        fail(f"git lists no file under {PACKAGE}/")
    strange = sorted(name for name in package if not name.endswith(PACKAGE_KINDS))
    if strange:
        fail(f"package files of a kind the wheel does not ship ({', '.join(PACKAGE_KINDS)}): {strange}")
    tests = sorted(name for name in package if set(name.split("/")) & NOT_SHIPPED or
                   name.rsplit("/", 1)[-1].startswith("test_"))
    if tests:
        fail(f"tests, benchmarks or scripts inside the package (they would ship in the wheel): {tests}")
    return package


def wheel_files(wheel):
    with zipfile.ZipFile(wheel) as archive:
        return {name for name in archive.namelist() if not name.endswith("/")}


def sdist_files(sdist, root):
    with tarfile.open(sdist) as archive:
        names = [member.name for member in archive.getmembers() if not member.isdir()]
    outside = [name for name in names if not name.startswith(root)]
    if outside:
        fail(f"sdist members outside {root}: {outside}")
    return {name.removeprefix(root) for name in names}


def check_list(what, actual, shown_above, expected):
    """Print ``actual`` (but the files in ``shown_above``) and fail unless it is ``expected``."""
    for name in sorted(actual - shown_above):
        print(f"  {name}")
    also = f" (and the {len(actual & shown_above)} package files listed above)" if actual & shown_above else ""
    print(f"{what}: {len(actual)} files{also}", flush=True)
    missing, extra = sorted(expected - actual), sorted(actual - expected)
    if missing or extra:
        fail(f"{what} differs from what a release must hold:\n  missing: {missing}\n  unexpected: {extra}")


def copy_files(names, destination):
    for name in names:
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, destination / name)


def one(directory, name):
    path = directory / name
    if not path.is_file():
        fail(f"python -m build made {sorted(p.name for p in directory.iterdir())}, not {name}")
    return path


def run(command, quiet=False, **kwargs):
    print("$ " + " ".join(command), flush=True)
    result = subprocess.run(command, stdin=subprocess.DEVNULL, text=True,
                            capture_output=quiet, **kwargs)
    if result.returncode != 0:
        if quiet:
            print(result.stdout + result.stderr)
        fail(f"exit status {result.returncode}")


def step(title):
    print(f"\n{' check_wheel: ' + title + ' ':=^78}", flush=True)


def fail(message):
    print(f"check_wheel: FAILED: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
