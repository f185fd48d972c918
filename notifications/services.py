"""Writes to the outbox: enqueue (the jobs' one entry point), digest assembly, resend, and
the channel-health marks delivery sets.

Enqueue is set-based: for each chunk of requests it runs a fixed number of queries (about a
dozen, whatever the chunk size), decides every request in memory, then writes with one
insert for outbox rows (``ON CONFLICT (dedupe_key) DO NOTHING``) and, for digests, one
insert of the accepted dedupe keys (``DigestDedupeKey``, which outlives the items that
assembly deletes) and one upsert of the items whose key was new. On PostgreSQL the reads pass ids as one array (``= ANY(%s)``) and the writes are
``INSERT ... SELECT FROM UNNEST(...)`` statements (see ``_unnest_insert``); on SQLite the
ORM's ``__in`` and ``bulk_create``.

Dedupe key conventions (jobs): ``<job or kind>:<slot or object>:<recipient id>:<channel>``,
e.g. ``iep-reminder:<iep id>:<offset>:<user id>:email``; the same slot re-run gives the same
keys, so it inserts nothing new. Digests: ``digest:<daily|weekly>:<period start>:<user>:<channel>``.
"""
from __future__ import annotations

import datetime as dt
import itertools
import json
import zoneinfo
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from django.contrib.auth import get_user_model
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, models, transaction
from django.db.models import Exists, F, Lookup, OuterRef, Q, Value
from django.utils import timezone

from notifications import counters, quiet_hours
from notifications.models import (
    EMERGENCY_CATEGORIES,
    Category,
    Channel,
    DigestDedupeKey,
    DigestItem,
    Frequency,
    Notification,
    NotificationPreference,
    Priority,
    RecipientProfile,
    SmsConsentEvent,
    Status,
)
from skillcore import held_messages
from students.models import DeviceToken, District, GuardianLink, SectionEnrollment, StaffProfile, Student

User = get_user_model()

SUPPORTED_LANGUAGES = ("en", "es")
ENQUEUE_CHUNK = 2000
# How long a dedupe key accepted into a digest is remembered. Far longer than any retry or
# catch-up window of a job slot (days), short enough that the table stays small.
DIGEST_KEY_RETENTION_DAYS = 60

_CATEGORIES = {c.value for c in Category}
_CHANNELS = {c.value for c in Channel}
_PRIORITIES = {p.value for p in Priority}


class Reason:
    """Why a request was not queued for delivery (Notification.status_reason, summary keys)."""

    RECIPIENT_MISSING = "recipient-missing"
    RECIPIENT_INACTIVE = "recipient-inactive"
    GUARDIAN_REVOKED = GuardianLink.REVOKED
    ADULT_NO_CONSENT = GuardianLink.ADULT_NO_CONSENT
    CLASS_MUTED = "class-muted"
    PREFERENCE_NEVER = "preference-never"
    NO_EMAIL = "no-email-address"
    EMAIL_BOUNCING = "email-bouncing"
    NO_DEVICE = "no-active-device"
    NO_MOBILE = "no-mobile-number"  # RecipientProfile.sms_allows gives these three
    SMS_OPTED_OUT = "sms-opted-out"
    SMS_NO_CONSENT = "sms-no-consent"


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


class _Any(Lookup):
    lookup_name = "any"

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} = ANY({rhs})", [*lhs_params, *rhs_params]


class _ArrayParam(Value):
    """A list of ids or keys as ONE text parameter: the array's literal for integers, a
    JSON document for strings. Profiled at 2,000 messages a chunk, passing the list itself
    cost a third of the enqueue's Python time: Django's ArrayField prepares every element
    (12,000 calls a chunk) and psycopg then quotes every element in Python, a regex per
    string; one string is escaped once, in C."""

    def as_sql(self, compiler, connection):
        values = [v for v in self.value if v is not None]  # "= ANY" never matches NULL anyway
        if values and isinstance(values[0], str):
            return "ARRAY(SELECT jsonb_array_elements_text(%s::jsonb))", [json.dumps(values)]
        return "%s::bigint[]", ["{" + ",".join(str(int(v)) for v in values) + "}"]


def _among(field: str, values):
    """``field IN values``. On PostgreSQL as ``field = ANY(%s)`` with one array parameter:
    psycopg quotes a 2,000-element IN list value by value (~16 ms); one array costs ~4 ms,
    and one text parameter holding the array (``_ArrayParam``) less than 1 ms."""
    values = list(values)
    if connection.vendor == "postgresql":
        from django.contrib.postgres.fields import ArrayField

        kind = models.TextField() if values and isinstance(values[0], str) else models.BigIntegerField()
        return _Any(F(field), _ArrayParam(values, output_field=ArrayField(kind)))
    return Q(**{f"{field}__in": values})


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def _period_start(frequency: str, day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday()) if frequency == Frequency.WEEKLY else day


