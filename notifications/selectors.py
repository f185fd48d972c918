"""Reads over the outbox."""
from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from notifications.models import DigestItem, Notification, RecipientProfile, Status
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
