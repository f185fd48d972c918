"""Writes to the outbox: enqueue (the jobs' one entry point), digest assembly, resend, and
the channel-health marks delivery sets.

Enqueue is set-based: for each chunk of requests it runs a fixed number of queries (about a
dozen, whatever the chunk size), decides every request in memory, then writes with one
``bulk_create(ignore_conflicts=True)`` for outbox rows and one upsert for digest items.
"""
from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from notifications import quiet_hours
from notifications.models import (
    EMERGENCY_CATEGORIES,
    Category,
    Channel,
    DigestItem,
    Frequency,
    Notification,
    NotificationPreference,
    Priority,
    RecipientProfile,
    Status,
)
from students.models import DeviceToken, District, GuardianLink, SectionEnrollment, StaffProfile, Student

User = get_user_model()

SUPPORTED_LANGUAGES = ("en", "es")
ENQUEUE_CHUNK = 2000

# What a person gets when they never chose (no NotificationPreference row). Grades arrive
# many times a day, so they are a daily digest by default (Canvas does the same); reports
# are documents, so not by push. Everything else is immediate. Emergency categories ignore
# preferences altogether: a lockdown alert cannot be "never" or "weekly".
DEFAULT_FREQUENCY: dict[str, str] = {
    Category.ATTENDANCE_INTERVENTION: Frequency.IMMEDIATELY,
    Category.IEP_REMINDER: Frequency.IMMEDIATELY,
    Category.GRADE_DIGEST: Frequency.DAILY,
    Category.ASSIGNMENT_REMINDER: Frequency.IMMEDIATELY,
    Category.PERFORMANCE_ALERT: Frequency.IMMEDIATELY,
    Category.REPORT: Frequency.IMMEDIATELY,
    Category.EMERGENCY: Frequency.IMMEDIATELY,
    Category.EMERGENCY_TEST: Frequency.IMMEDIATELY,
    Category.SYSTEM: Frequency.IMMEDIATELY,
}
DEFAULT_FREQUENCY_BY_CHANNEL: dict[tuple[str, str], str] = {
    (Category.REPORT, Channel.PUSH): Frequency.NEVER,
}

_CATEGORIES = {c.value for c in Category}
_CHANNELS = {c.value for c in Channel}
_PRIORITIES = {p.value for p in Priority}


def default_frequency(category: str, channel: str) -> str:
    return DEFAULT_FREQUENCY_BY_CHANNEL.get((category, channel), DEFAULT_FREQUENCY.get(category, Frequency.IMMEDIATELY))


class Reason:
    """Why a request was not queued for delivery (Notification.status_reason, summary keys)."""

    RECIPIENT_MISSING = "recipient-missing"
    RECIPIENT_INACTIVE = "recipient-inactive"
    GUARDIAN_REVOKED = "guardian-access-revoked"
    ADULT_NO_CONSENT = "student-18-no-consent"
    CLASS_MUTED = "class-muted"
    PREFERENCE_NEVER = "preference-never"
    NO_EMAIL = "no-email-address"
    EMAIL_BOUNCING = "email-bouncing"
    NO_DEVICE = "no-active-device"


@dataclass(frozen=True, slots=True)
class NotificationRequest:
    """One message a job wants to send. ``context`` holds ids and the few values the
    template prints; enqueue adds ``student_first_name`` when ``student_id`` is given.

    ``object_key``/``event`` name what a digest line is about ("grade:123", "posted"): in a
    digest only the latest item per (object, event) survives. Empty means the dedupe key.
    """

    recipient_id: int
    category: str
    channel: str
    template: str
    context: dict
    dedupe_key: str
    priority: str = Priority.NORMAL
    student_id: int | None = None
    section_id: int | None = None
    object_key: str = ""
    event: str = ""

    def __post_init__(self) -> None:
        # Programming errors fail the call before anything is written; a bad *category*
        # (data that may come from configuration) becomes a failed row instead.
        if self.channel not in _CHANNELS:
            raise ValueError(f"NotificationRequest.channel must be one of {sorted(_CHANNELS)}, not {self.channel!r}")
        if self.priority not in _PRIORITIES:
            raise ValueError(f"NotificationRequest.priority must be one of {sorted(_PRIORITIES)}, not {self.priority!r}")
        if not self.dedupe_key or len(self.dedupe_key) > 255:
            raise ValueError("NotificationRequest.dedupe_key must be 1-255 characters")


