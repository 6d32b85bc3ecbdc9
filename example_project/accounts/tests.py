"""The README's TestCase example, run by ``tests/test_example_project.py`` (``manage.py test accounts``)."""

from django.contrib.auth.models import User
from django.core import mail
from django.test import TestCase

from accounts.jobs import EmailSenderJob
from django_bgjobs.testing import capture_jobs, perform_enqueued_jobs

SIGNUP = {"username": "ann", "email": "ann@example.com", "password1": "a-long-pass-9", "password2": "a-long-pass-9"}


class SignupTests(TestCase):
    def test_signup_enqueues_the_welcome_email(self):
        with capture_jobs() as jobs:
            self.client.post("/signup/", SIGNUP)
        jobs.assert_enqueued(EmailSenderJob, args=[User.objects.get().id, "welcome"], queue="default")
        jobs.perform_all()  # run them here (and whatever they enqueue)
        self.assertEqual(mail.outbox[0].subject, "Welcome to the example site")

    @perform_enqueued_jobs  # each job runs inside perform_later
    def test_welcome_email_is_sent(self):
        self.client.post("/signup/", SIGNUP)
        self.assertEqual(len(mail.outbox), 1)
