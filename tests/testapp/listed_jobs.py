"""A Job defined outside any ``jobs.py``: only a worker given ``BGJOBS["JOB_MODULES"] =
["tests.testapp.listed_jobs"]`` knows it (``tests/test_registry.py``)."""

from django_bgjobs import Job


class ListedJob(Job):
    name = "tests.testapp.listed_jobs.ListedJob"

    def perform(self, value):
        return value
