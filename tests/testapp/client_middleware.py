"""Client middleware for ``tests/test_middleware_client.py``, named in ``BGJOBS["CLIENT_MIDDLEWARE"]``
by ``override_settings``.

What they see is kept in :data:`SEEN` (this process only: every path those tests drive runs
in the test's own process), as ``(middleware name, copy of the payload as it came in)``.
"""

SEEN = []


def seen(name=None):
    """The payloads middleware ``name`` (any, when None) has seen, oldest first."""
    return [payload for who, payload in SEEN if name is None or who == name]


class _Recorder:
    name = None

    def __init__(self, call_next):
        self.call_next = call_next

    def __call__(self, payload):
        SEEN.append((self.name, dict(payload)))
        return self.call_next(payload)


class Recording(_Recorder):
    """Records every payload and lets it through unchanged."""

    name = "recording"


class First(_Recorder):
    """Records, then marks the payload, so the next middleware can tell it came after."""

    name = "first"

    def __call__(self, payload):
        SEEN.append((self.name, dict(payload)))
        payload["order"] = "first"
        return self.call_next(payload)


class Second(_Recorder):
    name = "second"

    def __call__(self, payload):
        SEEN.append((self.name, dict(payload)))
        payload["order"] = payload.get("order", "") + " then second"
        return self.call_next(payload)


class Tenant:
    """Adds a field, as a tenant-switching middleware would."""

    def __init__(self, call_next):
        self.call_next = call_next

    def __call__(self, payload):
        payload["tenant"] = "acme"
        return self.call_next(payload)


class Stop:
    """Stops every payload: nothing of it may be written."""

    def __init__(self, call_next):
        self.call_next = call_next

    def __call__(self, payload):
        SEEN.append(("stop", dict(payload)))
        return None


class ForbiddenWrite:
    """Attaches a write a push may not do (a DEL of another key)."""

    def __init__(self, call_next):
        self.call_next = call_next

    def __call__(self, payload):
        from django_bgjobs import client

        client.current_push().write(payload["jid"], "DEL", "queue:default")
        return self.call_next(payload)
