"""Sphinx configuration for the django-bgjobs documentation.

Build it as CI does (warnings are errors, every reference must resolve)::

    sphinx-build -W --keep-going -n -b html docs docs/_build/html

Autodoc imports the package, so Django is set up first with minimal settings that need
no Redis and no database file: nothing connects at import time.
"""

import sys
from pathlib import Path

import django
from django.conf import settings

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))

if not settings.configured:
    settings.configure(
        SECRET_KEY="docs-build-not-secret",
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django_bgjobs"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        BGJOBS={"REDIS_URL": "redis://127.0.0.1:1/0"},  # never contacted by the build
        USE_TZ=True,
    )
    django.setup()

from importlib.metadata import PackageNotFoundError, version as _version  # noqa: E402

project = "django-bgjobs"
author = "django-bgjobs contributors"
copyright = "django-bgjobs contributors"
try:
    release = _version("django-bgjobs")
except PackageNotFoundError:  # a checkout that was never installed
    release = "unknown"
version = release

extensions = ["sphinx.ext.autodoc"]

exclude_patterns = ["_build"]
root_doc = "index"
highlight_language = "python3"

html_theme = "furo"
html_title = f"django-bgjobs {release}"
html_static_path = ["_static"]
html_css_files = ["examples.css"]  # the "illustration" mark (tests/test_docs_examples.py)

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True}
autodoc_typehints = "description"

nitpicky = True  # as -n: Read the Docs builds with it too

# -n (nitpicky) makes every cross-reference an error when its target is missing.  Targets of
# this package must resolve; other libraries' (Django, redis-py, the standard library beyond
# builtins) are left unlinked, since the build runs offline, without intersphinx.
nitpick_ignore_regex = [
    (r"py:.*", r"(django|redis|datetime|decimal|uuid|collections|contextlib|typing|asyncio|enum|threading|"
               r"croniter|django_tasks|pathlib|logging|concurrent|zoneinfo|types|json)(\..*)?"),
]
