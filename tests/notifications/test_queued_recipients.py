"""queued_recipients (notifications/selectors.py): which (recipient, student) of a job's
requests are in the outbox or waiting in a digest. On PostgreSQL the wanted (recipient,
object key) pairs are joined from a jsonb list (a2444f9), on SQLite read with the ORM; both
must give exactly what a plain walk over every row gives."""
from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from notifications.models import DigestItem, Notification, Status
from notifications.selectors import queued_recipients
from notifications.services import NotificationRequest
from tests import factories as f

pytestmark = pytest.mark.django_db

KEYS = ["grade:1", "grade:2", "O'Brien \"quoted\" key", "back\\slash\\", "Fête — neige ❄ 😀", "50%_like", "dup"]


def _request(recipient, *, dedupe_key, object_key="", student=None):
    return NotificationRequest(recipient_id=recipient.pk, category="grade_digest", channel="email", template="t",
                               context={}, dedupe_key=dedupe_key, object_key=object_key,
                               student_id=student and student.pk)


def _item(recipient, key, student, *, event="posted", held=False):
    return DigestItem.objects.create(
        recipient=recipient, channel="email", frequency="daily", period_start=dt.date(2026, 12, 1), object_key=key,
        event=event, category="grade_digest", template="t", student=student, held=held, updated_at=timezone.now())


def _walk(requests) -> set:
    """The answer read row by row, no query shape involved."""
    live = {Status.PENDING, Status.DEFERRED, Status.SENDING, Status.SENT, Status.HELD}
    keys = {r.dedupe_key for r in requests}
    out = {(n.recipient_id, n.student_id) for n in Notification.objects.all() if n.dedupe_key in keys and n.status in live}
    wanted = {(r.recipient_id, r.object_key or r.dedupe_key) for r in requests}
    out |= {(d.recipient_id, d.student_id) for d in DigestItem.objects.all() if (d.recipient_id, d.object_key) in wanted}
    return out


@pytest.fixture
def people(school):
    ann, ben, cy = f.UserFactory.create_batch(3)
    s1, s2, s3 = f.StudentFactory.create_batch(3, school=school)
    return ann, ben, cy, s1, s2, s3


def test_pairs_are_matched_as_pairs_with_odd_keys_duplicates_and_two_keys_per_recipient(people):
    ann, ben, cy, s1, s2, s3 = people
    _item(ann, KEYS[0], s1)
    _item(ann, KEYS[2], s1, event="changed")
    _item(ann, KEYS[4], s2)
    _item(ben, KEYS[1], s2)
    _item(ben, KEYS[3], s3, held=True)
    _item(cy, KEYS[5], None)
    _item(cy, "50a_like", s3)  # what "50%_like" would match as a LIKE pattern
    requests = [
        _request(ann, dedupe_key="a1", object_key=KEYS[0], student=s1),
        _request(ann, dedupe_key="a1-again", object_key=KEYS[0], student=s1),  # the same pair twice
        _request(ann, dedupe_key="a2", object_key=KEYS[2], student=s1),  # a second key of ann's
        _request(ann, dedupe_key="a3", object_key=KEYS[4], student=s2),
        _request(ann, dedupe_key="a4", object_key=KEYS[1], student=s2),  # ben's key, not ann's: no match
        _request(ben, dedupe_key="b1", object_key=KEYS[3], student=s3),
        _request(cy, dedupe_key=KEYS[5]),  # no object key: the dedupe key is the digest's key
    ]
    got = queued_recipients(requests=requests)
    assert got == _walk(requests)
    assert got == {(ann.pk, s1.pk), (ann.pk, s2.pk), (ben.pk, s3.pk), (cy.pk, None)}


def test_a_key_another_recipient_holds_and_a_recipient_with_no_item_find_nothing(people):
    ann, ben, cy, s1, s2, s3 = people
    _item(ann, KEYS[6], s1)
    _item(ben, KEYS[0], s2)
    requests = [_request(ben, dedupe_key="x", object_key=KEYS[6]), _request(cy, dedupe_key="y", object_key=KEYS[0]),
                _request(ann, dedupe_key="z", object_key=KEYS[0])]
    assert queued_recipients(requests=requests) == set() == _walk(requests)


def test_the_outbox_and_the_digest_add_up_and_no_request_reads_nothing(people, django_assert_num_queries):
    ann, ben, cy, s1, s2, s3 = people
    for key, status, who, student in (("n1", Status.SENT, ann, s3), ("n2", Status.FAILED, ben, s1),
                                      ("n3", Status.PENDING, cy, None)):
        Notification.objects.create(recipient=who, channel="email", category="grade_digest", template="t",
                                    dedupe_key=key, send_after=timezone.now(), student=student, status=status)
    _item(ben, "n2", s2)
    requests = [_request(ann, dedupe_key="n1"), _request(ben, dedupe_key="n2"), _request(cy, dedupe_key="n3")]
    got = queued_recipients(requests=requests)
    assert got == _walk(requests) == {(ann.pk, s3.pk), (ben.pk, s2.pk), (cy.pk, None)}
    with django_assert_num_queries(0):
        assert queued_recipients(requests=iter([])) == set()


def test_the_digest_read_is_on_the_access_trail_with_its_students_on_either_path(people):
    """The PostgreSQL path reads through a raw cursor: the trail must still see the rows."""
    from skillcore.access import access_trail
    from skillcore.models import AccessLog

    ann, ben, cy, s1, s2, s3 = people
    _item(ann, KEYS[4], s1)
    _item(ben, KEYS[4], s2)
    _item(cy, KEYS[4], s3)  # not asked for
    with access_trail(purpose="p", actor_label="t"):
        queued_recipients(requests=[_request(ann, dedupe_key="a", object_key=KEYS[4]),
                                    _request(ben, dedupe_key="b", object_key=KEYS[4])])
    read = AccessLog.objects.get(model="notifications.DigestItem", operation="read")
    assert (read.row_count, read.student_ids) == (2, sorted([s1.pk, s2.pk]))
