"""Jobs of the accounts app; django_bgjobs imports every installed app's ``jobs.py``."""

from django.contrib.auth import get_user_model
from django.core.mail import send_mail

from django_bgjobs import Discard, Job

MESSAGES = {
    "welcome": (
        "Welcome to the example site",
        "Hi {name},\n\nThanks for signing up. This email was sent by a django-bgjobs worker.\n",
    ),
    "goodbye": (
        "Your account was closed",
        "Hi {name},\n\nSorry to see you go.\n",
    ),
}


class EmailSenderJob(Job):
    """Send one of the :data:`MESSAGES` to a user, outside the request that asked for it."""

    queue = "default"
    retry = 5

    def perform(self, user_id, email_type):
        if email_type not in MESSAGES:
            raise Discard(f"unknown email type {email_type!r}")  # retrying would not help
        try:
            user = get_user_model().objects.get(pk=user_id)
        except get_user_model().DoesNotExist:
            raise Discard(f"user {user_id} no longer exists") from None
        subject, body = MESSAGES[email_type]
        send_mail(subject, body.format(name=user.get_username()), None, [user.email])
