from django.db import migrations, models
from django.db.models import F


def announced_as_scheduled(apps, schema_editor):
    # Notices sent before this field existed announced the meeting's time as it stands:
    # without this, every meeting already noticed would look moved and be noticed again.
    IEPMeeting = apps.get_model("iep", "IEPMeeting")
    IEPMeeting.objects.filter(guardian_notice_sent_on__isnull=False).update(guardian_notice_for=F("scheduled_for"))


class Migration(migrations.Migration):

    dependencies = [
        ("iep", "0005_reevaluation_due_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="iepmeeting",
            name="guardian_notice_for",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.RunPython(announced_as_scheduled, migrations.RunPython.noop),
    ]
