"""The enqueue API: the rules, idempotency, counts and a query count flat in batch size."""
from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from notifications.models import DigestItem, Notification, NotificationPreference, RecipientProfile, Status
from notifications.services import NotificationRequest, Reason, notifications_enqueue
from students.models import Role
from tests import factories as f

NOON = dt.datetime(2026, 10, 14, 16, 0, tzinfo=dt.UTC)  # 12:00 in New York: inside the window


def req(recipient, *, key="k1", category="assignment-reminder", channel="email", student=None, **kw):
    return NotificationRequest(
        recipient_id=recipient.pk, category=category, channel=channel, template="assignment-reminder",
        context={"assignment_title": "Essay", "course_name": "English", "due_date": "2026-10-15"},
        dedupe_key=key, student_id=student.pk if student else None, **kw,
    )


@pytest.fixture(autouse=True)
def _noon():
    with time_machine.travel(NOON, tick=False):
        yield


def test_it_inserts_one_pending_row_with_the_guardians_language(family):
    summary = notifications_enqueue([req(family["guardian"], student=family["student"])], job_run_id=42)

    assert summary.as_dict() == {"inserted": 1, "deferred": 0, "duplicates": 0, "digested": 0, "failed": 0, "suppressed": {}}
    n = Notification.objects.get()
    assert (n.status, n.language, n.job_run_id, n.student_id, n.send_after) == (Status.PENDING, "es", 42, family["student"].pk, NOON)
    assert n.context["student_first_name"] == "Maria"
    assert n.quiet_hours is True  # a family message


def test_a_rerun_of_the_same_slot_inserts_nothing(family):
    requests = [req(family["guardian"], key=f"slot-1:{i}", student=family["student"]) for i in range(3)]
    notifications_enqueue(requests)
    again = notifications_enqueue(requests + requests[:1])

    assert again.inserted == 0 and again.duplicates == 4
    assert Notification.objects.count() == 3


def test_revoked_guardian_is_recorded_as_suppressed(family):
    family["link"].access_revoked = True
    family["link"].save()

    summary = notifications_enqueue([req(family["guardian"], student=family["student"])])

    assert summary.suppressed == {Reason.GUARDIAN_REVOKED: 1}
    n = Notification.objects.get()
    assert (n.status, n.status_reason) == (Status.SUPPRESSED, Reason.GUARDIAN_REVOKED)


@pytest.mark.parametrize(
    "birth_date, consents, dependent, expected",
    [
        (dt.date(2008, 10, 15), False, False, Status.PENDING),  # turns 18 tomorrow (local date)
        (dt.date(2008, 10, 14), False, False, Status.SUPPRESSED),  # 18 today
        (dt.date(2008, 10, 14), True, False, Status.PENDING),  # consented
        (dt.date(2008, 10, 14), False, True, Status.PENDING),  # tax dependent
    ],
)
def test_a_student_of_18_decides_whether_guardians_hear(family, birth_date, consents, dependent, expected):
    s = family["student"]
    s.birth_date, s.consents_to_guardian_access = birth_date, consents
    s.save()
    family["link"].is_dependent_claim = dependent
    family["link"].save()

    notifications_enqueue([req(family["guardian"], student=s)])

    assert Notification.objects.get().status == expected


def test_age_uses_the_districts_local_date(family):
    # 2026-10-15 02:00 UTC is still 10-14 in New York: born 2008-10-15, she is 17 there.
    s = family["student"]
    s.birth_date = dt.date(2008, 10, 15)
    s.save()
    emergency = NotificationRequest(
        recipient_id=family["guardian"].pk, category="emergency", channel="email", template="emergency",
        context={"headline": "x", "message": "y"}, dedupe_key="e1", student_id=s.pk,
    )
    with time_machine.travel(dt.datetime(2026, 10, 15, 2, 0, tzinfo=dt.UTC), tick=False):
        notifications_enqueue([emergency])
    assert Notification.objects.get().status == Status.PENDING