# --- enqueue: the facts a chunk needs, who each request reaches, the rules, the write -----

class _Recipient(NamedTuple):
    is_active: bool
    email: str
    is_staff: bool


class _Profile(NamedTuple):
    language: str
    email_status: str
    mobile_number: str = ""
    sms_consent_at: dt.datetime | None = None
    sms_opted_out_at: dt.datetime | None = None


_NO_PROFILE = _Profile(language="en", email_status="")


class _StudentFacts(NamedTuple):
    """The student a request is about (the columns of ``_load_facts``'s read, in order)."""

    id: int
    birth_date: dt.date
    consents_to_guardian_access: bool
    user_id: int | None
    first_name: str
    district_id: int


class _LinkFacts(NamedTuple):
    """The recipient's guardian link to the student a request is about."""

    access_revoked: bool
    is_dependent_claim: bool
    language: str

    def notice_bar_on(self, student: _StudentFacts, day: dt.date) -> str | None:
        """``GuardianLink.notice_bar_on`` on the facts read for the whole chunk."""
        return GuardianLink.notice_bar(
            access_revoked=self.access_revoked, is_dependent_claim=self.is_dependent_claim,
            birth_date=student.birth_date, student_consents=student.consents_to_guardian_access, day=day,
        )


@dataclass
class _Facts:
    """Everything the rules need about one chunk, loaded with a fixed number of queries."""

    users: dict[int, _Recipient]
    staff: dict[int, int | None]  # user id -> district id (staff are not subject to family quiet hours)
    profiles: dict[int, _Profile]
    prefs: dict[tuple[int, str, str], str]  # (user id, category, channel) -> frequency chosen
    students: dict[int, _StudentFacts]
    links: dict[tuple[int, int], _LinkFacts]  # (guardian id, student id)
    muted: set[tuple[int, int]]  # (student id, section id) the student muted
    with_device: set[int]  # push recipients with an active device
    districts: dict[int, District]

    def profile(self, user_id: int) -> _Profile:
        return self.profiles.get(user_id, _NO_PROFILE)


def _load_facts(chunk: list[NotificationRequest], default_district_id: int | None) -> _Facts:
    recipient_ids = {r.recipient_id for r in chunk}
    student_ids = {r.student_id for r in chunk if r.student_id}
    section_ids = {r.section_id for r in chunk if r.section_id}
    push_ids = {r.recipient_id for r in chunk if r.channel == Channel.PUSH}
    categories = {r.category for r in chunk}

    users = {
        uid: _Recipient(active, email or "", is_staff)
        for uid, active, email, is_staff in User.objects.filter(_among("id", recipient_ids)).values_list(
            "id", "is_active", "email", "is_staff"
        )
    }
    staff = dict(StaffProfile.objects.filter(_among("user_id", recipient_ids)).values_list("user_id", "district_id"))
    staff.update({uid: staff.get(uid) for uid, user in users.items() if user.is_staff and uid not in staff})
    profiles = {
        row[0]: _Profile._make(row[1:])
        for row in RecipientProfile.objects.filter(_among("user_id", recipient_ids)).values_list(
            "user_id", "language", "email_status", "mobile_number", "sms_consent_at", "sms_opted_out_at"
        )
    }
    prefs = {
        (uid, cat, ch): freq
        for uid, cat, ch, freq in NotificationPreference.objects.filter(
            _among("user_id", recipient_ids), category__in=categories
        ).values_list("user_id", "category", "channel", "frequency")
    }
    students: dict[int, _StudentFacts] = {}
    links: dict[tuple[int, int], _LinkFacts] = {}
    muted: set[tuple[int, int]] = set()
    if student_ids:
        students = {
            row[0]: _StudentFacts._make(row)
            for row in Student.objects.filter(_among("id", student_ids)).values_list(*_StudentFacts._fields[:-1], "school__district_id")
        }
        links = {
            (g, s): _LinkFacts(revoked, dependent, lang)
            for g, s, revoked, dependent, lang in GuardianLink.objects.filter(
                _among("student_id", student_ids), _among("guardian_id", recipient_ids)
            ).values_list("guardian_id", "student_id", "access_revoked", "is_dependent_claim", "preferred_language")
            if s in students  # a link is judged with its student's facts; none without them
        }
        if section_ids:
            muted = set(
                SectionEnrollment.objects.filter(
                    _among("student_id", student_ids), _among("section_id", section_ids), notifications_muted=True
                ).values_list("student_id", "section_id")
            )
    with_device = set()
    if push_ids:
        with_device = set(
            DeviceToken.objects.filter(_among("user_id", push_ids), is_active=True).values_list("user_id", flat=True).distinct()
        )
    district_ids = {s.district_id for s in students.values()} | {d for d in staff.values() if d}
    if default_district_id:
        district_ids.add(default_district_id)
    districts = District.objects.in_bulk(district_ids) if district_ids else {}
    return _Facts(users, staff, profiles, prefs, students, links, muted, with_device, districts)


