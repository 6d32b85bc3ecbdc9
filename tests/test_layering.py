"""The three sides stay apart: client and web code never load the worker, the worker never loads the web side.

Two kinds of evidence: a subprocess that sets Django up and imports the client and
monitoring modules as a web process would (nothing of the worker loaded, no socket
opened, no thread started), and a static scan of every ``import`` statement, including
those inside functions, so a lazy import cannot slip past the runtime check.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import subprocess_env

PACKAGE = Path(__file__).resolve().parent.parent / "django_bgjobs"

CLIENT_SIDE = [
    "__init__", "apps", "checks", "client", "conf", "connection", "errors", "execution", "job",
    "batches", "keys", "payload", "pytest_plugin", "registry", "retry", "scripts", "serialization", "signals",
    "testing", "unique",
    "failures", "job_end", "models", "tasks", "_tasks_compat",
]

WEB_PROCESS_PROBE = """
import json, socket, sys, threading

opened = []
real_connect = socket.socket.connect
def connect(self, address):
    opened.append(repr(address))
    return real_connect(self, address)
socket.socket.connect = connect
socket.socket.connect_ex = lambda self, address: opened.append(repr(address)) or 111

import django
django.setup()
import django_bgjobs, django_bgjobs.job, django_bgjobs.client, django_bgjobs.api
import django_bgjobs.testing
from django_bgjobs import connection
from tests.testapp.jobs import RecordJob

print(json.dumps({
    "worker_modules": sorted(m for m in sys.modules if m.startswith("django_bgjobs.worker")),
    "management_modules": sorted(m for m in sys.modules if m.startswith("django_bgjobs.management")),
    "client_created": connection._client is not None,
    "sockets": opened,
    "threads": [t.name for t in threading.enumerate()],
    "captures": len(__import__("django_bgjobs.client").client._captures),
}))
"""


def test_web_process_loads_no_server_side_and_opens_nothing_when_importing_client_and_api():
    # When
    result = subprocess.run(
        [sys.executable, "-c", WEB_PROCESS_PROBE], env=subprocess_env(), capture_output=True, text=True, timeout=60,
    )

    # Then
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["worker_modules"] == []
    assert seen["management_modules"] == []
    assert seen["client_created"] is False
    assert seen["sockets"] == []
    assert seen["threads"] == ["MainThread"]
    assert seen["captures"] == 0


def imported_modules(path):
    """Every ``django_bgjobs...`` module a file imports, at any depth of the file (absolute names)."""
    package = "django_bgjobs." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level)[0]
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return {name for name in names if name == "django_bgjobs" or name.startswith("django_bgjobs.")}


def offending(paths, forbidden_prefixes):
    found = {}
    for path in paths:
        bad = sorted(
            name for name in imported_modules(path)
            if any(name == prefix or name.startswith(prefix + ".") for prefix in forbidden_prefixes)
        )
        if bad:
            found[str(path.relative_to(PACKAGE))] = bad
    return found


@pytest.mark.parametrize("module", CLIENT_SIDE)
def test_client_module_imports_no_server_or_web_side_when_scanned(module):
    path = PACKAGE / f"{module}.py"

    assert offending([path], ["django_bgjobs.worker", "django_bgjobs.api", "django_bgjobs.admin",
                              "django_bgjobs.views", "django_bgjobs.management"]) == {}


def test_server_side_imports_no_api_or_admin_when_scanned():
    paths = sorted((PACKAGE / "worker").rglob("*.py")) + sorted((PACKAGE / "management").rglob("*.py"))
    if not paths:
        pytest.skip("no worker modules yet")

    assert offending(paths, ["django_bgjobs.api", "django_bgjobs.admin", "django_bgjobs.views"]) == {}


def test_web_side_imports_no_server_side_when_scanned():
    paths = [
        path for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] in ("api", "api.py", "admin", "admin.py", "views", "views.py")
    ]
    if not paths:
        pytest.skip("no monitoring modules yet")

    assert offending(paths, ["django_bgjobs.worker", "django_bgjobs.management"]) == {}


def test_scan_sees_imports_inside_functions():
    # Given: the management command imports the worker lazily, inside handle()
    runjobs = PACKAGE / "management" / "commands" / "runjobs.py"
    if not runjobs.exists():
        pytest.skip("no runjobs yet")

    # Then: the scan must see it, or the checks above prove nothing
    assert any(name.startswith("django_bgjobs.worker") for name in imported_modules(runjobs))
