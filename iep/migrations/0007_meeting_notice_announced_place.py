from django.db import migrations, models
from django.db.models import F


def announced_as_located(apps, schema_editor):
    # Notices sent before this field existed announced the meeting's place as it stands:
    # without this, every meeting already noticed would look moved and be noticed again.
    IEPMeeting = apps.get_model("iep", "IEPMeeting")
    IEPMeeting.objects.filter(guardian_notice_sent_on__isnull=False).update(guardian_notice_location=F("location"))


class Migration(migrations.Migration):

    dependencies = [
        ("iep", "0006_meeting_notice_announced_time"),
    ]

    operations = [
        migrations.AddField(
            model_name="iepmeeting",
            name="guardian_notice_location",
            field=models.CharField(blank=True, editable=False, max_length=200),
        ),
        migrations.RunPython(announced_as_located, migrations.RunPython.noop),
    ]