@dataclass(frozen=True)
class _Audience:
    """Whom one request reaches, as the rules see it."""

    recipient: _Recipient
    student: _StudentFacts | None  # whom the message is about
    link: _LinkFacts | None  # set when the recipient is one of that student's guardians
    is_staff: bool  # staff get work notices: no family quiet hours
    district: District | None  # the student's, else the staff member's, else the caller's
    today: dt.date  # the district's local date
    language: str

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return self.district.zone if self.district else zoneinfo.ZoneInfo("UTC")


def _audience(r: NotificationRequest, facts: _Facts, *, now: dt.datetime, default_district: District | None) -> _Audience | None:
    """None when the recipient does not exist."""
    recipient = facts.users.get(r.recipient_id)
    if recipient is None:
        return None
    student = facts.students.get(r.student_id) if r.student_id else None
    link = facts.links.get((r.recipient_id, r.student_id)) if r.student_id else None
    district = facts.districts.get(student.district_id) if student else None
    district = district or facts.districts.get(facts.staff.get(r.recipient_id)) or default_district
    zone = district.zone if district else zoneinfo.ZoneInfo("UTC")
    # A guardian reads in the language of their link to this child; anyone else in their own.
    language = link.language if link is not None else facts.profile(r.recipient_id).language
    return _Audience(
        recipient=recipient, student=student, link=link, is_staff=r.recipient_id in facts.staff, district=district,
        today=quiet_hours.local_date(now, zone), language=language if language in SUPPORTED_LANGUAGES else "en",
    )


class _Verdict(NamedTuple):
    status: str
    reason: str = ""
    frequency: str = Frequency.IMMEDIATELY


def _verdict(r: NotificationRequest, who: _Audience, facts: _Facts) -> _Verdict:
    """The rules, in order: the first that applies decides."""
    emergency = r.category in EMERGENCY_CATEGORIES
    if r.category not in _CATEGORIES:
        return _Verdict(Status.FAILED, f"unknown category {r.category[:60]!r}")
    if not who.recipient.is_active:
        return _Verdict(Status.SUPPRESSED, Reason.RECIPIENT_INACTIVE)
    if who.link is not None:
        bar = who.link.notice_bar_on(who.student, who.today)  # revoked, or an adult who did not consent
        if bar is not None:
            return _Verdict(Status.SUPPRESSED, bar)
    if (
        r.section_id and who.student and who.student.user_id == r.recipient_id
        and (r.student_id, r.section_id) in facts.muted and not emergency
    ):
        return _Verdict(Status.SUPPRESSED, Reason.CLASS_MUTED)
    if r.channel == Channel.EMAIL and not who.recipient.email:
        return _Verdict(Status.SUPPRESSED, Reason.NO_EMAIL)
    if r.channel == Channel.EMAIL and facts.profile(r.recipient_id).email_status == RecipientProfile.EmailStatus.BOUNCING:
        return _Verdict(Status.SUPPRESSED, Reason.EMAIL_BOUNCING)
    if r.channel == Channel.PUSH and r.recipient_id not in facts.with_device:
        return _Verdict(Status.SUPPRESSED, Reason.NO_DEVICE)
    if r.channel == Channel.SMS:
        p = facts.profile(r.recipient_id)
        why = RecipientProfile.sms_allows(category=r.category, mobile_number=p.mobile_number,
                                          consent_at=p.sms_consent_at, opted_out_at=p.sms_opted_out_at)
        if why is not None:
            return _Verdict(Status.SUPPRESSED, why)
    frequency = NotificationPreference.frequency_applying(
        category=r.category, channel=r.channel, chosen=facts.prefs.get((r.recipient_id, r.category, r.channel)),
    )
    if frequency == Frequency.NEVER:
        return _Verdict(Status.SUPPRESSED, Reason.PREFERENCE_NEVER)
    return _Verdict(Status.PENDING, frequency=frequency)


class _DigestLine(NamedTuple):
    dedupe_key: str
    item_key: tuple  # _DIGEST_KEY's values: the newest line about one object and event wins
    row: tuple  # _DIGEST_COLUMNS


def _digest_line(r: NotificationRequest, who: _Audience, frequency: str, context: dict, *,
                 job_run_id: int | None, now: dt.datetime, held: bool = False) -> _DigestLine:
    period = _period_start(frequency, who.today)
    object_key, event = r.object_key or r.dedupe_key, r.event or ""
    return _DigestLine(r.dedupe_key, (r.recipient_id, r.channel, frequency, period, object_key, event), (
        r.recipient_id, r.channel, frequency, period, object_key[:120], event[:40], r.category, r.template,
        context, r.student_id, who.district.pk if who.district else None, who.language, not who.is_staff, job_run_id, now,
        held,
    ))


