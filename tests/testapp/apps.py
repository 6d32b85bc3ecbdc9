from django.apps import AppConfig


class TestAppConfig(AppConfig):
    """A small app whose models and ``jobs.py`` the test suite uses."""

    name = "tests.testapp"
    label = "testapp"
    default_auto_field = "django.db.models.BigAutoField"
