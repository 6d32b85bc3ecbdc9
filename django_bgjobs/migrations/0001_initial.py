import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
    ]

    operations = [
        migrations.CreateModel(
            name='Dashboard',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
            ],
            options={
                'verbose_name': 'dashboard',
                'verbose_name_plural': 'dashboard',
                'managed': False,
                'default_permissions': ('view', 'change'),
            },
        ),
        migrations.CreateModel(
            name='FailedJob',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('jid', models.CharField(db_index=True, max_length=64, verbose_name='job id')),
                ('job_class', models.CharField(db_index=True, max_length=255, verbose_name='class')),
                ('queue', models.CharField(db_index=True, max_length=128)),
                ('args', models.JSONField(blank=True, default=list, help_text='The arguments as stored in the payload.')),
                ('payload', models.JSONField(blank=True, default=dict, help_text='The whole payload as it was written to the dead set.')),
                ('error_class', models.CharField(blank=True, db_index=True, max_length=255)),
                ('error_message', models.TextField(blank=True)),
                ('backtrace', models.TextField(blank=True)),
                ('retry_count', models.IntegerField(blank=True, help_text='As in the payload: 0 when it died on its first failure, empty when it never failed.', null=True)),
                ('reason', models.TextField(blank=True, help_text='Why it went to the dead set.')),
                ('first_enqueued_at', models.DateTimeField(blank=True, null=True)),
                ('failed_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now, help_text='When it went to the dead set.')),
                ('retried_at', models.DateTimeField(blank=True, help_text='When it was enqueued again from the admin.', null=True)),
                ('resolved_at', models.DateTimeField(blank=True, help_text='When an operator marked it resolved.', null=True)),
            ],
            options={
                'verbose_name': 'failed job',
                'verbose_name_plural': 'failed jobs',
                'ordering': ['-failed_at', '-id'],
            },
        ),
    ]