def _quiet_hours_hold(who: _Audience, *, now: dt.datetime) -> tuple[dt.datetime, str]:
    """(send after, reason): a family message waits for the district's window."""
    d = who.district
    send_after = quiet_hours.next_window_start(now, who.zone, d.notify_window_start, d.notify_window_end)
    if send_after > now:
        return send_after, f"quiet hours until {send_after.astimezone(who.zone):%Y-%m-%d %H:%M %Z}"
    return send_after, ""


def _count(summary: EnqueueSummary, status: str, reason: str) -> None:
    if status in (Status.PENDING, Status.DEFERRED, Status.HELD):  # held: queued, sent when its run is released
        summary.inserted += 1
        summary.deferred += status == Status.DEFERRED
    elif status == Status.FAILED:
        summary.failed += 1
    else:
        summary.suppressed[reason] += 1


def _new_requests(chunk: list[NotificationRequest], summary: EnqueueSummary) -> list[NotificationRequest]:
    """The chunk without in-batch repeats and keys already in the outbox or already accepted
    into a digest (one query: the digest items themselves are deleted at assembly, so a re-run
    after it would otherwise put the same line in the next digest)."""
    unique: dict[str, NotificationRequest] = {}
    for r in chunk:
        if r.dedupe_key in unique:
            summary.duplicates += 1
        else:
            unique[r.dedupe_key] = r
    existing = set(
        # order_by(): no Meta.ordering in a compound statement (SQLite refuses it).
        Notification.objects.filter(_among("dedupe_key", unique)).order_by().values_list("dedupe_key", flat=True).union(
            DigestDedupeKey.objects.filter(_among("dedupe_key", unique)).values_list("dedupe_key", flat=True), all=True
        )
    )
    summary.duplicates += len(existing)
    return [r for k, r in unique.items() if k not in existing]


@transaction.atomic
def _enqueue_chunk(
    chunk: list[NotificationRequest], *, now: dt.datetime, job_run_id: int | None,
    default_district_id: int | None, summary: EnqueueSummary,
) -> None:
    # 1. Drop repeats and keys seen before.
    todo = _new_requests(chunk, summary)
    if not todo:
        return

    # 2. Load the facts the rules need (a fixed number of queries for the whole chunk).
    facts = _load_facts(todo, default_district_id)
    # Inside a job run the engine holds the run's messages until the run ends (the
    # blast-radius guard, skillcore/held_messages.py); emergencies are never held.
    staged = job_run_id is not None and held_messages.staging_run() == job_run_id
    default_district = facts.districts.get(default_district_id) if default_district_id else None

    # 3. Decide each request in memory: an outbox row, or a digest line.
    rows: list[tuple] = []  # _OUTBOX_COLUMNS
    lines: list[_DigestLine] = []  # in input order
    for r in todo:
        who = _audience(r, facts, now=now, default_district=default_district)
        if who is None:
            # No row can point at a user who does not exist; count it so the job sees it.
            summary.suppressed[Reason.RECIPIENT_MISSING] += 1
            continue
        context = dict(r.context)
        if who.student:
            context.setdefault("student_first_name", who.student.first_name)
        status, reason, frequency = _verdict(r, who, facts)
        held = staged and r.category not in EMERGENCY_CATEGORIES
        if status == Status.PENDING and frequency in (Frequency.DAILY, Frequency.WEEKLY):
            lines.append(_digest_line(r, who, frequency, context, job_run_id=job_run_id, now=now, held=held))
            continue
        family_notice = not who.is_staff and r.category not in EMERGENCY_CATEGORIES
        send_after = now
        if status == Status.PENDING and family_notice and who.district is not None:
            send_after, reason = _quiet_hours_hold(who, now=now)
            if reason:
                status = Status.DEFERRED
        if held and status in (Status.PENDING, Status.DEFERRED):
            # Quiet hours are applied again when the run's messages are released.
            status, reason = Status.HELD, f"held until run #{job_run_id} ends"
        _count(summary, status, reason)
        rows.append((
            r.recipient_id, r.channel, r.category[:30], r.priority, r.template[:100], context, r.dedupe_key,
            status, reason[:200], send_after, job_run_id, r.student_id, who.district.pk if who.district else None,
            family_notice, who.language,
        ))

    # 4. Write: one insert for the outbox (a concurrent enqueue of the same key loses the
    #    race quietly); for digests, one insert of the dedupe keys, then one upsert of the
    #    lines whose key was new (the newest line about an object wins).
    if rows:
        # Rows refused as failed are a notifications_failed_total outcome: counted in this
        # transaction, as written (not as decided: a concurrent enqueue may own the key).
        counters.failed_at_enqueue(_insert_outbox(rows))
    if lines:
        accepted = _accept_digest_keys([line.dedupe_key for line in lines], now=now)
        latest = {line.item_key: line.row for line in lines if line.dedupe_key in accepted}
        summary.digested += len(accepted)
        summary.duplicates += len(lines) - len(accepted)
        if latest:
            _upsert_digest_items(list(latest.values()))


