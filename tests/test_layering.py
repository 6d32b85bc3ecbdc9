"""The package's structure holds: no import cycle, the core imports no feature, and the three
sides stay apart (client and web code never load the worker; the worker never loads the web side).

Two kinds of evidence: a subprocess that sets Django up and imports the client and monitoring
modules as a web process would (nothing of the worker loaded, no socket opened, no thread
started), and a static scan of every ``import`` statement, including those inside functions,
so a lazy import cannot slip past.  The module lists are derived from the tree, so a new
module is checked without anyone adding it here:

* **server side**: ``worker/``, ``management/`` and every feature's ``server.py``;
* **web side**: ``api/``, ``admin/``, ``templatetags/``;
* **features**: the sub-packages that are none of these (``unique/``, ``batches/``, ``cron/``);
* **core**: the top-level modules, but for the few that assemble the app out of everything
  (:data:`ASSEMBLY`);
* **client side**: everything else.
"""

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import subprocess_env

#: The package under test, wherever it is imported from (the checkout, or an installed wheel),
#: found without running its ``__init__``.
PACKAGE = Path(importlib.util.find_spec("django_bgjobs").submodule_search_locations[0])
SERVER_PACKAGES = ("worker", "management")
WEB_PACKAGES = ("api", "admin", "templatetags")
NOT_CODE = ("migrations", "templates", "lua", "__pycache__")
#: The feature packages this layout promises; a missing one fails the test (it must not skip).
EXPECTED_FEATURES = ("unique", "batches", "cron")
#: Top-level modules that tie the core and the features together, so they may import features.
ASSEMBLY = {
    "__init__": "the public API re-exports Batch, the unique-lock errors, ...",
    "apps": "the AppConfig imports every installed app's jobs.py and the checks",
    "checks": "system checks read every feature's settings",
    "models": "the Django models of every feature (one migrations folder)",
    "testing": "the test helpers drive every feature",
    "pytest_plugin": "exposes testing's fixtures",
}


def module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))
    if not set(path.relative_to(PACKAGE).parts) & set(NOT_CODE)
}
SUBPACKAGES = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists() and p.name not in NOT_CODE)
FEATURES = [name for name in SUBPACKAGES if name not in SERVER_PACKAGES + WEB_PACKAGES]


def top(name):
    """``worker`` for ``django_bgjobs.worker.fetcher``; the module's own name for a top-level
    one; ``__init__`` for the package itself."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def is_server(name):
    return top(name) in SERVER_PACKAGES or name.endswith(".server")


def is_web(name):
    return top(name) in WEB_PACKAGES


def imported_modules(path):
    """Every ``django_bgjobs`` module a file imports, at any depth of the file, as the
    module names that exist in the tree (``from x import name`` counts as ``x.name`` when
    that is a module, else ``x``)."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.update(f"{module}.{alias.name}" for alias in node.names)
            names.add(module)
    found = set()
    for name in names:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name and name != me and name != "django_bgjobs":
            found.add(name)
    return found


GRAPH = {name: imported_modules(path) for name, path in MODULES.items()}

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
    "worker_modules": sorted(m for m in sys.modules if m.startswith("django_bgjobs.worker") or m.endswith(".server")),
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


def test_the_expected_feature_packages_exist_so_the_rules_below_check_something():
    assert set(EXPECTED_FEATURES) <= set(FEATURES), f"feature packages found: {FEATURES}"
    assert set(SERVER_PACKAGES + WEB_PACKAGES) <= set(SUBPACKAGES)


def test_no_import_cycle_in_the_package():
    # Tarjan's strongly connected components over the import graph, function-level imports included.
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append({m: sorted(GRAPH[m] & set(component)) for m in sorted(component)})

    for node in GRAPH:
        if node not in index:
            visit(node)
    assert cycles == []


def offending(names, allowed):
    found = {}
    for name in names:
        bad = sorted(imported for imported in GRAPH[name] if not allowed(imported))
        if bad:
            found[name] = bad
    return found


def test_the_core_imports_no_feature():
    core = [name for name, path in MODULES.items() if path.parent == PACKAGE and top(name) not in ASSEMBLY]
    assert "django_bgjobs.client" in core and "django_bgjobs.payload" in core

    assert offending(core, lambda imported: top(imported) not in FEATURES) == {}


#: The one place the worker names a feature: the launcher starts the recurring jobs' Scheduler
#: thread (a thread of its own, not a middleware).
WORKER_IMPORTS_OF_FEATURES = {("django_bgjobs.worker.launcher", "django_bgjobs.cron.server")}


def test_the_worker_imports_no_feature_but_the_launcher_starting_the_scheduler():
    worker = [name for name in MODULES if top(name) == "worker"]
    assert "django_bgjobs.worker.fetcher" in worker

    found = {
        (name, imported) for name in worker for imported in GRAPH[name] if top(imported) in FEATURES
    }
    assert found == WORKER_IMPORTS_OF_FEATURES


def test_client_side_imports_no_server_or_web_side():
    client_side = [name for name in MODULES if not is_server(name) and not is_web(name)]
    assert [name for name in client_side if top(name) in FEATURES], "no feature module counted as client side"

    assert offending(client_side, lambda imported: not is_server(imported) and not is_web(imported)) == {}


def test_server_side_imports_no_web_side():
    server_side = [name for name in MODULES if is_server(name)]
    assert "django_bgjobs.worker.processor" in server_side

    assert offending(server_side, lambda imported: not is_web(imported)) == {}


def test_web_side_imports_no_server_side():
    web_side = [name for name in MODULES if is_web(name)]
    assert "django_bgjobs.api.queues" in web_side

    assert offending(web_side, lambda imported: not is_server(imported)) == {}


def test_scan_sees_imports_inside_functions():
    # Given: the management command imports the worker lazily, inside handle()
    # Then: the scan must see it, or the checks above prove nothing
    assert any(top(name) == "worker" for name in GRAPH["django_bgjobs.management.commands.runjobs"])
