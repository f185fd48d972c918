"""Digests: one message per recipient, channel and period, a section per child, the
latest item per object and event; assembly is idempotent."""
from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from notifications.delivery import drain_batch
from notifications.models import DigestItem, Notification, NotificationPreference, Status
from notifications.rendering import render_email, render_push
from notifications.services import NotificationRequest, digests_assemble, notifications_enqueue
from tests import factories as f

UTC = dt.UTC
DAY1 = dt.datetime(2026, 10, 14, 16, 0, tzinfo=UTC)  # Wednesday noon in New York


def grade(user, student, *, grade_id, score, event="posted", channel="email"):
    return NotificationRequest(
        recipient_id=user.pk, category="grade-digest", channel=channel, template="grade-posted",
        context={"course_name": "Algebra", "assignment_title": f"Quiz {grade_id}", "score": score, "max_score": 20},
        dedupe_key=f"grade:{grade_id}:{event}:{score}:{user.pk}:{channel}", student_id=student.pk,
        object_key=f"grade:{grade_id}", event=event,
    )


@pytest.fixture(autouse=True)
def daily_grades(family):
    """Ana chose a daily digest of grade notices by email."""
    f.NotificationPreferenceFactory(user=family["guardian"], category="grade-digest", channel="email", frequency="daily")


@pytest.fixture
def two_children(family, school):
    luis = f.StudentFactory(school=school, first_name="Luis")
    f.GuardianLinkFactory(guardian=family["guardian"], student=luis, preferred_language="es")
    f.DeviceTokenFactory(user=family["guardian"])
    return family["student"], luis


def test_daily_digest_keeps_the_latest_item_per_object_and_event(family, two_children):
    maria, luis = two_children
    g = family["guardian"]
    with time_machine.travel(DAY1, tick=False):
        notifications_enqueue([grade(g, maria, grade_id=1, score=12), grade(g, luis, grade_id=2, score=15)])
    with time_machine.travel(DAY1 + dt.timedelta(hours=3), tick=False):
        # Grade 1 corrected (same object and event: replaces), grade 1 also "changed" (kept).
        notifications_enqueue([grade(g, maria, grade_id=1, score=18), grade(g, maria, grade_id=1, score=19, event="changed")])
    assert DigestItem.objects.count() == 3
    assert not Notification.objects.exists()

    # Nothing to assemble while the day is open.
    with time_machine.travel(DAY1 + dt.timedelta(hours=6), tick=False):
        assert digests_assemble(frequency="daily").digests == 0
    next_morning = dt.datetime(2026, 10, 15, 4, 5, tzinfo=UTC)  # 00:05 EDT
    with time_machine.travel(next_morning, tick=False):
        summary = digests_assemble(frequency="daily", job_run_id=7)
        again = digests_assemble(frequency="daily", job_run_id=7)
    assert (summary.digests, summary.items) == (1, 3)
    assert again.digests == 0

    n = Notification.objects.get()
    assert n.dedupe_key == f"digest:daily:2026-10-14:{g.pk}:email"
    assert (n.template, n.language, n.status, n.job_run_id) == ("digest", "es", Status.DEFERRED, 7)
    assert n.send_after == dt.datetime(2026, 10, 15, 11, 0, tzinfo=UTC)  # 07:00 EDT
    children = n.context["children"]
    assert [c["first_name"] for c in children] == ["Maria", "Luis"]  # by student
    by_name = {c["first_name"]: c for c in children}
    assert sorted(i["score"] for i in by_name["Maria"]["items"]) == [18, 19]
    assert [i["score"] for i in by_name["Luis"]["items"]] == [15]
    assert not DigestItem.objects.exists()  # consumed with the insert

    r = render_email(n)
    assert r.subject == "Su resumen diario de SkillCore (3 novedades)"
    assert "Algebra — Quiz 1: 18 / 20" in r.text and "Quiz 1: 12" not in r.text
    assert "<h2>Maria</h2>" in r.html


def test_one_digest_per_channel_and_a_generic_push(family, two_children):
    maria, luis = two_children
    g = family["guardian"]
    f.NotificationPreferenceFactory(user=g, category="grade-digest", channel="push", frequency="daily")
    with time_machine.travel(DAY1, tick=False):
        notifications_enqueue([grade(g, maria, grade_id=1, score=12), grade(g, luis, grade_id=2, score=3, channel="push")])
    with time_machine.travel(DAY1 + dt.timedelta(days=1), tick=False):
        digests_assemble(frequency="daily")
    assert sorted(Notification.objects.values_list("channel", flat=True)) == ["email", "push"]
    p = render_push(Notification.objects.get(channel="push"))
    assert p.push_body == "Novedades sobre Luis — abra la aplicación"  # no grades in a push


