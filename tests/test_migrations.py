"""django_bgjobs' migrations, backwards to zero and forwards again, on the run's database.

Not marked ``slow``, so it runs in both of runtests.py's runs: SQLite and PostgreSQL.
"""

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from django_bgjobs.models import FailedJob, Schedule


def our_tables():
    """The tables of django_bgjobs' concrete models (the Dashboard is table-less)."""
    models = apps.get_app_config("django_bgjobs").get_models()
    return {model._meta.db_table for model in models if model._meta.managed and not model._meta.proxy}


def tables():
    return set(connection.introspection.table_names())


def unapplied():
    executor = MigrationExecutor(connection)
    return executor.migration_plan(executor.loader.graph.leaf_nodes())


@pytest.mark.usefixtures("transactional_db")
def test_migrations_go_back_to_zero_and_forward_to_the_latest():
    # Given: migrated, as the test database is
    assert our_tables() == {FailedJob._meta.db_table, Schedule._meta.db_table}
    assert our_tables() <= tables()

    # When: backwards to zero
    call_command("migrate", "django_bgjobs", "zero", verbosity=0)

    # Then: the tables are gone, and only django_bgjobs' migrations were unapplied
    assert not our_tables() & tables()
    assert {migration.app_label for migration, backwards in unapplied()} == {"django_bgjobs"}

    # When: forwards to the latest
    call_command("migrate", "django_bgjobs", verbosity=0)

    # Then: every table is back and usable, and nothing is left to apply
    assert our_tables() <= tables()
    assert unapplied() == []
    Schedule.objects.create(name="nightly", cron="0 3 * * *", job_class="tests.testapp.jobs.NoopJob")
    assert Schedule.objects.count() == 1 and FailedJob.objects.count() == 0
