"""Pending one-off Schedule rows name their task by dotted path: the rollover's and the
emergency-test report refresh's functions moved to the domain apps whose data they change
(students.rollover, notifications.emergency), so rows queued before the move point there."""
from django.db import migrations

MOVED = {
    "scheduling.rollover.run_approved": "students.rollover.run_approved",
    "scheduling.emergency.emergency_test_report_refresh": "notifications.emergency.emergency_test_report_refresh",
}


def forward(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for old, new in MOVED.items():
        Schedule.objects.filter(func=old).update(func=new)


def backward(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for old, new in MOVED.items():
        Schedule.objects.filter(func=new).update(func=old)


class Migration(migrations.Migration):
    dependencies = [("scheduling", "0007_alert_delivery_counters")]
    operations = [migrations.RunPython(forward, backward)]
