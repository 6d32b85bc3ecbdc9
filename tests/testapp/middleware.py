"""Middleware classes for the tests of django_bgjobs.middleware (named in override_settings)."""

#: What the recording middleware saw, in order: (name, payload or (job, payload)).
calls = []


class _Recording:
    label = "?"

    def __init__(self, call_next):
        self.call_next = call_next

    def __call__(self, *args):
        calls.append((self.label, "in"))
        result = self.call_next(*args)
        calls.append((self.label, "out"))
        return result


class First(_Recording):
    label = "first"


class Second(_Recording):
    label = "second"


class NoCallNext:
    """Not a middleware: it cannot be built as cls(call_next)."""

    def __init__(self):
        pass

    def __call__(self, payload):
        return payload


class NotCallable:
    """Not a middleware: built with call_next, but it has no __call__."""

    def __init__(self, call_next):
        self.call_next = call_next


def factory(call_next):
    """A function that builds a middleware, as Django's function-based middleware do."""

    def middleware(*args):
        calls.append(("factory", "in"))
        return call_next(*args)

    return middleware


class AsyncOnly:
    """An ``async def __call__`` server middleware: it wraps async jobs only."""

    def __init__(self, call_next):
        self.call_next = call_next

    async def __call__(self, job, payload):
        calls.append(("async", "in"))
        return await self.call_next(job, payload)


NOT_A_CLASS = 42


class OnlyForTimeouts(_Recording):
    """A server middleware that leaves out the jobs of classes without a ``timeout``."""

    label = "only-timeouts"

    @classmethod
    def applies_to(cls, job_class):
        return bool(job_class.timeout)


class ClientShaped:
    """A client middleware (``__call__(payload)``): wrong in SERVER_MIDDLEWARE."""

    def __init__(self, call_next):
        self.call_next = call_next

    def __call__(self, payload):
        return self.call_next(payload)


class ServerShaped:
    """A server middleware (``__call__(job, payload)``): wrong in CLIENT_MIDDLEWARE."""

    def __init__(self, call_next):
        self.call_next = call_next

    def __call__(self, job, payload):
        return self.call_next(job, payload)