_OUTBOX_COLUMNS = (
    ("recipient_id", "bigint"), ("channel", "varchar"), ("category", "varchar"), ("priority", "varchar"),
    ("template", "varchar"), ("context", "jsonb"), ("dedupe_key", "varchar"), ("status", "varchar"),
    ("status_reason", "varchar"), ("send_after", "timestamptz"), ("job_run_id", "bigint"), ("student_id", "bigint"),
    ("district_id", "bigint"), ("quiet_hours", "boolean"), ("language", "varchar"), ("created_at", "timestamptz"),
)


def _unnest_insert(table: str, columns: tuple, rows: list[tuple], *, tail: str, constants: dict | None = None,
                   fetch: bool = False):
    """PostgreSQL: insert ``rows`` with one ``INSERT ... SELECT FROM UNNEST(array per column)``.

    A handful of array parameters instead of ~20 per row, which is where the ORM's
    bulk_create spends its time (per-value preparation and quoting). JSON columns travel as
    one jsonb document (a JSON array) unpacked in SQL, because psycopg escapes each element
    of a text array with a regex; so do the text columns. Columns come first, in the INSERT's column order,
    which is the shape Django's own bulk_create uses, so the FERPA access trail reads the
    student ids from it the same way. Returns the number of rows written, or with ``fetch``
    the rows of the ``RETURNING`` clause ``tail`` ends with.
    """
    constants = constants or {}
    names = [c for c, _ in columns] + list(constants)
    params, selects = [], []
    for index, (_name, kind) in enumerate(columns):
        values = [row[index] for row in rows]
        if kind == "jsonb":
            params.append(json.dumps(values, cls=DjangoJSONEncoder))
            selects.append("(SELECT array_agg(e ORDER BY i) FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS j(e, i))")
        elif kind == "varchar":
            # Strings travel the same way (profiled: psycopg's per-element quoting of the
            # text arrays was the largest Python cost left in an enqueue). Integer columns
            # stay arrays: the access trail reads the row count and the student ids there.
            params.append(json.dumps(values))
            selects.append("(SELECT array_agg(e ORDER BY i) FROM jsonb_array_elements_text(%s::jsonb) WITH ORDINALITY AS j(e, i))")
        else:
            params.append(values)
            selects.append(f"%s::{kind}[]")
    sql = (
        f'INSERT INTO "{table}" ({", ".join(chr(34) + n + chr(34) for n in names)}) '
        f"SELECT u.*{''.join(', ' + v for v in constants.values())} FROM UNNEST({', '.join(selects)}) AS u {tail}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if fetch else cursor.rowcount


def _insert_outbox(rows: list[tuple], *, ignore_conflicts: bool = False) -> Counter:
    """Insert outbox rows (``_OUTBOX_COLUMNS`` minus created_at), skipping dedupe keys that
    exist: ON CONFLICT DO NOTHING on PostgreSQL. Returns the rows written as failed, per
    channel (for the counters).

    SQLite: bulk_create; without ignore_conflicts for enqueue, because SQLite runs each
    chunk's transaction with the write lock held from BEGIN (IMMEDIATE), so the keys
    checked in step 1 cannot have appeared since, and a plain INSERT is what the access
    trail parses: every row given is written. (Digests, the ignore_conflicts caller, are
    never failed.) PostgreSQL: when some rows are failed (rare: bad input) the INSERT
    returns the channel and status of the rows it wrote, so a row a concurrent enqueue
    wrote first is not counted here too.
    """
    now = timezone.now()
    rows = [(*row, now) for row in rows]
    names = [c for c, _ in _OUTBOX_COLUMNS]
    channel_at, status_at = names.index("channel"), names.index("status")
    failed = Counter(row[channel_at] for row in rows if row[status_at] == Status.FAILED)
    if connection.vendor != "postgresql":
        Notification.objects.bulk_create(
            [Notification(**dict(zip(names, row))) for row in rows], batch_size=500, ignore_conflicts=ignore_conflicts
        )
        return failed
    written = _unnest_insert(
        Notification._meta.db_table, _OUTBOX_COLUMNS, rows,
        tail='ON CONFLICT ("dedupe_key") DO NOTHING' + (' RETURNING "channel", "status"' if failed else ""),
        constants={"attempts": "0", "claimed_by": "''", "provider_message_id": "''", "error": "''"}, fetch=bool(failed),
    )
    return Counter(channel for channel, status in written if status == Status.FAILED) if failed else Counter()


_DIGEST_COLUMNS = (
    ("recipient_id", "bigint"), ("channel", "varchar"), ("frequency", "varchar"), ("period_start", "date"),
    ("object_key", "varchar"), ("event", "varchar"), ("category", "varchar"), ("template", "varchar"),
    ("context", "jsonb"), ("student_id", "bigint"), ("district_id", "bigint"), ("language", "varchar"),
    ("quiet_hours", "boolean"), ("job_run_id", "bigint"), ("updated_at", "timestamptz"), ("held", "boolean"),
)
_DIGEST_KEY = ("recipient_id", "channel", "frequency", "period_start", "object_key", "event")


def _accept_digest_keys(keys: list[str], *, now: dt.datetime) -> set[str]:
    """Record dedupe keys accepted into a digest; return those that were new.

    PostgreSQL: one ``INSERT ... ON CONFLICT DO NOTHING RETURNING``, so a concurrent
    enqueue of the same key (which step 1 could not see yet) loses here and adds no item.
    SQLite: step 1's SELECT already ran inside this chunk's transaction, which holds the
    write lock from BEGIN (IMMEDIATE), so every key left is new; ignore_conflicts anyway.
    """
    if connection.vendor != "postgresql":
        DigestDedupeKey.objects.bulk_create(
            [DigestDedupeKey(dedupe_key=k, created_at=now) for k in keys], batch_size=450, ignore_conflicts=True
        )
        return set(keys)
    with connection.cursor() as cursor:
        cursor.execute(
            f'INSERT INTO "{DigestDedupeKey._meta.db_table}" ("dedupe_key", "created_at") '
            "SELECT k, %s FROM UNNEST(%s::varchar[]) AS k "
            'ON CONFLICT ("dedupe_key") DO NOTHING RETURNING "dedupe_key"',
            [now, keys],
        )
        return {k for (k,) in cursor.fetchall()}


def digest_dedupe_keys_prune(
    *, now: dt.datetime | None = None, older_than: dt.timedelta = dt.timedelta(days=DIGEST_KEY_RETENTION_DAYS),
    batch_size: int = 10_000,
) -> int:
    """Forget digest dedupe keys accepted more than ``older_than`` ago, ``batch_size`` a
    transaction (a month of a district-wide daily digest is millions of keys: one DELETE
    would hold its locks and WAL for all of them). A job re-running a slot older than that
    would add its lines again; no job retries or catches up that far. Returns the count."""
    now = now or timezone.now()
    old = DigestDedupeKey.objects.filter(created_at__lt=now - older_than)
    total = 0
    while True:
        ids = list(old.order_by("created_at", "id").values_list("id", flat=True)[:batch_size])
        if not ids:
            return total
        with transaction.atomic():
            DigestDedupeKey.objects.filter(_among("id", ids)).delete()
        total += len(ids)
        if len(ids) < batch_size:
            return total


def _upsert_digest_items(rows: list[tuple]) -> None:
    """Insert digest items; an item with the same key (same object and event in the same
    period) is replaced by the newer one."""
    if connection.vendor != "postgresql":
        names = [c for c, _ in _DIGEST_COLUMNS]
        DigestItem.objects.bulk_create(
            [DigestItem(**dict(zip(names, row))) for row in rows], batch_size=500, update_conflicts=True,
            unique_fields=["recipient", "channel", "frequency", "period_start", "object_key", "event"],
            update_fields=["category", "template", "context", "student", "district", "language", "quiet_hours", "job_run_id", "updated_at",
                           "held"],
        )
        return
    updates = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c, _ in _DIGEST_COLUMNS if c not in _DIGEST_KEY)
    _unnest_insert(
        DigestItem._meta.db_table, _DIGEST_COLUMNS, rows,
        tail=f'ON CONFLICT ({", ".join(chr(34) + c + chr(34) for c in _DIGEST_KEY)}) DO UPDATE SET {updates}',
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
    dropped_no_consent: int = 0  # the student came of age since, without consenting (FERPA 99.5)


def digest_dedupe_key(*, frequency: str, period_start: dt.date, recipient_id: int, channel: str) -> str:
    return f"digest:{frequency}:{period_start.isoformat()}:{recipient_id}:{channel}"


def _closed_before(frequency: str, today: dt.date) -> dt.date:
    """Periods starting before this date have ended by ``today``."""
    return _period_start(frequency, today) if frequency == Frequency.WEEKLY else today


def digests_assemble(
    *, frequency: str, now: dt.datetime | None = None, job_run_id: int | None = None, recipients_per_pass: int = 500,
) -> AssembleSummary:
    """Turn the digest items of every closed period into one message per recipient,
    channel and period, sectioned per child. Idempotent: the message's dedupe key is
    ``digest:<frequency>:<period start>:<recipient>:<channel>`` and the items are deleted
    with the insert.

    Steps per district (each has its own "today"): 1. pick up to ``recipients_per_pass``
    recipients with open items in closed periods; 2. read their items (one query), drop items
    about a student whose guardian link was revoked since; 3. insert the digests and delete the
    items (two statements); repeat. Memory is bounded by one pass.
    """
    if frequency not in (Frequency.DAILY, Frequency.WEEKLY):
        raise ValueError(f"frequency must be daily or weekly, not {frequency!r}")
    now = now or timezone.now()
    summary = AssembleSummary()
    district_ids = list(
        DigestItem.objects.filter(frequency=frequency).values_list("district_id", flat=True).distinct()
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
        frequency=frequency, period_start__lt=cutoff,
        district=district, recipient_id__gt=after_recipient,
        held=False,  # a held run's lines wait for its release (scheduling/blast_radius.py)
    )
    recipients = list(open_items.order_by("recipient_id").values_list("recipient_id", flat=True).distinct()[:limit])
    if not recipients:
        return after_recipient, True
    # A range, not an id list: the walk index serves it whatever the table statistics say.
    this_pass = open_items.filter(recipient_id__lte=recipients[-1])
    # Who may be told is decided again at assembly, on the day the digest goes out: a link
    # revoked, or a student who turned 18 without consenting, since the item was queued
    # (up to a week for a weekly digest) drops the item. GuardianLink.notice_bar is the rule;
    # its facts come with the rows (three EXISTS and two student columns, no query per row).
    link = GuardianLink.objects.filter(guardian_id=OuterRef("recipient_id"), student_id=OuterRef("student_id"))
    rows = (
        this_pass.annotate(
            revoked=Exists(link.filter(access_revoked=True)), guardian=Exists(link),
            dependent=Exists(link.filter(is_dependent_claim=True)),
        )
        .order_by("recipient_id", "channel", "period_start", "student_id", "category", "updated_at", "id")
        .values_list(
            "recipient_id", "channel", "period_start", "student_id", "student__first_name", "category",
            "template", "context", "language", "quiet_hours", "revoked", "guardian", "dependent",
            "student__birth_date", "student__consents_to_guardian_access",
        )
    )
    today = (now.astimezone(district.zone) if district is not None else now).date()

    def bar(g) -> str | None:
        if not g[11]:  # not this student's guardian (staff, the student): the family rule does not apply
            return None
        return GuardianLink.notice_bar(access_revoked=g[10], is_dependent_claim=g[12], birth_date=g[13],
                                       student_consents=g[14], day=today)

    window = None
    if district is not None:
        window = (district.zone, district.notify_window_start, district.notify_window_end)
    outbox: list[tuple] = []
    for (recipient_id, channel, period), group in itertools.groupby(rows, key=lambda r: (r[0], r[1], r[2])):
        group = list(group)
        bars = [bar(g) for g in group]
        kept = [g for g, why in zip(group, bars) if why is None]
        summary.dropped_revoked += bars.count(GuardianLink.REVOKED)
        summary.dropped_no_consent += bars.count(GuardianLink.ADULT_NO_CONSENT)
        if not kept:
            continue
        children = []
        for student_id, lines in itertools.groupby(kept, key=lambda g: g[3]):
            lines = list(lines)
            children.append({
                "student_id": student_id, "first_name": lines[0][4] or "",
                "items": [{"template": g[6], "category": g[5], **g[7]} for g in lines],
            })
        language, family = kept[0][8], kept[0][9]
        send_after, status, reason = now, Status.PENDING, ""
        if family and window:
            send_after = quiet_hours.next_window_start(now, *window)
            if send_after > now:
                status = Status.DEFERRED
                reason = f"quiet hours until {send_after.astimezone(window[0]):%Y-%m-%d %H:%M %Z}"
        categories = {g[5] for g in kept}
        context = {
            "frequency": frequency, "period_start": period.isoformat(), "children": children,
            "item_count": len(kept), "child_names": [c["first_name"] for c in children],
        }
        outbox.append((
            recipient_id, channel, categories.pop() if len(categories) == 1 else Category.GRADE_DIGEST, Priority.NORMAL,
            "digest", context, digest_dedupe_key(frequency=frequency, period_start=period, recipient_id=recipient_id, channel=channel),
            status, reason, send_after, job_run_id, None, district.pk if district else None, family, language,
        ))
        summary.items += len(kept)
    if outbox:
        # ignore_conflicts: a digest that somehow exists already is left as it is.
        _insert_outbox(outbox, ignore_conflicts=True)
    summary.digests += len(outbox)
    # The pass's items are consumed: delete them in the same transaction as the insert, so
    # a crash leaves both or neither, and a re-run finds nothing to do. (Items of groups left
    # empty by a revocation go too: there is nothing to send them in.)
    this_pass.delete()
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


# --- SMS consent and the STOP/START replies -----------------------------------------------

# Twilio's standard opt-out and opt-in keywords (a reply that is exactly one of them,
# any case): what carriers and Twilio's own Advanced Opt-Out treat as STOP and START.
SMS_STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"})
SMS_START_WORDS = frozenset({"START", "YES", "UNSTOP"})


@transaction.atomic
def recipient_sms_consent_record(*, user_id: int, mobile_number: str, method: str, now: dt.datetime | None = None) -> RecipientProfile:
    """Record a person's mobile number and their consent to non-emergency texts (when and
    how), clearing an earlier STOP: consenting again is opting back in. The number is
    normalised and validated (E.164); a bad number or method raises ValidationError and
    writes nothing. The opt-in is kept in the consent history (SmsConsentEvent)."""
    from django.core.exceptions import ValidationError

    from notifications.models import normalize_mobile_number

    now = now or timezone.now()
    if method not in RecipientProfile.SmsConsentMethod.values:
        raise ValidationError({"sms_consent_method": f"unknown consent method {method!r}"})
    profile, _ = RecipientProfile.objects.select_for_update().get_or_create(user_id=user_id)
    profile.mobile_number = normalize_mobile_number(mobile_number)
    profile.sms_consent_at, profile.sms_consent_method, profile.sms_opted_out_at = now, method, None
    profile.full_clean(exclude=["user"])
    profile.save(update_fields=["mobile_number", "sms_consent_at", "sms_consent_method", "sms_opted_out_at"])
    SmsConsentEvent.objects.create(user_id=user_id, mobile_number=profile.mobile_number,
                                   action=SmsConsentEvent.Action.OPT_IN, method=method, at=now)
    return profile


def sms_consent_history_add(*, user_id: int, mobile_number: str, method: str, at: dt.datetime) -> SmsConsentEvent:
    """Record an opt-in that was written elsewhere (staff editing the recipient profile in
    the admin) in the consent history."""
    return SmsConsentEvent.objects.create(user_id=user_id, mobile_number=mobile_number,
                                          action=SmsConsentEvent.Action.OPT_IN, method=method, at=at)


def sms_reply_keyword(body: str) -> str | None:
    """"stop" or "start" when a text's body is one of the opt-out or opt-in keywords, else None."""
    word = "".join((body or "").split()).upper()
    if word in SMS_STOP_WORDS:
        return "stop"
    if word in SMS_START_WORDS:
        return "start"
    return None


@transaction.atomic
def sms_reply_apply(*, mobile_number: str, keyword: str, now: dt.datetime | None = None) -> int:
    """Apply a STOP or START reply from ``mobile_number`` to every profile with that number
    (a household may share one). STOP: emergencies only from now on (``sms_opted_out_at``);
    messages already queued are held back at delivery too. START: opted back in; a person
    who never consented before has now, by text (method ``text-start``). Each person whose
    state changed gets a row in the consent history. A read, one or two UPDATEs and one
    INSERT whatever the household's size; returns the profiles changed."""
    now = now or timezone.now()
    if keyword not in ("stop", "start"):
        raise ValueError(f"keyword must be stop or start, not {keyword!r}")
    profiles = RecipientProfile.objects.select_for_update().filter(mobile_number=mobile_number)
    if keyword == "stop":
        changing = list(profiles.filter(sms_opted_out_at__isnull=True).values_list("user_id", flat=True))
        RecipientProfile.objects.filter(user_id__in=changing).update(sms_opted_out_at=now)
        action, method = SmsConsentEvent.Action.OPT_OUT, "text-stop"
    else:
        changing = list(profiles.filter(Q(sms_opted_out_at__isnull=False) | Q(sms_consent_at__isnull=True))
                        .values_list("user_id", flat=True))
        RecipientProfile.objects.filter(user_id__in=changing, sms_opted_out_at__isnull=False).update(sms_opted_out_at=None)
        RecipientProfile.objects.filter(user_id__in=changing, sms_consent_at__isnull=True).update(
            sms_consent_at=now, sms_consent_method=RecipientProfile.SmsConsentMethod.TEXT_START)
        action, method = SmsConsentEvent.Action.OPT_IN, RecipientProfile.SmsConsentMethod.TEXT_START
    SmsConsentEvent.objects.bulk_create([
        SmsConsentEvent(user_id=uid, mobile_number=mobile_number, action=action, method=method, at=now) for uid in changing
    ])
    return len(changing)