def test_the_adult_student_still_gets_her_own(family):
    s = family["student"]
    s.birth_date = dt.date(2008, 1, 1)
    s.save()
    notifications_enqueue([req(family["student_user"], student=s)])
    assert Notification.objects.get().status == Status.PENDING


def test_a_muted_class_silences_the_student_only(family):
    enrollment = f.SectionEnrollmentFactory(student=family["student"], section__school=family["student"].school, notifications_muted=True)
    section = enrollment.section

    summary = notifications_enqueue([
        req(family["student_user"], key="s", student=family["student"], section_id=section.pk),
        req(family["guardian"], key="g", student=family["student"], section_id=section.pk),
    ])

    assert summary.suppressed == {Reason.CLASS_MUTED: 1}
    assert Notification.objects.get(dedupe_key="s").status_reason == Reason.CLASS_MUTED
    assert Notification.objects.get(dedupe_key="g").status == Status.PENDING


# The preference matrix: every frequency on both channels, and the documented defaults.
@pytest.mark.parametrize("channel", ["email", "push"])
@pytest.mark.parametrize(
    "frequency, expected",
    [("immediately", "row-pending"), ("daily", "digest"), ("weekly", "digest"), ("never", "row-suppressed"), (None, "default")],
)
def test_the_preference_matrix(family, channel, frequency, expected):
    g = family["guardian"]
    f.DeviceTokenFactory(user=g)
    if frequency:
        f.NotificationPreferenceFactory(user=g, category="assignment-reminder", channel=channel, frequency=frequency)

    summary = notifications_enqueue([req(g, channel=channel, student=family["student"])])

    if expected == "default":
        assert NotificationPreference.default_frequency("assignment-reminder", channel) == "immediately"
        expected = "row-pending"
    if expected == "digest":
        assert summary.digested == 1 and not Notification.objects.exists()
        item = DigestItem.objects.get()
        assert (item.frequency, item.channel) == (frequency, channel)
        # Weekly periods start on Monday (2026-10-12), daily on the local day.
        assert item.period_start == (dt.date(2026, 10, 12) if frequency == "weekly" else dt.date(2026, 10, 14))
    elif expected == "row-pending":
        assert Notification.objects.get().status == Status.PENDING
    else:
        n = Notification.objects.get()
        assert (n.status, n.status_reason) == (Status.SUPPRESSED, Reason.PREFERENCE_NEVER)


def test_grade_digests_go_as_they_come_and_reports_never_by_push():
    assert NotificationPreference.default_frequency("grade-digest", "email") == "immediately"
    assert NotificationPreference.default_frequency("report", "push") == "never"
    assert NotificationPreference.default_frequency("report", "email") == "immediately"


def test_emergencies_ignore_never(family):
    g = family["guardian"]
    f.NotificationPreferenceFactory(user=g, category="emergency", channel="email", frequency="never")
    r = NotificationRequest(recipient_id=g.pk, category="emergency", channel="email", template="emergency",
                            context={"headline": "Closed", "message": "Snow"}, dedupe_key="e")
    notifications_enqueue([r])
    assert Notification.objects.get().status == Status.PENDING


def test_inactive_bouncing_and_deviceless_channels_are_skipped(family, school):
    g = family["guardian"]
    inactive = f.UserFactory(is_active=False)
    bouncing = f.UserFactory()
    RecipientProfile.objects.create(user=bouncing, email_status="bouncing")
    no_email = f.UserFactory(email="")
    dead_device = f.UserFactory()
    f.DeviceTokenFactory(user=dead_device, is_active=False)

    summary = notifications_enqueue([
        req(inactive, key="a"), req(bouncing, key="b"), req(no_email, key="c"),
        req(dead_device, key="d", channel="push"), req(g, key="e", student=family["student"]),
    ])

    assert summary.suppressed == {
        Reason.RECIPIENT_INACTIVE: 1, Reason.EMAIL_BOUNCING: 1, Reason.NO_EMAIL: 1, Reason.NO_DEVICE: 1,
    }
    assert summary.inserted == 1
    assert dict(Notification.objects.values_list("dedupe_key", "status_reason")) == {
        "a": Reason.RECIPIENT_INACTIVE, "b": Reason.EMAIL_BOUNCING, "c": Reason.NO_EMAIL, "d": Reason.NO_DEVICE, "e": "",
    }


