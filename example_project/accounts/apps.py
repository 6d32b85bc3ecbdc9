from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Sign-up page plus the job that emails new users (``accounts/jobs.py``)."""

    name = "accounts"
