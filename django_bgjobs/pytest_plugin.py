"""pytest plugin for projects that use django-bgjobs: the ``bgjobs_capture`` fixture.

Installed packages register it through the ``pytest11`` entry point, so any test may ask for it::

    def test_signup_sends_welcome_email(bgjobs_capture):
        signup("ada@example.com")
        bgjobs_capture.assert_enqueued(WelcomeEmailJob, args=["ada@example.com"])

Loading the plugin captures nothing: only a test that asks for the fixture does, for its
own duration.  Without pytest, use ``django_bgjobs.testing.capture_jobs`` directly.
"""

import pytest


@pytest.fixture
def bgjobs_capture():
    """Capture every job enqueued during the test; yields a ``django_bgjobs.testing.CapturedJobs``."""
    from django_bgjobs.testing import capture_jobs  # imported late: Django may not be set up yet

    with capture_jobs() as jobs:
        yield jobs