def test_language_of_a_non_guardian_comes_from_the_recipient_profile(counselor):
    RecipientProfile.objects.create(user=counselor, language="es")
    notifications_enqueue([req(counselor)])
    n = Notification.objects.get()
    assert n.language == "es" and n.quiet_hours is False  # staff


def test_an_unknown_category_fails_its_row_and_the_batch_goes_on(family):
    summary = notifications_enqueue([req(family["guardian"], key="bad", category="gossip"), req(family["guardian"], key="ok")])

    assert summary.failed == 1 and summary.inserted == 1
    bad = Notification.objects.get(dedupe_key="bad")
    assert (bad.status, bad.status_reason) == (Status.FAILED, "unknown category 'gossip'")


def test_a_bad_channel_is_a_programming_error():
    with pytest.raises(ValueError, match="channel"):
        NotificationRequest(recipient_id=1, category="system", channel="fax", template="system", context={}, dedupe_key="x")


def test_a_missing_recipient_is_counted(family):
    summary = notifications_enqueue([req(family["guardian"], key="a"), NotificationRequest(
        recipient_id=999_999, category="system", channel="email", template="system", context={}, dedupe_key="b")])
    assert summary.suppressed == {Reason.RECIPIENT_MISSING: 1}
    assert Notification.objects.count() == 1


def _world(section, n, tag):
    """n students, each with a guardian, a device and a muted class; some revoked."""
    school = section.school
    reqs = []
    for i in range(n):
        s = f.StudentFactory(school=school)
        g = f.UserFactory(roles=[Role.GUARDIAN])
        f.GuardianLinkFactory(guardian=g, student=s, access_revoked=(i % 3 == 0))
        f.SectionEnrollmentFactory(section=section, student=s, notifications_muted=True)
        f.DeviceTokenFactory(user=g)
        f.NotificationPreferenceFactory(user=g, category="assignment-reminder", channel="email", frequency="daily" if i % 2 else "immediately")
        reqs.append(req(g, key=f"{tag}:{i}:e", student=s, section_id=section.pk))
        reqs.append(req(g, key=f"{tag}:{i}:p", student=s, section_id=section.pk, channel="push"))
    return reqs


def test_enqueue_query_count_does_not_grow_with_batch_size(school, django_assert_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    section = f.SectionFactory(school=school)
    small, large = _world(section, 3, "small"), _world(section, 30, "large")

    # Each chunk: savepoint, existing keys (outbox and digest keys in one UNION), users,
    # staff, profiles, preferences, students, guardian links, muted classes, devices,
    # districts, insert, digest keys insert, digest upsert, release.
    with django_assert_num_queries(15):
        notifications_enqueue(small)
    with CaptureQueriesContext(connection) as large_queries:
        s = notifications_enqueue(large)
    assert s.inserted + s.digested + sum(s.suppressed.values()) == 60
    reads = [q for q in large_queries.captured_queries if not q["sql"].startswith("INSERT")]
    assert len(reads) == 12
    if connection.vendor == "postgresql":
        assert len(large_queries) == 15  # one INSERT each for outbox, digest keys and digest items
    # (SQLite caps a statement at 999 parameters: Django splits the INSERT every ~45 rows.)


def test_enqueue_is_on_the_ferpa_access_trail(family):
    from skillcore.access import access_trail
    from skillcore.models import AccessLog

    with access_trail(purpose="grade digest", job_run_id=9):
        notifications_enqueue([req(family["guardian"], student=family["student"])], job_run_id=9)

    written = AccessLog.objects.get(model="notifications.Notification", operation="create")
    assert (written.job_run_id, written.row_count, written.student_ids) == (9, 1, [family["student"].pk])
    read = AccessLog.objects.get(model="students.Student", operation="read")
    assert read.student_ids == [family["student"].pk]
