"""``python -m adapters NAME ROLE [ARGS]``: the one entry point ``run.py`` calls.

Roles: ``info`` (JSON: label, version, bulk, multiprocess, unavailable reason),
``enqueue N single|bulk`` (prints the seconds taken), ``latency N RATE``, and
``worker PROCESSES THREADS INDEX`` (replaces this process with the worker).
"""

import importlib
import json
import os
import sys

from adapters import common


def main(argv):
    name, role, *rest = argv
    adapter = importlib.import_module(f"adapters.{name}")
    if role == "info":
        reason = adapter.available()
        print(json.dumps({
            "label": adapter.LABEL, "version": None if reason else adapter.version(), "bulk": adapter.BULK,
            "multiprocess": adapter.MULTIPROCESS, "unavailable": reason,
        }))
    elif role in ("enqueue", "latency") and hasattr(adapter, "client_argv"):
        argv = adapter.client_argv([role, *rest])  # a client in another language (Sidekiq's Ruby)
        sys.stdout.flush()
        os.execvp(argv[0], argv)
    elif role == "enqueue":
        common.run_enqueue(adapter, int(rest[0]), rest[1])
    elif role == "latency":
        common.run_latency(adapter, int(rest[0]), float(rest[1]))
    elif role == "worker":
        argv = adapter.worker_argv(int(rest[0]), int(rest[1]), int(rest[2]))
        sys.stdout.flush()
        os.execvp(argv[0], argv)
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
