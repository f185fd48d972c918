"""An index on django-q2's Schedule.next_run, which django-q2 1.11.1 does not have.

Every scheduler pass (the engine's batch firing and django-q2's own loop) and the
overdue-schedules check (/health, the stalled-scheduler alert) read the rows due before a
time: without it each pass scanned the whole table (93 ms cold, 51 MB at 130,000 rows).
A plain RunSQL on the third-party table, outside Django's model state (the table's model is
django-q2's); CREATE/DROP INDEX IF EXISTS work on PostgreSQL and SQLite alike.
"""
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("scheduling", "0013_incident_did_nothing"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [
        migrations.RunSQL(
            sql="CREATE INDEX IF NOT EXISTS scheduling_q_schedule_next_run ON django_q_schedule (next_run)",
            reverse_sql="DROP INDEX IF EXISTS scheduling_q_schedule_next_run",
        ),
    ]
