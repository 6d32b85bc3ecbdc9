"""Loads the Lua scripts in ``lua/`` once per process and runs them by name.

Each ``.lua`` file opens with its contract (KEYS, ARGV, return value).  A line
``--#include NAME`` is replaced by ``lua/NAME.lua`` (shared Lua functions).  redis-py's
``Script`` object sends EVALSHA and falls back to loading the script when the
server does not know it yet (after a restart, say).
"""

import re
import threading
from importlib import resources

from redis.exceptions import NoScriptError

from django_bgjobs.connection import get_redis

_lock = threading.Lock()
_scripts = {}


def get_script(name, client=None):
    """Return the ``redis.commands.core.Script`` for script ``name`` (one per process; it is
    always called with an explicit client, so it outlives a connection reset).

    A plain name is a core script, ``lua/<name>.lua``; a feature's script is named by its path
    in the package, ``"unique/start"`` for ``django_bgjobs/unique/start.lua``, next to the
    module that calls it."""
    script = _scripts.get(name)
    if script is None:
        with _lock:
            script = _scripts.get(name)
            if script is None:
                folder, _, base = name.rpartition("/")
                source = _source(*(folder or "lua").split("/"), f"{base}.lua")
                source = _INCLUDE.sub(lambda m: _source("lua", f"{m.group(1)}.lua"), source)
                script = _scripts[name] = (client or get_redis()).register_script(source)
    return script


_INCLUDE = re.compile(r"^--#include (\w+)$", re.MULTILINE)


def _source(*path):
    return resources.files("django_bgjobs").joinpath(*path).read_text()


def run(name, keys=(), args=(), client=None):
    """Run script ``name`` with ``keys`` and ``args`` and return its result."""
    client = client or get_redis()
    return get_script(name, client)(keys=list(keys), args=list(args), client=client)


def run_on_connection(connection, name, keys=(), args=()):
    """Run script ``name`` on one ``redis.Connection`` that the caller holds for itself: one
    EVALSHA, and EVAL with the source when the server does not know the script yet.

    The worker's fetch loop calls this on a connection it keeps (its calls are serialised
    anyway), which skips the pool and the client's command machinery on its hottest path.
    The caller disconnects the connection if this raises anything but ``ResponseError``.
    """
    script = get_script(name)
    connection.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
    try:
        return connection.read_response()
    except NoScriptError:
        connection.send_command("EVAL", script.script, len(keys), *keys, *args)
        return connection.read_response()
