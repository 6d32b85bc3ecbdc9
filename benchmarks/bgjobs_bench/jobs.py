from adapters.common import noop
from django_bgjobs import Job


class NoopJob(Job):
    name = "NoopJob"

    def perform(self, t):
        noop(t)