def test_weekly_digest_waits_for_the_week_to_end(family):
    g = family["guardian"]
    NotificationPreference.objects.filter(user=g, category="grade-digest", channel="email").update(frequency="weekly")
    with time_machine.travel(DAY1, tick=False):
        notifications_enqueue([grade(g, family["student"], grade_id=1, score=12)])
    assert DigestItem.objects.get().period_start == dt.date(2026, 10, 12)
    with time_machine.travel(dt.datetime(2026, 10, 18, 20, 0, tzinfo=UTC), tick=False):  # Sunday
        assert digests_assemble(frequency="weekly").digests == 0
    with time_machine.travel(dt.datetime(2026, 10, 19, 4, 30, tzinfo=UTC), tick=False):  # Monday 00:30
        assert digests_assemble(frequency="weekly").digests == 1


def test_items_about_a_child_whose_guardian_was_revoked_since_are_dropped(family, two_children):
    maria, luis = two_children
    g = family["guardian"]
    with time_machine.travel(DAY1, tick=False):
        notifications_enqueue([grade(g, maria, grade_id=1, score=12), grade(g, luis, grade_id=2, score=15)])
    family["link"].access_revoked = True  # Maria's link
    family["link"].save()
    with time_machine.travel(DAY1 + dt.timedelta(days=1), tick=False):
        s = digests_assemble(frequency="daily")
    assert s.dropped_revoked == 1
    assert [c["first_name"] for c in Notification.objects.get().context["children"]] == ["Luis"]


@pytest.mark.parametrize("consents, kept", [(False, 0), (True, 1)])
def test_items_about_a_child_who_turned_18_since_without_consent_are_dropped(family, consents, kept):
    """Rights pass to the student at 18 (FERPA 99.5): an item queued the day before the
    birthday is not sent in the digest assembled on it, unless the student consents."""
    maria, g = family["student"], family["guardian"]
    maria.birth_date = dt.date(2008, 10, 15)  # 18 on the assembly day, 2026-10-15
    maria.consents_to_guardian_access = consents
    maria.save()
    with time_machine.travel(DAY1, tick=False):
        notifications_enqueue([grade(g, maria, grade_id=1, score=12)])
    assert DigestItem.objects.count() == 1  # queued while she was 17
    with time_machine.travel(DAY1 + dt.timedelta(days=1), tick=False):
        s = digests_assemble(frequency="daily")
    assert (s.digests, s.items, s.dropped_no_consent, s.dropped_revoked) == (kept, kept, 1 - kept, 0)
    assert Notification.objects.count() == kept and not DigestItem.objects.exists()


def test_an_assembled_digest_is_delivered(family, smtp_server):
    g = family["guardian"]
    with time_machine.travel(DAY1, tick=False):
        notifications_enqueue([grade(g, family["student"], grade_id=1, score=12)])
    with time_machine.travel(DAY1 + dt.timedelta(days=1), tick=False):
        digests_assemble(frequency="daily")
        assert drain_batch().sent == 1
    assert smtp_server.messages[0]["Subject"] == "Su resumen diario de SkillCore (1 novedad)"


def test_a_digest_left_empty_by_revocation_is_not_sent_and_its_items_close(family):
    g = family["guardian"]
    with time_machine.travel(DAY1, tick=False):
        notifications_enqueue([grade(g, family["student"], grade_id=1, score=12)])
    family["link"].access_revoked = True
    family["link"].save()
    with time_machine.travel(DAY1 + dt.timedelta(days=1), tick=False):
        s = digests_assemble(frequency="daily")
        again = digests_assemble(frequency="daily")
    assert (s.digests, s.dropped_revoked, again.dropped_revoked) == (0, 1, 0)
    assert not Notification.objects.exists() and not DigestItem.objects.exists()


def test_the_tasks_assemble_and_drain(family, smtp_server):
    from notifications.tasks import assemble_digests, drain_outbox

    with time_machine.travel(DAY1, tick=False):
        notifications_enqueue([grade(family["guardian"], family["student"], grade_id=1, score=12)])
    with time_machine.travel(dt.datetime(2026, 10, 15, 12, 0, tzinfo=UTC), tick=False):  # 08:00 EDT
        assert assemble_digests("daily") == {"digests": 1, "items": 1, "dropped_revoked": 0, "dropped_no_consent": 0}
        assert drain_outbox()["sent"] == 1
    assert len(smtp_server.messages) == 1