@dataclass
class EnqueueSummary:
    inserted: int = 0  # outbox rows that will be delivered (pending or deferred)
    deferred: int = 0  # of those, held for the quiet-hours window
    duplicates: int = 0  # dedupe key already in the outbox (or twice in the input)
    digested: int = 0  # went to a daily/weekly digest
    failed: int = 0  # bad input, recorded as a failed row
    suppressed: Counter = field(default_factory=Counter)  # reason -> count (rows recorded)

    def as_dict(self) -> dict:
        return {
            "inserted": self.inserted, "deferred": self.deferred, "duplicates": self.duplicates,
            "digested": self.digested, "failed": self.failed, "suppressed": dict(self.suppressed),
        }


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def _age_on(birth: dt.date, day: dt.date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def _period_start(frequency: str, day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday()) if frequency == Frequency.WEEKLY else day


@dataclass
class _Facts:
    """Everything the rules need about one chunk, loaded with a fixed number of queries."""

    users: dict[int, tuple[bool, str]]
    staff: dict[int, int]  # user id -> district id (staff are not subject to family quiet hours)
    profiles: dict[int, tuple[str, str]]  # user id -> (language, email status)
    prefs: dict[tuple[int, str, str], str]
    students: dict[int, dict]
    links: dict[tuple[int, int], tuple[bool, bool, str]]
    muted: set[tuple[int, int]]
    with_device: set[int]
    districts: dict[int, District]


def _load_facts(chunk: list[NotificationRequest], default_district_id: int | None) -> _Facts:
    recipient_ids = {r.recipient_id for r in chunk}
    student_ids = {r.student_id for r in chunk if r.student_id}
    section_ids = {r.section_id for r in chunk if r.section_id}
    push_ids = {r.recipient_id for r in chunk if r.channel == Channel.PUSH}
    categories = {r.category for r in chunk}

    users = {
        uid: (active, email or "", is_staff)
        for uid, active, email, is_staff in User.objects.filter(id__in=recipient_ids).values_list(
            "id", "is_active", "email", "is_staff"
        )
    }
    staff = dict(StaffProfile.objects.filter(user_id__in=recipient_ids).values_list("user_id", "district_id"))
    staff.update({uid: staff.get(uid) for uid, (_, _, is_staff) in users.items() if is_staff and uid not in staff})
    profiles = {
        uid: (lang, status)
        for uid, lang, status in RecipientProfile.objects.filter(user_id__in=recipient_ids).values_list(
            "user_id", "language", "email_status"
        )
    }
    prefs = {
        (uid, cat, ch): freq
        for uid, cat, ch, freq in NotificationPreference.objects.filter(
            user_id__in=recipient_ids, category__in=categories
        ).values_list("user_id", "category", "channel", "frequency")
    }
    students = {}
    links = {}
    muted = set()
    if student_ids:
        students = {
            row["id"]: row
            for row in Student.objects.filter(id__in=student_ids).values(
                "id", "birth_date", "consents_to_guardian_access", "user_id", "first_name", "school__district_id"
            )
        }
        links = {
            (g, s): (revoked, dependent, lang)
            for g, s, revoked, dependent, lang in GuardianLink.objects.filter(
                student_id__in=student_ids, guardian_id__in=recipient_ids
            ).values_list("guardian_id", "student_id", "access_revoked", "is_dependent_claim", "preferred_language")
        }
        if section_ids:
            muted = set(
                SectionEnrollment.objects.filter(
                    student_id__in=student_ids, section_id__in=section_ids, notifications_muted=True
                ).values_list("student_id", "section_id")
            )
    with_device = set()
    if push_ids:
        with_device = set(
            DeviceToken.objects.filter(user_id__in=push_ids, is_active=True).values_list("user_id", flat=True).distinct()
        )
    district_ids = {s["school__district_id"] for s in students.values()} | {d for d in staff.values() if d}
    if default_district_id:
        district_ids.add(default_district_id)
    districts = District.objects.in_bulk(district_ids) if district_ids else {}
    return _Facts(users, staff, profiles, prefs, students, links, muted, with_device, districts)


@transaction.atomic
def _enqueue_chunk(
    chunk: list[NotificationRequest], *, now: dt.datetime, job_run_id: int | None,
    default_district_id: int | None, summary: EnqueueSummary,
) -> None:
    # 1. Drop in-batch repeats and keys already in the outbox (one query).
    unique: dict[str, NotificationRequest] = {}
    for r in chunk:
        if r.dedupe_key in unique:
            summary.duplicates += 1
        else:
            unique[r.dedupe_key] = r
    existing = set(Notification.objects.filter(dedupe_key__in=list(unique)).values_list("dedupe_key", flat=True))
    summary.duplicates += len(existing)
    todo = [r for k, r in unique.items() if k not in existing]
    if not todo:
        return

    # 2. Load the facts the rules need (a fixed number of queries for the whole chunk).
    facts = _load_facts(todo, default_district_id)
    default_district = facts.districts.get(default_district_id) if default_district_id else None

    rows: list[Notification] = []
    items: dict[tuple, DigestItem] = {}
    for r in todo:
        user = facts.users.get(r.recipient_id)
        if user is None:
            # No row can point at a user who does not exist; count it so the job sees it.
            summary.suppressed[Reason.RECIPIENT_MISSING] += 1
            continue
        is_active, email, _ = user
        student = facts.students.get(r.student_id) if r.student_id else None
        link = facts.links.get((r.recipient_id, r.student_id)) if r.student_id else None
        is_staff = r.recipient_id in facts.staff
        district = facts.districts.get(student["school__district_id"]) if student else None
        district = district or facts.districts.get(facts.staff.get(r.recipient_id)) or default_district
        zone = district.zone if district else zoneinfo.ZoneInfo("UTC")
        today = quiet_hours.local_date(now, zone)
        emergency = r.category in EMERGENCY_CATEGORIES
        if link is not None:
            language = link[2]
        else:
            language = facts.profiles.get(r.recipient_id, ("en", ""))[0]
        language = language if language in SUPPORTED_LANGUAGES else "en"
        context = dict(r.context)
        if student:
            context.setdefault("student_first_name", student["first_name"])

        # 3. The rules, in order: the first that applies decides.
        status, reason = Status.PENDING, ""
        frequency = Frequency.IMMEDIATELY
        if r.category not in _CATEGORIES:
            status, reason = Status.FAILED, f"unknown category {r.category[:60]!r}"
        elif not is_active:
            status, reason = Status.SUPPRESSED, Reason.RECIPIENT_INACTIVE
        elif link is not None and link[0]:
            status, reason = Status.SUPPRESSED, Reason.GUARDIAN_REVOKED
        elif (
            link is not None and student and _age_on(student["birth_date"], today) >= 18
            and not student["consents_to_guardian_access"] and not link[1]
        ):
            status, reason = Status.SUPPRESSED, Reason.ADULT_NO_CONSENT
        elif (
            r.section_id and student and student["user_id"] == r.recipient_id
            and (r.student_id, r.section_id) in facts.muted and not emergency
        ):
            status, reason = Status.SUPPRESSED, Reason.CLASS_MUTED
        elif r.channel == Channel.EMAIL and not email:
            status, reason = Status.SUPPRESSED, Reason.NO_EMAIL
        elif r.channel == Channel.EMAIL and facts.profiles.get(r.recipient_id, ("", ""))[1] == RecipientProfile.EmailStatus.BOUNCING:
            status, reason = Status.SUPPRESSED, Reason.EMAIL_BOUNCING
        elif r.channel == Channel.PUSH and r.recipient_id not in facts.with_device:
            status, reason = Status.SUPPRESSED, Reason.NO_DEVICE
        elif not emergency:
            frequency = facts.prefs.get((r.recipient_id, r.category, r.channel)) or default_frequency(r.category, r.channel)
            if frequency == Frequency.NEVER:
                status, reason = Status.SUPPRESSED, Reason.PREFERENCE_NEVER

        family = not is_staff
        if status == Status.PENDING and frequency in (Frequency.DAILY, Frequency.WEEKLY):
            period = _period_start(frequency, today)
            key = (r.recipient_id, r.channel, frequency, period, r.object_key or r.dedupe_key, r.event or "")
            summary.digested += 1
            items[key] = DigestItem(
                recipient_id=r.recipient_id, channel=r.channel, frequency=frequency, period_start=period,
                object_key=key[4][:120], event=key[5][:40], category=r.category, template=r.template,
                context=context, student_id=r.student_id, district=district, language=language,
                quiet_hours=family, job_run_id=job_run_id, updated_at=now,
            )
            continue

        send_after = now
        if status == Status.PENDING and family and not emergency and district is not None:
            send_after = quiet_hours.next_window_start(
                now, zone, district.notify_window_start, district.notify_window_end
            )
            if send_after > now:
                status = Status.DEFERRED
                reason = f"quiet hours until {send_after.astimezone(zone):%Y-%m-%d %H:%M %Z}"
        if status in (Status.PENDING, Status.DEFERRED):
            summary.inserted += 1
            summary.deferred += status == Status.DEFERRED
        elif status == Status.FAILED:
            summary.failed += 1
        else:
            summary.suppressed[reason] += 1
        rows.append(
            Notification(
                recipient_id=r.recipient_id, channel=r.channel, category=r.category[:30], priority=r.priority,
                template=r.template[:100], context=context, dedupe_key=r.dedupe_key, status=status,
                status_reason=reason, send_after=send_after, job_run_id=job_run_id, student_id=r.student_id,
                district=district, quiet_hours=family and not emergency, language=language,
            )
        )

    # 4. Write: one insert for the outbox (a concurrent enqueue of the same key loses the
    #    race quietly), one upsert for digest items (the newest item about an object wins).
    if rows:
        Notification.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
    if items:
        DigestItem.objects.bulk_create(
            list(items.values()), batch_size=1000, update_conflicts=True,
            unique_fields=["recipient", "channel", "frequency", "period_start", "object_key", "event"],
            update_fields=["category", "template", "context", "student", "district", "language", "quiet_hours", "job_run_id", "updated_at"],
        )


def notifications_enqueue(
    requests: Iterable[NotificationRequest], *, job_run_id: int | None = None, district_id: int | None = None,
    now: dt.datetime | None = None, chunk_size: int = ENQUEUE_CHUNK,
) -> EnqueueSummary:
    """Queue messages for delivery, applying every family rule; idempotent by dedupe key.

    ``requests`` may be a generator: it is consumed in chunks of ``chunk_size`` and each
    chunk is one transaction, so memory stays flat and a crash mid-way is repaired by
    re-running (rows already written are duplicates the second time). ``district_id`` is the
    district whose zone and quiet hours apply to requests not about a student (staff
    district and the student's school district are used when known).
    """
    now = now or timezone.now()
    summary = EnqueueSummary()
    for chunk in _chunks(requests, chunk_size):
        _enqueue_chunk(chunk, now=now, job_run_id=job_run_id, default_district_id=district_id, summary=summary)
    return summary


# --- digests -----------------------------------------------------------------------------

@dataclass
class AssembleSummary:
    digests: int = 0
    items: int = 0
    duplicates: int = 0
    dropped_revoked: int = 0


def digest_dedupe_key(*, frequency: str, period_start: dt.date, recipient_id: int, channel: str) -> str:
    return f"digest:{frequency}:{period_start.isoformat()}:{recipient_id}:{channel}"


def _closed_before(frequency: str, today: dt.date) -> dt.date:
    """Periods starting before this date have ended by ``today``."""
    return _period_start(frequency, today) if frequency == Frequency.WEEKLY else today


def digests_assemble(
    *, frequency: str, now: dt.datetime | None = None, job_run_id: int | None = None, recipients_per_pass: int = 500,
) -> AssembleSummary:
    """Turn the open digest items of every closed period into one message per recipient,
    channel and period, sectioned per child. Idempotent: the message's dedupe key is
    ``digest:<frequency>:<period start>:<recipient>:<channel>`` and items are marked with it.

    Steps per district (each has its own "today"): 1. pick up to ``recipients_per_pass``
    recipients with open items in closed periods; 2. read their items (one query), drop items
    about a student whose guardian link was revoked since; 3. insert the digests and link the
    items (bulk); repeat. Memory is bounded by one pass.
    """
    if frequency not in (Frequency.DAILY, Frequency.WEEKLY):
        raise ValueError(f"frequency must be daily or weekly, not {frequency!r}")
    now = now or timezone.now()
    summary = AssembleSummary()
    district_ids = list(
        DigestItem.objects.filter(frequency=frequency, notification__isnull=True).values_list("district_id", flat=True).distinct()
    )
    districts = District.objects.in_bulk([d for d in district_ids if d])
    for district_id in district_ids:
        district = districts.get(district_id)
        zone = district.zone if district else zoneinfo.ZoneInfo("UTC")
        cutoff = _closed_before(frequency, quiet_hours.local_date(now, zone))
        last_recipient = 0
        while True:
            with transaction.atomic():
                last_recipient, done = _assemble_pass(
                    frequency=frequency, district=district, cutoff=cutoff, now=now, job_run_id=job_run_id,
                    after_recipient=last_recipient, limit=recipients_per_pass, summary=summary,
                )
            if done:
                break
    return summary


def _assemble_pass(*, frequency, district, cutoff, now, job_run_id, after_recipient, limit, summary) -> tuple[int, bool]:
    open_items = DigestItem.objects.filter(
        frequency=frequency, notification__isnull=True, period_start__lt=cutoff,
        district=district, recipient_id__gt=after_recipient,
    )
    recipients = list(open_items.order_by("recipient_id").values_list("recipient_id", flat=True).distinct()[:limit])
    if not recipients:
        return after_recipient, True
    revoked = GuardianLink.objects.filter(guardian_id=OuterRef("recipient_id"), student_id=OuterRef("student_id"), access_revoked=True)
    rows = list(
        open_items.filter(recipient_id__in=recipients)
        .annotate(revoked=Exists(revoked))
        .order_by("recipient_id", "channel", "period_start", "student_id", "category", "updated_at", "id")
        .values(
            "id", "recipient_id", "channel", "period_start", "student_id", "student__first_name", "category",
            "template", "context", "language", "quiet_hours", "revoked",
        )
    )
    notifications: list[Notification] = []
    members: dict[str, list[int]] = {}
    for (recipient_id, channel, period), group in itertools.groupby(rows, key=lambda r: (r["recipient_id"], r["channel"], r["period_start"])):
        group = list(group)
        kept = [g for g in group if not g["revoked"]]
        summary.dropped_revoked += len(group) - len(kept)
        key = digest_dedupe_key(frequency=frequency, period_start=period, recipient_id=recipient_id, channel=channel)
        members[key] = [g["id"] for g in group]
        if not kept:
            continue
        children = []
        for student_id, lines in itertools.groupby(kept, key=lambda g: g["student_id"]):
            lines = list(lines)
            children.append({
                "student_id": student_id,
                "first_name": lines[0]["student__first_name"] or "",
                "items": [{"template": g["template"], "category": g["category"], **g["context"]} for g in lines],
            })
        language = kept[0]["language"]
        family = kept[0]["quiet_hours"]
        send_after, status, reason = now, Status.PENDING, ""
        if family and district is not None:
            send_after = quiet_hours.next_window_start(now, district.zone, district.notify_window_start, district.notify_window_end)
            if send_after > now:
                status = Status.DEFERRED
                reason = f"quiet hours until {send_after.astimezone(district.zone):%Y-%m-%d %H:%M %Z}"
        categories = {g["category"] for g in kept}
        notifications.append(Notification(
            recipient_id=recipient_id, channel=channel,
            category=categories.pop() if len(categories) == 1 else Category.GRADE_DIGEST,
            template="digest", dedupe_key=key, status=status, status_reason=reason, send_after=send_after,
            context={
                "frequency": frequency, "period_start": period.isoformat(), "children": children,
                "item_count": len(kept), "child_names": [c["first_name"] for c in children],
            },
            job_run_id=job_run_id, district=district, quiet_hours=family, language=language,
        ))
        summary.items += len(kept)
    before = len(notifications)
    Notification.objects.bulk_create(notifications, ignore_conflicts=True, batch_size=500)
    ids = dict(Notification.objects.filter(dedupe_key__in=list(members)).values_list("dedupe_key", "id"))
    summary.digests += before
    # A digest that existed already (a re-run after a crash between insert and marking) is
    # only re-linked; items of groups left empty (all revoked) are closed with no message.
    updates = [DigestItem(id=item_id, notification_id=ids.get(key)) for key, item_ids in members.items() for item_id in item_ids]
    DigestItem.objects.bulk_update(updates, ["notification"], batch_size=1000)
    if any(ids.get(k) is None for k in members):
        # Close revoked-only groups so they are not picked up forever: delete their items.
        DigestItem.objects.filter(id__in=[i for k, v in members.items() if ids.get(k) is None for i in v]).delete()
    return recipients[-1], len(recipients) < limit


# --- resend and channel health -------------------------------------------------------------

@transaction.atomic
def notifications_resend(*, notification_ids: Iterable[int], now: dt.datetime | None = None) -> int:
    """Put failed messages back in the queue (admin's "resend failed"). Only failed rows
    move; attempts restart so the backoff starts over. Returns how many were re-queued."""
    now = now or timezone.now()
    return Notification.objects.filter(id__in=list(notification_ids), status=Status.FAILED).update(
        status=Status.PENDING, status_reason="resend requested", attempts=0, send_after=now,
        claimed_at=None, claimed_by="", error="",
    )


def recipient_mark_email_bouncing(*, user_ids: Iterable[int], reason: str, now: dt.datetime | None = None) -> None:
    """Record a permanent email failure: later enqueues skip this person's email channel."""
    now = now or timezone.now()
    user_ids = set(user_ids)
    if not user_ids:
        return
    RecipientProfile.objects.bulk_create(
        [RecipientProfile(user_id=u, email_status=RecipientProfile.EmailStatus.BOUNCING,
                          email_status_reason=reason[:200], email_status_at=now) for u in user_ids],
        update_conflicts=True, unique_fields=["user"],
        update_fields=["email_status", "email_status_reason", "email_status_at"],
    )
