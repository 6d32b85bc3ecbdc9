"""The versions pyproject.toml claims are exactly the ones tox.ini's matrix tests."""

import configparser
import re
import tomllib
from pathlib import Path

from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parent.parent


def matrix_pairs():
    """{(python, django)} from tox.ini's envlist (pyXY-djangoAB)."""
    tox = configparser.ConfigParser()
    tox.read(ROOT / "tox.ini")
    pairs = set()
    for env in tox["tox"]["envlist"].split(","):
        py_major, py_minor, dj_major, dj_minor = re.fullmatch(r"py(\d)(\d+)-django(\d)(\d)", env.strip()).groups()
        pairs.add((f"{py_major}.{py_minor}", f"{dj_major}.{dj_minor}"))
    return pairs


def project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_classifiers_claim_exactly_the_tested_versions():
    classifiers = project()["classifiers"]
    pythons = {c.rsplit(" ", 1)[1] for c in classifiers if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)}
    djangos = {c.rsplit(" ", 1)[1] for c in classifiers if c.startswith("Framework :: Django :: ")}
    assert pythons == {python for python, _ in matrix_pairs()}
    assert djangos == {django for _, django in matrix_pairs()}


def test_requires_python_admits_the_tested_pythons_and_no_other():
    spec = SpecifierSet(project()["requires-python"])
    pythons = {python for python, _ in matrix_pairs()}
    candidates = {f"3.{minor}" for minor in range(8, 20)}
    assert {version for version in candidates if f"{version}.0" in spec} == pythons


def test_every_django_supported_python_pair_is_tested():
    # Django 5.2 supports Python 3.10-3.14, Django 6.0 and 6.1 Python 3.12-3.14
    # (docs.djangoproject.com/en/dev/faq/install/), within the Pythons claimed.
    supported = {"5.2": {"3.11", "3.12", "3.13"}, "6.0": {"3.12", "3.13"}, "6.1": {"3.12", "3.13"}}
    assert matrix_pairs() == {(python, django) for django, pythons in supported.items() for python in pythons}
