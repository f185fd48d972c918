"""emergency-notification-test in one district leaves another alone: its test group gets no
message on any channel and it gets no report, even a member it shares with the first
district is tested once, by the district whose run it is."""
from __future__ import annotations

from notifications.models import Category, Notification, RecipientProfile
from scheduling.models import Report
from students.models import Role
from tests import factories as f
from tests.jobs.test_emergency_notification_test import run_test


def test_another_districts_test_group_gets_nothing(district, school):
    other = f.DistrictFactory(name="Hillside Unified", time_zone="America/Los_Angeles")
    other_school = f.SchoolFactory(district=other, name="Hillside High")
    ours = f.StaffFactory(roles=[Role.DISTRICT_ADMIN], schools=[school])
    theirs = f.StaffFactory(roles=[Role.DISTRICT_ADMIN], schools=[other_school])
    shared = f.StaffFactory(roles=[Role.DISTRICT_ADMIN], schools=[school, other_school])
    for person, number in ((ours, "+12025550101"), (theirs, "+12025550102"), (shared, "+12025550103")):
        RecipientProfile.objects.create(user=person, mobile_number=number)
    district.emergency_test_group.set([ours, shared])
    other.emergency_test_group.set([theirs, shared])
    run = run_test(district)
    rows = Notification.objects.filter(category=Category.EMERGENCY_TEST)
    assert set(rows.values_list("recipient_id", flat=True)) == {ours.id, shared.id}
    assert rows.filter(recipient=shared, channel="sms").count() == 4  # four scenarios, once each
    assert set(rows.values_list("district_id", flat=True)) == {district.id}
    assert run.result["recipients"] == 2
    assert not Report.objects.filter(kind="emergency-test", district=other).exists()
