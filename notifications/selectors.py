"""Reads over the outbox."""
from __future__ import annotations

import json

from django.db import connection
from django.db.models import Count, Exists, OuterRef, Q, QuerySet

from notifications.models import Category, DigestItem, Notification, NotificationPreference, RecipientProfile, Status
from students import scoping
from students.models import Role
from students.roles import has_role

_NOTHING = Q(pk__in=[])


def outbox_status_counts(queryset: QuerySet | None = None) -> dict[str, int]:
    """{status: count} for every status (zeros included), one GROUP BY query."""
    qs = Notification.objects.all() if queryset is None else queryset
    counts = dict(qs.order_by().values_list("status").annotate(n=Count("id")))
    return {s.value: counts.get(s.value, 0) for s in Status}


def may_view_outbox(user) -> bool:
    return bool(user.is_active and user.is_staff and has_role(user, Role.SYSTEM_ADMIN, Role.DISTRICT_ADMIN))


def _district_q(user, field: str) -> Q:
    """System admins: everything; district admins: their district; others: nothing."""
    if not may_view_outbox(user):
        return _NOTHING
    if has_role(user, Role.SYSTEM_ADMIN):
        return Q()
    district_id = scoping.staff_of(user).district_id
    return Q(**{field: district_id}) if district_id else _NOTHING


def outbox_visible_to(user) -> QuerySet:
    """The outbox rows ``user`` may see (it names families and students)."""
    return Notification.objects.select_related("recipient", "student").filter(_district_q(user, "district_id"))


def digest_items_visible_to(user) -> QuerySet:
    return DigestItem.objects.select_related("recipient").filter(_district_q(user, "district_id"))


def recipient_profiles_visible_to(user) -> QuerySet:
    if not may_view_outbox(user):
        return RecipientProfile.objects.none()
    if has_role(user, Role.SYSTEM_ADMIN):
        return RecipientProfile.objects.all()
    return RecipientProfile.objects.filter(scoping.people_q(user, "user"))


def low_grade_thresholds(*, user_ids) -> dict[int, list[tuple[str, object]]]:
    """user id -> [(channel, threshold percentage)] for people who asked, on the grade-digest
    category, to be alerted at once when a grade falls below a percentage. One query;
    ``user_ids`` may be a QuerySet of ids (a subquery)."""
    out: dict[int, list[tuple[str, object]]] = {}
    if not isinstance(user_ids, QuerySet):
        user_ids = list(user_ids)
    rows = NotificationPreference.objects.filter(
        user_id__in=user_ids, category=Category.GRADE_DIGEST, low_grade_threshold__isnull=False,
    ).order_by("user_id", "channel").values_list("user_id", "channel", "low_grade_threshold")
    for user_id, channel, threshold in rows:
        out.setdefault(user_id, []).append((channel, threshold))
    return out


def queued_recipients(*, requests) -> set[tuple[int, int | None]]:
    """(recipient id, student id) of these NotificationRequests that are in the outbox to
    be delivered (pending, deferred, sending or sent: not suppressed or failed), or waiting
    in a digest. What a job reports as "notified"; two queries.

    Digest items are found by recipient *and* object key: the recipient leads the
    digest_item_unique index (object_key alone has none, a scan of every open item).
    On PostgreSQL the wanted (recipient, object key) pairs are joined as one list: given
    as two ``= ANY`` arrays, PostgreSQL 15 walks digest_item_unique once per combination
    of a recipient and a key (recipients x keys: 30 million index probes, 40 s, for one
    chunk of 5,500 digests at 50,000 students; the bench's grade-posting-digest took 196 s).
    """
    from notifications.services import _among

    requests = list(requests)
    if not requests:
        return set()
    live = [Status.PENDING, Status.DEFERRED, Status.SENDING, Status.SENT, Status.HELD]
    out: set[tuple[int, int | None]] = set(
        Notification.objects.filter(_among("dedupe_key", [r.dedupe_key for r in requests]), status__in=live)
        .values_list("recipient_id", "student_id")
    )
    wanted = {(r.recipient_id, r.object_key or r.dedupe_key) for r in requests}
    if connection.vendor == "postgresql":
        table = DigestItem._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f'SELECT d."recipient_id", d."object_key", d."student_id" FROM "{table}" d '
                "JOIN jsonb_to_recordset(%s::jsonb) AS w(recipient_id bigint, object_key text) "
                'ON d."recipient_id" = w.recipient_id AND d."object_key" = w.object_key',
                [json.dumps([{"recipient_id": u, "object_key": k} for u, k in wanted])],
            )
            rows = cursor.fetchall()
    else:
        rows = DigestItem.objects.filter(
            _among("recipient_id", {u for u, _ in wanted}), _among("object_key", {k for _, k in wanted}),
        ).values_list("recipient_id", "object_key", "student_id")
    out.update((u, s) for u, k, s in rows if (u, k) in wanted)
    return out


def sms_texting(*, user_ids, category: str) -> set[int]:
    """Of ``user_ids`` (ids or a QuerySet of ids), who may be texted about ``category`` now:
    a mobile number, consent recorded, no STOP since, and SMS chosen for the category
    (``RecipientProfile.sms_allows`` and the preference, as one query). A job asks this before
    adding SMS requests, so people without texts cost no suppressed outbox rows; enqueue
    decides again."""
    if not isinstance(user_ids, QuerySet):
        user_ids = list(user_ids)
    chose = NotificationPreference.objects.filter(
        user_id=OuterRef("user_id"), category=category, channel="sms", frequency="immediately")
    return set(
        RecipientProfile.objects.filter(user_id__in=user_ids, sms_consent_at__isnull=False, sms_opted_out_at__isnull=True)
        .exclude(mobile_number="").filter(Exists(chose)).values_list("user_id", flat=True)
    )


def dedupe_keys_not_suppressed(keys: list[str]) -> set[str]:
    """Which of these outbox messages can go (any status but suppressed: pending, deferred,
    held, sent...). One query. A job that must know whether anybody was told at all (a
    legal notice) asks this after enqueueing."""
    if not keys:
        return set()
    return set(Notification.objects.filter(dedupe_key__in=keys).exclude(status=Status.SUPPRESSED)
               .values_list("dedupe_key", flat=True))
