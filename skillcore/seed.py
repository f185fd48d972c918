"""The synthetic district generator behind ``manage.py seed_district`` and ``manage.py demo``.

A realistic, deterministic district for demos, tests and load measurements: the same seed
gives the same rows (compare ``district_digest``), whatever the database.

What it builds, and the decisions behind it:
1. The district, its current AcademicSession (the day after Labor Day to the 180th
   instructional day, mid/late June) and a calendar per school. Calendar rows exist for
   weekdays only; weekends have no row. Holidays, breaks, one district-wide snow day and
   0-2 per-school professional-development days are rows with ``is_instructional=False`` and
   a note, so a school has 178-180 instructional days.
2. Schools of about 500 students in three grade bands (elementary K-5, middle 6-8, high
   9-12), each elementary school feeding a middle school and each middle school a high school
   (``School.feeds_into``, where the rollover enrols their top grade); staff as Django users
   in the role groups with a StaffProfile: a principal and counselors (one per 400 students)
   per school, teachers (one per homeroom, or one per five secondary sections), case managers
   (one per 15 IEPs), and district-level staff (district admin, special-education
   coordinators, psychologists, speech pathologists).
3. Students with birth dates that fit their grade (age grade+5 on 1 September; a few
   retained a year, so some seniors are 18 at the start), some mid-year entries and
   transfers, counselors by alphabet, 1-2 guardians (siblings share them) with mixed
   languages, a few revoked by court order, notification preferences and push tokens.
4. Sections: a homeroom for elementary students, 5-7 periods for secondary students;
   2-4 assignments a section a week, published up to a week past ``as_of`` (drafts beyond),
   submissions and grades (posted some days after the due date, never after ``as_of``).
5. Attendance for every enrolled instructional day up to ``as_of``: 10-15% of students
   chronically absent (>= 10% of enrolled days), statuses excused / unexcused / tardy /
   oss / iss, some partial days under half present (which count as absent).
6. About 15% of students with an active IEP (team, services, weekly service logs,
   meetings; annual reviews spread across the year, some overdue; reevaluations every 3
   years since eligibility, kept up to date except where the annual review is overdue too),
   about 3% with a 504 plan (accommodations and their implementers), behaviour incidents.
7. The demo family: the first school's first active student under 18 with an IEP has a
   household that prefers Spanish, and a meeting scheduled ``DEMO_MEETING_LEAD`` days (to the
   next weekday) after ``as_of`` with no notice yet, so the IEP job's first run sends that
   family the meeting notice in Spanish in time (34 CFR 300.322(b)). The household's first
   guardian gets IEP notices immediately (its random preference is drawn, then replaced), and
   every choice above is still drawn from the same streams, so the rest of the district is the
   same as without it.

Determinism: every random choice comes from ``random.Random`` seeded with the seed (one
stream for the district, one per school, so a school does not depend on how much another
consumed). Nothing reads the clock except the default ``as_of``; timestamps a model would set
itself (``auto_now_add``) are written explicitly. Database ids do not feed any choice.

Speed and memory: rows that need their ids back go through ``bulk_create``; the big tables
(attendance, submissions, grades, service logs, enrollments) are streamed per school through
PostgreSQL's COPY (batched ``executemany`` elsewhere), so memory holds one school at a time.
The whole district is written in one transaction: a failure leaves nothing behind.
"""
from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import math
import random
import re
import time
import zoneinfo
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.db.models import Model

from iep.models import (
    ANNUAL_REVIEW_DAYS,
    IEP,
    Accommodation,
    IEPMeeting,
    IEPService,
    IEPTeamMember,
    Section504Plan,
    ServiceLog,
    reevaluation_due_after,
)
from notifications.models import Category, Channel, Frequency, NotificationPreference
from students.models import (
    AcademicSession,
    Assignment,
    AttendanceRecord,
    BehaviorIncident,
    CalendarDay,
    DeviceToken,
    District,
    Grade,
    GuardianLink,
    Role,
    School,
    Section,
    SectionEnrollment,
    StaffProfile,
    Student,
    Submission,
)
from students.zones import zone_problem

User = get_user_model()
UTC = dt.UTC

STUDENTS_PER_SCHOOL = 500
INSTRUCTIONAL_DAYS = 180
MAX_STUDENTS = 1_000_000
SECONDARY_SECTION_SIZE = 28
HOMEROOM_SIZE = 22
UNUSABLE_PASSWORD = "!seeded-no-login"  # "!" prefix: Django treats it as an unusable password

# (band, lowest grade, highest grade, name suffix, code letter)
BANDS = [
    ("elementary", 0, 5, "Elementary School", "E"),
    ("middle", 6, 8, "Middle School", "M"),
    ("high", 9, 12, "High School", "H"),
]
STATE_BY_ZONE = {
    "America/New_York": "NY", "America/Chicago": "IL", "America/Denver": "CO", "America/Phoenix": "AZ",
    "America/Los_Angeles": "CA", "America/Anchorage": "AK", "Pacific/Honolulu": "HI", "America/Detroit": "MI",
}

FEMALE = ["Olivia", "Emma", "Ava", "Sophia", "Isabella", "Mia", "Amelia", "Harper", "Evelyn", "Abigail", "Emily",
          "Sofia", "Camila", "Valentina", "Lucia", "Maria", "Aaliyah", "Zoe", "Chloe", "Grace", "Nora", "Layla",
          "Priya", "Mei", "Fatima", "Ximena", "Hannah", "Leah", "Naomi", "Ruth"]
MALE = ["Liam", "Noah", "Oliver", "Elijah", "James", "William", "Benjamin", "Lucas", "Henry", "Mateo", "Santiago",
        "Diego", "Daniel", "Michael", "Ethan", "Jacob", "Logan", "Jackson", "Sebastian", "Aiden", "Omar", "Wei",
        "Arjun", "Kwame", "Samuel", "Isaac", "Caleb", "Luis", "Andre", "Malik"]
LAST = ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez",
        "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor", "Moore", "Jackson", "Martin",
        "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "Walker",
        "Young", "Allen", "King", "Wright", "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams",
        "Nelson", "Baker", "Hall", "Rivera", "Campbell", "Mitchell", "Carter", "Roberts", "Chen", "Patel", "Kim",
        "Okafor", "Cohen", "Murphy", "Rossi", "Silva", "Novak", "Haddad"]
PLACES = ["Lincoln", "Washington", "Jefferson", "Roosevelt", "Franklin", "Lakeside", "Hillcrest", "Riverside",
          "Oak Grove", "Maple", "Cedar", "Willow Creek", "Parkview", "Sunnyside", "Eastwood", "Westfield",
          "Northgate", "Southridge", "Pine Hill", "Meadowbrook", "Brookside", "Fairview", "Highland", "Valley View",
          "Kennedy", "Madison", "Monroe", "Adams", "Garfield", "Douglass", "Tubman", "Chavez", "Sotomayor", "Carver"]

MATH = {6: "Math 6", 7: "Math 7", 8: "Pre-Algebra", 9: "Algebra I", 10: "Geometry", 11: "Algebra II", 12: "Precalculus"}
SCIENCE = {6: "Science 6", 7: "Life Science", 8: "Physical Science", 9: "Biology", 10: "Chemistry", 11: "Physics",
           12: "Environmental Science"}
SOCIAL = {6: "World Cultures", 7: "Ancient History", 8: "US History I", 9: "World History", 10: "US History",
          11: "Government", 12: "Economics"}
ELECTIVES = ["Art", "Music", "Band", "Computer Science", "Health", "Theater", "Journalism"]
# Kind, max scores, major?, weight of the kind
ASSIGNMENT_KINDS = [
    ("Homework", (10, 20), False, 0.40), ("Classwork", (10, 15), False, 0.20), ("Quiz", (20, 25), False, 0.20),
    ("Lab", (25,), False, 0.05), ("Test", (100,), True, 0.10), ("Project", (50, 100), True, 0.05),
]
DISABILITIES = [
    ("Specific learning disability", 33), ("Speech or language impairment", 19), ("Other health impairment", 15),
    ("Autism", 12), ("Developmental delay", 6), ("Intellectual disability", 6), ("Emotional disturbance", 5),
    ("Multiple disabilities", 2), ("Hearing impairment", 1), ("Orthopedic impairment", 1),
]
SERVICES = [("Specialized academic instruction", 600), ("Speech and language therapy", 120),
            ("Occupational therapy", 60), ("Counseling services", 60), ("Resource room support", 900),
            ("Physical therapy", 60)]
ACCOMMODATIONS = ["Extended time on tests (1.5x)", "Preferential seating", "Breaks as needed", "Copy of class notes",
                  "Testing in a separate room", "Use of a calculator", "Audio versions of texts",
                  "Reduced homework load", "Access to water and snacks", "Elevator pass"]
INCIDENTS = [("Disruption", 30), ("Defiance", 20), ("Tardiness", 15), ("Technology misuse", 10), ("Dress code", 5),
             ("Bullying", 8), ("Fighting", 7), ("Vandalism", 5)]
GUARDIAN_CATEGORIES = [Category.GRADE_DIGEST, Category.ATTENDANCE_INTERVENTION, Category.ASSIGNMENT_REMINDER,
                       Category.PERFORMANCE_ALERT, Category.IEP_REMINDER]


class SeedError(ValueError):
    """Bad input to the generator; the message is one line meant for the person who typed it."""


@dataclass(frozen=True)
class SeedSpec:
    name: str
    students: int
    seed: int
    time_zone: str
    as_of: dt.date

    @property
    def prefix(self) -> str:
        """Username prefix for the district's generated users (unique per district name)."""
        return slugify_name(self.name)


@dataclass
class SeedResult:
    district: District
    counts: dict[str, int]
    elapsed: float


def slugify_name(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40].strip("-")
    return slug or "district"


def validate_spec(*, name: str, students: int, seed: int, time_zone: str, as_of: dt.date) -> SeedSpec:
    """Check everything before anything is written; raise SeedError with one line."""
    name = (name or "").strip()
    if not name or len(name) > 200:
        raise SeedError("--name must be 1 to 200 characters.")
    if not isinstance(students, int) or students < 1 or students > MAX_STUDENTS:
        raise SeedError(f"--students must be a whole number from 1 to {MAX_STUDENTS:,}, not {students!r}.")
    if zone_problem(time_zone):  # the districts' rule (no "localtime" or "Factory")
        raise SeedError(f"--timezone {zone_problem(time_zone)}.")
    if not dt.date(2000, 1, 1) <= as_of <= dt.date(2100, 12, 31):
        raise SeedError(f"--as-of {as_of} is outside 2000-2100.")
    if District.objects.filter(name=name).exists():
        raise SeedError(
            f"A district named {name!r} already exists: seed another --name, or use a fresh database."
        )
    spec = SeedSpec(name=name, students=students, seed=seed, time_zone=time_zone, as_of=as_of)
    if User.objects.filter(username__startswith=spec.prefix + ".").exists():
        raise SeedError(f"Users named {spec.prefix}.* already exist (another district with a similar name): choose another --name.")
    return spec


# --- the school calendar -----------------------------------------------------------------

def _nth_weekday(year: int, month: int, weekday: int, n: int) -> dt.date:
    first = dt.date(year, month, 1)
    return first + dt.timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def _last_weekday(year: int, month: int, weekday: int) -> dt.date:
    nxt = dt.date(year + (month == 12), month % 12 + 1, 1)
    last = nxt - dt.timedelta(days=1)
    return last - dt.timedelta(days=(last.weekday() - weekday) % 7)


def session_year(as_of: dt.date) -> int:
    """The school year an as-of date belongs to: July starts the next one."""
    return as_of.year if as_of.month >= 7 else as_of.year - 1


def district_calendar(year: int, rng: random.Random) -> list[tuple[dt.date, bool, str]]:
    """Weekdays from the day after Labor Day to the 180th instructional day, with the
    district's holidays and breaks (and one snow day) as non-instructional rows."""
    mon, thu = 0, 3
    y1 = year + 1
    off: dict[dt.date, str] = {
        _nth_weekday(year, 10, mon, 2): "Indigenous Peoples' Day",
        _nth_weekday(year, 11, mon, 1) + dt.timedelta(days=1): "Election Day (staff development)",
        dt.date(year, 11, 11): "Veterans Day",
        _nth_weekday(y1, 1, mon, 3): "Martin Luther King Jr. Day",
        _nth_weekday(y1, 2, mon, 3): "Presidents' Day",
        _last_weekday(y1, 5, mon): "Memorial Day",
        dt.date(y1, 6, 19): "Juneteenth",
    }
    thanksgiving = _nth_weekday(year, 11, thu, 4)
    for d in (-1, 0, 1):
        off[thanksgiving + dt.timedelta(days=d)] = "Thanksgiving break"
    day = dt.date(year, 12, 23)
    while day <= dt.date(y1, 1, 2):
        off[day] = "Winter break"
        day += dt.timedelta(days=1)
    spring = _nth_weekday(y1, 4, mon, 2)
    for d in range(5):
        off[spring + dt.timedelta(days=d)] = "Spring break"
    # One snow day, somewhere in late January or February, on a day that was a school day.
    candidates = [dt.date(y1, 1, 20) + dt.timedelta(days=i) for i in range(38)]
    candidates = [d for d in candidates if d.weekday() < 5 and d not in off]
    off[rng.choice(candidates)] = "Snow day (school closed)"

    rows: list[tuple[dt.date, bool, str]] = []
    day = _nth_weekday(year, 9, mon, 1) + dt.timedelta(days=1)  # the Tuesday after Labor Day
    instructional = 0
    while instructional < INSTRUCTIONAL_DAYS:
        if day.weekday() < 5:
            note = off.get(day)
            rows.append((day, note is None, note or ""))
            instructional += note is None
        day += dt.timedelta(days=1)
    return rows


# --- writing -------------------------------------------------------------------------------

class _Writer:
    """Appends rows to tables without model instances: COPY (text format) on PostgreSQL,
    batched executemany elsewhere. Buffers per table so two tables can be filled in one pass
    (a connection runs one COPY at a time).

    Rows are database-ready cells: ``add`` converts Python values; the hot loops (attendance,
    submissions, grades) call ``add_cells`` with strings they built from caches, because
    converting 40 million datetimes one by one would be most of the run time.
    """

    FLUSH_AT = 20_000

    def __init__(self, counts: dict[str, int]):
        self.counts = counts
        self.buffers: dict[type[Model], list[tuple]] = {}
        self.fields: dict[type[Model], tuple[str, ...]] = {}
        self.postgres = connection.vendor == "postgresql"
        self.NULL = "\\N" if self.postgres else None
        self.TRUE, self.FALSE = ("t", "f") if self.postgres else (1, 0)

    def stamp(self, moment: dt.datetime) -> str:
        """An aware datetime as the database stores it (UTC; SQLite keeps it naive, like Django)."""
        text = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        return text + "+00" if self.postgres else text

    def cell(self, value):
        if value is None:
            return self.NULL
        if value is True or value is False:
            return self.TRUE if value else self.FALSE
        if isinstance(value, dt.datetime):
            return self.stamp(value)
        if isinstance(value, dt.date):
            return value.isoformat()
        if self.postgres:
            text = str(value)
            return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n") if isinstance(value, str) else text
        return value

    def add(self, model: type[Model], fields: tuple[str, ...], row: tuple) -> None:
        self.add_cells(model, fields, tuple(map(self.cell, row)))

    def add_cells(self, model: type[Model], fields: tuple[str, ...], row: tuple) -> None:
        buf = self.buffers.get(model)
        if buf is None:
            buf = self.buffers[model] = []
            self.fields[model] = fields
        buf.append(row)
        if len(buf) >= self.FLUSH_AT:
            self.flush(model)

    def flush(self, model: type[Model] | None = None) -> None:
        for m in [model] if model else list(self.buffers):
            rows = self.buffers.get(m)
            if rows:
                self._write(m, self.fields[m], rows)
                self.counts[m._meta.label] = self.counts.get(m._meta.label, 0) + len(rows)
                rows.clear()

    def _write(self, model: type[Model], fields: tuple[str, ...], rows: list[tuple]) -> None:
        meta = model._meta
        columns = [meta.get_field(f).column for f in fields]
        qn = connection.ops.quote_name
        with connection.cursor() as cursor:
            if self.postgres:
                sql = f"COPY {qn(meta.db_table)} ({', '.join(map(qn, columns))}) FROM STDIN"
                with cursor.cursor.copy(sql) as copy:
                    copy.write("".join(["\t".join(r) + "\n" for r in rows]))
            else:
                sql = f"INSERT INTO {qn(meta.db_table)} ({', '.join(map(qn, columns))}) VALUES ({', '.join(['%s'] * len(columns))})"
                cursor.executemany(sql, rows)


def _bulk(model: type[Model], objs: list[Model], counts: dict[str, int]) -> list[Model]:
    if objs:
        model.objects.bulk_create(objs, batch_size=2000)
        counts[model._meta.label] = counts.get(model._meta.label, 0) + len(objs)
    return objs


# --- the generator -------------------------------------------------------------------------

@dataclass
class _Kid:
    """A student being generated, before and after insertion."""

    local_id: str
    first: str
    last: str
    grade: int
    birth: dt.date
    enrolled: dt.date
    exit: dt.date | None
    chronic: bool
    absence_rate: float
    ability: float
    iep: bool
    plan504: bool
    periods: int
    sibling_of: int | None
    id: int | None = None
    sections: list[int] = field(default_factory=list)  # indexes into the school's section list


# The demo family's meeting: this many days after as_of (then the next weekday), beyond the
# default 10-day notice lead time, so the notice the IEP job sends at once is on time.
DEMO_MEETING_LEAD = 12


class _Seeder:
    def __init__(self, spec: SeedSpec, progress: Callable[[int, int, str], None] | None):
        self.spec = spec
        self.zone = zoneinfo.ZoneInfo(spec.time_zone)
        self.progress = progress or (lambda done, total, detail: None)
        self.counts: dict[str, int] = {}
        self.writer = _Writer(self.counts)
        self.rng = random.Random(f"{spec.seed}:district")
        self.year = session_year(spec.as_of)
        self._midnights: dict[dt.date, dt.datetime] = {}
        self._stamps: dict[tuple[dt.date, int], str] = {}
        self.next_local_id = 100001
        self.groups = {r: Group.objects.get_or_create(name=str(r))[0].pk for r in Role}
        self.p_chronic = self.rng.uniform(0.11, 0.14)
        # The demo family (decision 7): the student, and the guardian told immediately.
        self.demo_kid: _Kid | None = None
        self.demo_guardian: str | None = None

    # time helpers
    def midnight(self, day: dt.date) -> dt.datetime:
        """Local midnight of ``day`` in UTC (offset taken at noon: school hours never straddle a DST jump)."""
        m = self._midnights.get(day)
        if m is None:
            m = self._midnights[day] = dt.datetime.combine(day, dt.time(12), self.zone).astimezone(UTC) - dt.timedelta(hours=12)
        return m

    def at(self, day: dt.date, seconds: int) -> dt.datetime:
        return self.midnight(day) + dt.timedelta(seconds=seconds)

    def ts(self, day: dt.date, minute: int) -> str:
        """The database cell for local ``day`` at ``minute`` past midnight (cached: the hot loops reuse them)."""
        key = (day, minute)
        cell = self._stamps.get(key)
        if cell is None:
            cell = self._stamps[key] = self.writer.stamp(self.at(day, minute * 60))
        return cell

    # users
    def make_users(self, rows: list[tuple[str, str, str, str, bool]], role: str | None, joined: dt.date) -> list:
        """rows: (username, first, last, email, is_staff). Returns saved users with ids."""
        users = [
            User(username=u, first_name=f, last_name=last, email=e, is_staff=s, password=UNUSABLE_PASSWORD,
                 date_joined=self.at(joined, 8 * 3600))
            for u, f, last, e, s in rows
        ]
        _bulk(User, users, self.counts)
        if role:
            Through = User.groups.through
            _bulk(Through, [Through(user_id=u.pk, group_id=self.groups[role]) for u in users], self.counts)
        return users

    def make_staff(self, role: str, n: int, key: str, title: str, schools: list[School]) -> list:
        rng = self.rng if not schools else self.school_rng
        rows = []
        for i in range(1, n + 1):
            first = rng.choice(FEMALE if rng.random() < 0.7 else MALE)
            last = rng.choice(LAST)
            username = f"{self.spec.prefix}.{key}.{i}"
            rows.append((username, first, last, f"{username}@staff.example.org", True))
        users = self.make_users(rows, role, self.session_start)
        profiles = _bulk(StaffProfile, [StaffProfile(user_id=u.pk, district_id=self.district.pk, title=title) for u in users], self.counts)
        if schools:
            Through = StaffProfile.schools.through
            _bulk(Through, [Through(staffprofile_id=p.pk, school_id=s.pk) for p in profiles for s in schools], self.counts)
        return users

    # ---- 1. district, session, schools, calendar ----
    def run(self) -> District:
        spec, rng = self.spec, self.rng
        self.district = District.objects.create(
            name=spec.name, time_zone=spec.time_zone, state=STATE_BY_ZONE.get(spec.time_zone, "NY"),
            it_contact_email=f"it@{spec.prefix}.example.org",
        )
        self.counts[District._meta.label] = 1
        calendar = district_calendar(self.year, rng)
        self.session_start, self.session_end = calendar[0][0], calendar[-1][0]
        self.session = AcademicSession.objects.create(
            district=self.district, name=f"{self.year}-{self.year + 1}", start_date=self.session_start,
            end_date=self.session_end, is_current=True,
        )
        self.counts[AcademicSession._meta.label] = 1

        plan = self.plan_schools(rng)
        places = rng.sample(PLACES, len(PLACES))
        schools = []
        for i, (band, low, high, _n) in enumerate(plan):
            suffix, letter = next((b[3], b[4]) for b in BANDS if b[0] == band)
            number = sum(1 for p in plan[:i] if p[0] == band) + 1
            place = places[i % len(places)] + (f" {i // len(places) + 1}" if i >= len(places) else "")
            schools.append(School(district=self.district, name=f"{place} {suffix}", code=f"{letter}{number:02d}",
                                  lowest_grade=low, highest_grade=high))
        _bulk(School, schools, self.counts)
        self.link_feeders(schools)

        # District-level staff (special education is run from the district office).
        n_schools = len(schools)
        self.district_admins = self.make_staff(Role.DISTRICT_ADMIN, 1, "district-admin", "District administrator", [])
        self.coordinators = self.make_staff(Role.SPED_COORDINATOR, max(1, math.ceil(n_schools / 15)), "sped-coordinator",
                                            "Special-education coordinator", [])
        self.psychologists = self.make_staff(Role.CASE_MANAGER, max(1, math.ceil(n_schools / 4)), "psychologist",
                                             "School psychologist", [])
        self.speech = self.make_staff(Role.CASE_MANAGER, max(1, math.ceil(n_schools / 4)), "slp",
                                      "Speech-language pathologist", [])

        total = sum(p[3] for p in plan)
        done = 0
        for index, (school, (_, _, _, n)) in enumerate(zip(schools, plan)):
            self.seed_school(school, n, calendar)
            done += n
            self.writer.flush()
            rows = sum(self.counts.values())
            self.progress(done, total, f"{index + 1}/{len(schools)} schools, {done:,}/{total:,} students, {rows:,} rows")
        return self.district

    @staticmethod
    def link_feeders(schools: list[School]) -> None:
        """Each elementary school feeds a middle school and each middle school a high school
        (School.feeds_into, the rollover's move), spread evenly in order: with 4 elementary
        and 2 middle schools, the first two feed the first middle school."""
        by_band: dict[int, list[School]] = {}
        for school in schools:
            by_band.setdefault(school.lowest_grade, []).append(school)
        changed = []
        for school in schools:
            nxt = by_band.get(school.highest_grade + 1, [])
            if nxt:
                mine = by_band[school.lowest_grade]
                school.feeds_into = nxt[mine.index(school) * len(nxt) // len(mine)]
                changed.append(school)
        School.objects.bulk_update(changed, ["feeds_into"])

    def plan_schools(self, rng: random.Random) -> list[tuple[str, int, int, int]]:
        """Split the students into bands by grade count, and each band into ~500-student schools."""
        n = self.spec.students
        spans = [high - low + 1 for _, low, high, _, _ in BANDS]
        per_band = [n * s // sum(spans) for s in spans]
        per_band[0] += n - sum(per_band)
        plan = []
        for (band, low, high, _, _), count in zip(BANDS, per_band):
            if count == 0:
                continue
            k = max(1, round(count / STUDENTS_PER_SCHOOL))
            base, extra = divmod(count, k)
            plan += [(band, low, high, base + (i < extra)) for i in range(k)]
        return plan

    # ---- 2-6. one school ----
    def seed_school(self, school: School, n: int, calendar: list[tuple[dt.date, bool, str]]) -> None:
        spec = self.spec
        rng = self.school_rng = random.Random(f"{spec.seed}:{school.code}")
        code = school.code.lower()
        as_of = spec.as_of

        # Calendar: the district's, plus 0-2 professional-development days for this school.
        instructional = [d for d, i, _ in calendar if i]
        pd_days = set(rng.sample(instructional[20:-20], rng.randint(0, 2))) if len(instructional) > 40 else set()
        _bulk(CalendarDay, [
            CalendarDay(school_id=school.pk, date=d, is_instructional=i and d not in pd_days,
                        note="Professional development (no students)" if d in pd_days else note)
            for d, i, note in calendar
        ], self.counts)
        days = [d for d in instructional if d not in pd_days]
        taught = days[: bisect.bisect_right(days, as_of)]  # instructional days up to as_of

        kids = self.make_kids(school, n, rng, days)
        secondary = school.lowest_grade >= 6

        # Sections first (their sizes decide the number of teachers).
        section_plan = self.plan_sections(kids, secondary, rng)
        n_teachers = len({t for _, _, t in section_plan})
        n_iep = sum(k.iep for k in kids)
        principal = self.make_staff(Role.PRINCIPAL, 1, f"principal.{code}", f"Principal, {school.name}", [school])[0]
        counselors = self.make_staff(Role.COUNSELOR, max(1, math.ceil(n / 400)), f"counselor.{code}", "School counselor", [school])
        teachers = self.make_staff(Role.TEACHER, n_teachers, f"teacher.{code}", "Teacher", [school])
        managers = self.make_staff(Role.CASE_MANAGER, max(1, math.ceil(n_iep / 15)), f"case-manager.{code}",
                                   "Case manager (special education)", [school])
        self.staff_preferences(counselors, managers, principal, teachers)

        # Students, counselors assigned by alphabet as schools do.
        order = sorted(range(n), key=lambda i: (kids[i].last, kids[i].first, i))
        counselor_of = {i: counselors[pos * len(counselors) // n].pk for pos, i in enumerate(order)}
        students = [
            Student(school_id=school.pk, local_id=k.local_id, first_name=k.first, last_name=k.last, grade_level=k.grade,
                    birth_date=k.birth, enrollment_date=k.enrolled, exit_date=k.exit, is_active=k.exit is None,
                    transferred_on=k.exit, counselor_id=counselor_of[i], directory_opt_out=rng.random() < 0.04,
                    consents_to_guardian_access=self.age(k, as_of) >= 18 and rng.random() < 0.5)
            for i, k in enumerate(kids)
        ]
        _bulk(Student, students, self.counts)
        for k, s in zip(kids, students):
            k.id = s.pk

        self.seed_guardians(school, kids, rng)
        sections = _bulk(Section, [
            Section(school_id=school.pk, session_id=self.session.pk, teacher_id=teachers[t].pk, course_name=course, period=period)
            for course, period, t in section_plan
        ], self.counts)
        self.seed_coursework(kids, sections, section_plan, days, rng)
        self.seed_attendance(kids, taught, rng)
        teacher_ids_of = {k.local_id: [teachers[section_plan[s][2]].pk for s in k.sections] for k in kids}
        self.seed_iep(school, kids, teacher_ids_of, managers, principal, days, rng)
        self.seed_504(kids, teacher_ids_of, counselors, rng)
        self.seed_incidents(kids, taught, [t.pk for t in teachers], rng)

    def age(self, kid: _Kid, on: dt.date) -> int:
        return on.year - kid.birth.year - ((on.month, on.day) < (kid.birth.month, kid.birth.day))

    def make_kids(self, school: School, n: int, rng: random.Random, days: list[dt.date]) -> list[_Kid]:
        as_of = self.spec.as_of
        span = school.highest_grade - school.lowest_grade + 1
        taught = [d for d in days if d <= as_of]
        kids: list[_Kid] = []
        for i in range(n):
            grade = school.lowest_grade + i * span // n
            sibling = i - rng.randint(1, min(i, 40)) if i and rng.random() < 0.15 else None
            female = rng.random() < 0.49
            first = rng.choice(FEMALE if female else MALE)
            last = kids[sibling].last if sibling is not None else rng.choice(LAST)
            # Age grade+5 on 1 September; 4% were retained a year.
            older = 1 if rng.random() < 0.04 else 0
            born_from = dt.date(self.year - grade - 6 - older, 9, 2)
            birth = born_from + dt.timedelta(days=rng.randrange(365))
            entered = dt.date(self.year - (grade - school.lowest_grade), 8, 28)
            exit_date = None
            r = rng.random()
            if r < 0.05 and len(taught) > 10:
                entered = rng.choice(taught[5:])  # arrived during the year
            elif r < 0.08 and len(taught) > 10:
                exit_date = rng.choice(taught[5:-1] or taught[5:])  # transferred out
            chronic = rng.random() < self.p_chronic
            rate = rng.uniform(0.12, 0.30) if chronic else 0.08 * rng.random() ** 2
            has_iep = rng.random() < 0.15
            kids.append(_Kid(
                local_id=str(self.next_local_id), first=first, last=last, grade=grade, birth=birth,
                enrolled=max(entered, birth + dt.timedelta(days=365 * 4)), exit=exit_date, chronic=chronic,
                absence_rate=rate, ability=min(98.0, max(45.0, rng.gauss(80 - (8 if chronic else 0), 9))),
                iep=has_iep, plan504=not has_iep and rng.random() < 0.035,
                periods=1 if grade <= 5 else rng.choices((5, 6, 7), (0.2, 0.6, 0.2))[0], sibling_of=sibling,
            ))
            self.next_local_id += 1
        return kids

    def plan_sections(self, kids: list[_Kid], secondary: bool, rng: random.Random) -> list[tuple[str, str, int]]:
        """Returns (course name, period, teacher index) per section and fills kid.sections."""
        by_grade: dict[int, list[_Kid]] = defaultdict(list)
        for k in kids:
            by_grade[k.grade].append(k)
        plan: list[tuple[str, str]] = []
        subject: list[str] = []
        for grade in sorted(by_grade):
            group = by_grade[grade]
            label = "Kindergarten" if grade == 0 else f"Grade {grade}"
            if not secondary:
                rooms = max(1, math.ceil(len(group) / HOMEROOM_SIZE))
                base = len(plan)
                for r in range(rooms):
                    plan.append((f"{label} Homeroom {chr(65 + r % 26)}{r // 26 or ''}", "HR"))
                    subject.append(f"homeroom-{grade}")
                for j, k in enumerate(group):
                    k.sections = [base + j % rooms]
                continue
            courses = [f"English {grade}", MATH[grade], SCIENCE[grade], SOCIAL[grade], "Physical Education",
                       f"Spanish {'I' * min(3, max(1, grade - 8))}" if grade >= 9 else f"Spanish {grade}", None]
            for period in range(1, 8):
                takers = [k for k in group if k.periods >= period]
                if not takers:
                    continue
                count = max(1, math.ceil(len(takers) / SECONDARY_SECTION_SIZE))
                base = len(plan)
                for s in range(count):
                    course = courses[period - 1] or rng.choice(ELECTIVES)
                    plan.append((f"{course} ({grade}{chr(65 + s % 26)}{s // 26 or ''})", f"P{period}"))
                    subject.append(course.split(" (")[0] if courses[period - 1] else "Electives")
                offset = rng.randrange(count)
                for j, k in enumerate(takers):
                    k.sections.append(base + (j + offset) % count)
        # Teachers: one per homeroom; secondary teachers take five sections of one subject.
        order = sorted(range(len(plan)), key=lambda i: (subject[i], i))
        teacher = {}
        if secondary:
            t, last_subject, load = -1, None, 5
            for i in order:
                if subject[i] != last_subject or load == 5:
                    t, load, last_subject = t + 1, 0, subject[i]
                teacher[i] = t
                load += 1
        else:
            teacher = {i: i for i in range(len(plan))}
        return [(c, p, teacher[i]) for i, (c, p) in enumerate(plan)]

    def staff_preferences(self, counselors, managers, principal, teachers) -> None:
        W, F = self.writer, ("user_id", "category", "channel", "frequency", "low_grade_threshold")
        for u in counselors:
            W.add(NotificationPreference, F, (u.pk, Category.ATTENDANCE_INTERVENTION.value, Channel.EMAIL.value, Frequency.DAILY.value, None))
        for u in managers:
            W.add(NotificationPreference, F, (u.pk, Category.IEP_REMINDER.value, Channel.EMAIL.value, Frequency.IMMEDIATELY.value, None))
        W.add(NotificationPreference, F, (principal.pk, Category.REPORT.value, Channel.EMAIL.value, Frequency.WEEKLY.value, None))
        for u in teachers[::3]:
            W.add(NotificationPreference, F, (u.pk, Category.ASSIGNMENT_REMINDER.value, Channel.EMAIL.value, Frequency.DAILY.value, None))

    def seed_guardians(self, school: School, kids: list[_Kid], rng: random.Random) -> None:
        """1-2 guardians a student; siblings share theirs."""
        code, prefix, as_of = school.code.lower(), self.spec.prefix, self.spec.as_of
        households: list[list[tuple[str, str, str, str]]] = []  # per kid: (username, first, last, relationship)
        language: list[str] = []
        rows = []
        for i, k in enumerate(kids):
            if k.sibling_of is not None:
                households.append(households[k.sibling_of])
                language.append(language[k.sibling_of])
                continue
            two = rng.random() < 0.7
            rels = (rng.choices([("mother", "father"), ("parent", "parent"), ("mother", "grandparent"), ("father", "mother")],
                                (0.6, 0.15, 0.1, 0.15))[0] if two else
                    (rng.choices(["mother", "father", "guardian", "grandparent", "foster", "other"], (0.5, 0.15, 0.1, 0.15, 0.05, 0.05))[0],))
            members = []
            for j, rel in enumerate(rels):
                first = rng.choice(MALE if rel == "father" else FEMALE if rel == "mother" else rng.choice((MALE, FEMALE)))
                last = k.last if rng.random() < 0.85 else rng.choice(LAST)
                username = f"{prefix}.guardian.{code}.{i + 1}.{j + 1}"
                members.append((username, first, last, rel))
                rows.append((username, first, last, f"{first}.{last}.{code}{i + 1}{j + 1}@family.example.com".lower(), False))
            households.append(members)
            language.append("es" if rng.random() < 0.22 else "en")
            if self.demo_kid is None and k.iep and k.exit is None and self.age(k, as_of + dt.timedelta(days=60)) < 18:
                # Drawn above all the same, so the stream (and the rest of the district) is unchanged.
                self.demo_kid, self.demo_guardian = k, members[0][0]
                language[-1] = "es"
        users = self.make_users(rows, Role.GUARDIAN, self.session_start)
        ids = {u.username: u.pk for u in users}
        links = []
        for k, members, lang in zip(kids, households, language):
            older = self.age(k, as_of) >= 17
            for j, (username, _, _, rel) in enumerate(members):
                revoked = j == 1 and rng.random() < 0.03
                links.append(GuardianLink(
                    guardian_id=ids[username], student_id=k.id, relationship=rel,
                    is_custodial=not revoked and rng.random() > 0.04, access_revoked=revoked,
                    access_revoked_note=f"Court order {self.year}-FC-{rng.randint(1000, 9999)}" if revoked else "",
                    is_dependent_claim=older and rng.random() < 0.4, preferred_language=lang,
                ))
        _bulk(GuardianLink, links, self.counts)

        W = self.writer
        pref_fields = ("user_id", "category", "channel", "frequency", "low_grade_threshold")
        token_fields = ("user_id", "token", "platform", "is_active", "created_at", "last_seen_at")
        frequencies = [Frequency.IMMEDIATELY.value, Frequency.DAILY.value, Frequency.WEEKLY.value, Frequency.NEVER.value]
        for u in users:
            has_app = rng.random() < 0.45
            if has_app:
                for t in range(1 + (rng.random() < 0.1)):
                    active = t == 0
                    seen = as_of - dt.timedelta(days=rng.randint(0, 20) if active else rng.randint(90, 300))
                    created = seen - dt.timedelta(days=rng.randint(0, 400))
                    W.add(DeviceToken, token_fields, (
                        u.pk, f"{u.username}:{t}:{rng.getrandbits(160):040x}", rng.choice(["ios", "android"]), active,
                        self.at(created, 19 * 3600), self.at(seen, 20 * 3600),
                    ))
            if rng.random() < 0.65:
                for category in GUARDIAN_CATEGORIES:
                    for channel in (Channel.EMAIL.value, Channel.PUSH.value) if has_app else (Channel.EMAIL.value,):
                        freq = rng.choices(frequencies, (0.35, 0.35, 0.2, 0.1))[0]
                        if u.username == self.demo_guardian and category == Category.IEP_REMINDER:
                            freq = Frequency.IMMEDIATELY.value  # the demo's notice arrives, not in a digest
                        threshold = (rng.choice(("60.00", "65.00", "70.00"))
                                     if category == Category.GRADE_DIGEST and rng.random() < 0.3 else None)
                        W.add(NotificationPreference, pref_fields, (u.pk, category.value, channel, freq, threshold))

    def seed_coursework(self, kids, sections, section_plan, days, rng: random.Random) -> None:
        """Enrollments, assignments (2-4 a section a week), submissions and grades."""
        as_of, W = self.spec.as_of, self.writer
        start = self.session_start
        roster: dict[int, list[_Kid]] = defaultdict(list)
        enrollment_fields = ("section_id", "student_id", "start_date", "end_date", "notifications_muted")
        for k in kids:
            for s in k.sections:
                roster[s].append(k)
                W.add(SectionEnrollment, enrollment_fields, (sections[s].pk, k.id, max(k.enrolled, start), k.exit, rng.random() < 0.03))
        weeks: dict[dt.date, list[dt.date]] = defaultdict(list)
        horizon = min(as_of + dt.timedelta(days=14), self.session_end)
        for d in days:
            if d <= horizon:
                weeks[d - dt.timedelta(days=d.weekday())].append(d)
        kinds, weights = ASSIGNMENT_KINDS, [k[3] for k in ASSIGNMENT_KINDS]
        sub_fields = ("assignment_id", "student_id", "submitted_at", "is_exempt")
        grade_fields = ("assignment_id", "student_id", "score", "posted_at")
        rnd, randint, gauss, ts, add = rng.random, rng.randint, rng.gauss, self.ts, W.add_cells
        NULL, TRUE, FALSE = W.NULL, W.TRUE, W.FALSE
        one_day = dt.timedelta(days=1)
        # All the school's assignments in one bulk insert (their ids are needed below).
        per_section: list[list[Assignment]] = []
        for s, section in enumerate(sections):
            short = section_plan[s][0].split(" (")[0]
            assignments = []
            per_section.append(assignments)
            for week_no, (_monday, week_days) in enumerate(sorted(weeks.items()), start=1):
                count = min(len(week_days), randint(2, 4))
                for n, due in enumerate(sorted(rng.sample(week_days, count)), start=1):
                    kind, scores, major, _ = rng.choices(kinds, weights)[0]
                    assignments.append(Assignment(
                        section_id=section.pk, title=f"{short}: {kind} {week_no}.{n}",
                        status=Assignment.Status.PUBLISHED if due <= as_of + dt.timedelta(days=7) else Assignment.Status.DRAFT,
                        due_date=due, max_score=rng.choice(scores), is_major=major,
                    ))
        _bulk(Assignment, [a for assignments in per_section for a in assignments], self.counts)
        for s, assignments in enumerate(per_section):
            # Per student: (id cell, first and last day in the section, chance of handing work in, ability).
            students = [
                (str(k.id), max(k.enrolled, start), k.exit or self.session_end,
                 0.93 - (0.2 if k.chronic else 0) - (0.1 if k.ability < 65 else 0), k.ability)
                for k in roster[s]
            ]
            for a in assignments:
                due = a.due_date
                if due > as_of:
                    continue
                aid, max_score = str(a.pk), a.max_score
                for sid, first, last, p_submit, ability in students:
                    if due < first or due > last:
                        continue
                    r = rnd()
                    graded_on = due + one_day * randint(1, 6)
                    if r < 0.015:
                        add(Submission, sub_fields, (aid, sid, NULL, TRUE))  # exempt
                        continue
                    if r < p_submit:
                        day = due + one_day * randint(1, 3) if rnd() < 0.06 else due - one_day * randint(0, 2)
                        if day > as_of:
                            continue
                        add(Submission, sub_fields, (aid, sid, ts(day, randint(15 * 60, 23 * 60 + 59)), FALSE))
                        if day <= graded_on <= as_of and rnd() < 0.95:
                            pct = min(100.0, max(0.0, gauss(ability, 9)))
                            add(Grade, grade_fields, (aid, sid, f"{max_score * pct / 100:.2f}", ts(graded_on, randint(16 * 60, 21 * 60))))
                    elif graded_on <= as_of and rnd() < 0.6:
                        # Missing work entered as a zero.
                        add(Grade, grade_fields, (aid, sid, "0.00", ts(graded_on, randint(16 * 60, 21 * 60))))

    def seed_attendance(self, kids: list[_Kid], taught: list[dt.date], rng: random.Random) -> None:
        """One record per enrolled instructional day; the number of absent days is drawn per
        student so the chronic share is what the plan says, not a coin-flip away from it."""
        fields = ("student_id", "date", "status", "fraction_present", "recorded_at")
        cells = [(d.isoformat(), self.ts(d, 9 * 60 + 30)) for d in taught]  # taken at 09:30 local
        rnd, add = rng.random, self.writer.add_cells
        for k in kids:
            lo = bisect.bisect_left(taught, max(k.enrolled, self.session_start))
            hi = bisect.bisect_right(taught, k.exit) if k.exit else len(taught)
            n = hi - lo
            if n <= 0:
                continue
            limit = math.ceil(0.1 * n)  # absent days at which a student is chronically absent
            wanted = round(k.absence_rate * n)
            absent_days = max(limit, wanted) if k.chronic else min(wanted, limit - 1)
            absent = set(rng.sample(range(n), max(0, absent_days)))
            sid = str(k.id)
            for i in range(n):
                day, recorded = cells[lo + i]
                r = rnd()
                if i in absent:
                    if r < 0.42:
                        status, fraction = "absent-excused", "0.00"
                    elif r < 0.82:
                        status, fraction = "absent-unexcused", "0.00"
                    elif r < 0.87:
                        status, fraction = "oss", "0.00"
                    elif r < 0.94:
                        status, fraction = "tardy", "0.40"  # arrived after lunch: counts as absent
                    else:
                        status, fraction = "present", "0.30"  # left in the morning: counts as absent
                elif r < 0.93:
                    status, fraction = "present", "1.00"
                elif r < 0.975:
                    status, fraction = "tardy", "0.90"
                elif r < 0.99:
                    status, fraction = "present", "0.75"  # left early, still most of the day
                else:
                    status, fraction = "iss", "1.00"  # in-school suspension is not an absence
                add(AttendanceRecord, fields, (sid, day, status, fraction, recorded))

    def seed_iep(self, school, kids, teacher_ids_of, managers, principal, days, rng: random.Random) -> None:
        as_of = self.spec.as_of
        iep_kids = [k for k in kids if k.iep]
        ieps = []
        for j, k in enumerate(iep_kids):
            # Reviews spread over the last year so they fall due across this one; 6% overdue.
            ago = rng.randint(366, 430) if rng.random() < 0.06 else rng.randint(0, 364)
            last = as_of - dt.timedelta(days=ago)
            earliest = k.birth + dt.timedelta(days=3 * 365)
            eligibility = min(last, max(earliest, last - dt.timedelta(days=rng.randint(0, 5 * 365))))
            # Reevaluated every 3 years since eligibility up to as_of; where the annual review is
            # overdue the reevaluation stopped at the last review too (and may be overdue).
            reevals = ((last if ago > 365 else as_of) - eligibility).days // (3 * 365)
            reevaluated = eligibility + dt.timedelta(days=3 * 365 * reevals) if reevals else None
            ieps.append(IEP(
                student_id=k.id, status=IEP.Status.ACTIVE, eligibility_date=eligibility,
                disability_category=rng.choices([d for d, _ in DISABILITIES], [w for _, w in DISABILITIES])[0],
                last_annual_review=last, next_review_due=last + dt.timedelta(days=ANNUAL_REVIEW_DAYS),
                last_reevaluation=reevaluated, reevaluation_due=reevaluation_due_after(reevaluated or eligibility),
                case_manager_id=managers[j % len(managers)].pk,
            ))
        _bulk(IEP, ieps, self.counts)
        team, services, meetings = [], [], []
        for k, iep in zip(iep_kids, ieps):
            members = {iep.case_manager_id: IEPTeamMember.TeamRole.CASE_MANAGER, principal.pk: IEPTeamMember.TeamRole.ADMINISTRATOR}
            teachers = teacher_ids_of[k.local_id]
            if teachers:
                members.setdefault(rng.choice(teachers), IEPTeamMember.TeamRole.GENERAL_EDUCATION_TEACHER)
            if rng.random() < 0.5:
                members.setdefault(rng.choice(self.psychologists).pk, IEPTeamMember.TeamRole.PSYCHOLOGIST)
            picked = rng.sample(SERVICES, rng.randint(1, 3))
            for name, minutes in picked:
                therapist = name.startswith(("Speech", "Occupational", "Physical"))
                provider = rng.choice(self.speech).pk if therapist else iep.case_manager_id
                if therapist:
                    members.setdefault(provider, IEPTeamMember.TeamRole.RELATED_SERVICES)
                services.append(IEPService(iep_id=iep.pk, name=name, minutes_per_month=minutes, provider_id=provider))
            team += [IEPTeamMember(iep_id=iep.pk, user_id=u, role=r) for u, r in members.items()]
            # The review meeting that was held, and for reviews due soon (or overdue) the next one.
            meetings.append(IEPMeeting(iep_id=iep.pk, status=IEPMeeting.Status.HELD,
                                       scheduled_for=self.at(iep.last_annual_review, 14 * 3600),
                                       guardian_notice_sent_on=iep.last_annual_review - dt.timedelta(days=14)))
            to_due = (iep.next_review_due - as_of).days
            if 1 <= to_due <= 45 and rng.random() < 0.6:
                when = max(iep.next_review_due - dt.timedelta(days=rng.randint(0, 20)), as_of + dt.timedelta(days=1))
                notice = when - dt.timedelta(days=12)
                meetings.append(IEPMeeting(iep_id=iep.pk, status=IEPMeeting.Status.SCHEDULED,
                                           scheduled_for=self.at(when, 15 * 3600),
                                           guardian_notice_sent_on=notice if notice <= as_of and rng.random() < 0.7 else None))
            elif to_due < 0 and rng.random() < 0.5:
                meetings.append(IEPMeeting(iep_id=iep.pk, status=IEPMeeting.Status.PROPOSED))
        if self.demo_kid in iep_kids:
            meetings = self.demo_meeting(school, ieps[iep_kids.index(self.demo_kid)], meetings)
        _bulk(IEPTeamMember, team, self.counts)
        _bulk(IEPService, services, self.counts)
        _bulk(IEPMeeting, meetings, self.counts)

        # Weekly service logs since the session began; some weeks missed (a compliance signal).
        kid_of = {iep.pk: (k, iep) for k, iep in zip(iep_kids, ieps)}
        weeks: dict[dt.date, list[dt.date]] = defaultdict(list)
        for d in days:
            if d <= as_of:
                weeks[d - dt.timedelta(days=d.weekday())].append(d)
        fields = ("service_id", "student_id", "delivered_on", "minutes", "provider_id")
        for service in services:
            if rng.random() < 0.15:
                continue  # no logs at all yet
            weekly = service.minutes_per_month / 4
            k, iep = kid_of[service.iep_id]
            first, last = max(iep.eligibility_date, k.enrolled), k.exit or as_of
            for monday in sorted(weeks):
                if rng.random() < 0.85:
                    day = rng.choice(weeks[monday])
                    if first <= day <= last:
                        minutes = max(15, min(480, round(weekly * rng.uniform(0.8, 1.2))))
                        self.writer.add(ServiceLog, fields, (service.pk, k.id, day, minutes, service.provider_id))

    def demo_meeting(self, school: School, iep: IEP, meetings: list[IEPMeeting]) -> list[IEPMeeting]:
        """The demo family's scheduled meeting (decision 7), with no notice sent yet: the annual
        review when it falls due within 90 days of the meeting's date, otherwise an amendment.
        Another open meeting of the same purpose for that IEP is dropped (one open meeting per
        IEP and purpose)."""
        day = self.spec.as_of + dt.timedelta(days=DEMO_MEETING_LEAD)
        while day.weekday() >= 5:
            day += dt.timedelta(days=1)
        review = day <= iep.next_review_due <= day + dt.timedelta(days=90)
        purpose = IEPMeeting.Purpose.ANNUAL_REVIEW if review else IEPMeeting.Purpose.AMENDMENT
        kept = [m for m in meetings if not (m.iep_id == iep.pk and m.purpose == purpose and m.status != IEPMeeting.Status.HELD)]
        return [*kept, IEPMeeting(iep_id=iep.pk, purpose=purpose, status=IEPMeeting.Status.SCHEDULED,
                                  scheduled_for=self.at(day, 15 * 3600 + 30 * 60), location=f"{school.name}, conference room")]

    def seed_504(self, kids, teacher_ids_of, counselors, rng: random.Random) -> None:
        as_of = self.spec.as_of
        plan_kids = [k for k in kids if k.plan504]
        plans = []
        for k in plan_kids:
            evaluated = max(k.birth + dt.timedelta(days=4 * 365), as_of - dt.timedelta(days=rng.randint(20, 420)))
            begins = evaluated + dt.timedelta(days=rng.randint(7, 30))
            plans.append(Section504Plan(student_id=k.id, evaluation_date=evaluated, start_date=begins,
                                        next_review_due=begins + dt.timedelta(days=365),
                                        coordinator_id=rng.choice(counselors).pk))
        _bulk(Section504Plan, plans, self.counts)
        accommodations, implementers = [], []
        for k, plan in zip(plan_kids, plans):
            for text in rng.sample(ACCOMMODATIONS, rng.randint(2, 4)):
                accommodations.append((Accommodation(plan_id=plan.pk, description=text), teacher_ids_of[k.local_id]))
        _bulk(Accommodation, [a for a, _ in accommodations], self.counts)
        Through = Accommodation.implementers.through
        for a, teachers in accommodations:
            for t in sorted(set(teachers))[:3]:
                implementers.append(Through(accommodation_id=a.pk, user_id=t))
        _bulk(Through, implementers, self.counts)

    def seed_incidents(self, kids, taught, teacher_ids, rng: random.Random) -> None:
        incidents = []
        categories, weights = [c for c, _ in INCIDENTS], [w for _, w in INCIDENTS]
        for k in kids:
            if not taught or rng.random() >= (0.18 if k.chronic else 0.07):
                continue
            window = [d for d in taught if d >= k.enrolled and (not k.exit or d <= k.exit)]
            for _ in range(rng.randint(1, 3) if window else 0):
                category = rng.choices(categories, weights)[0]
                severity = 3 if category in ("Fighting", "Vandalism") else rng.choices((1, 2), (0.7, 0.3))[0]
                incidents.append(BehaviorIncident(
                    student_id=k.id, occurred_at=self.at(rng.choice(window), rng.randint(8 * 3600, 15 * 3600)),
                    category=category, severity=severity, description=f"{category} reported by staff.",
                    reported_by_id=rng.choice(teacher_ids),
                ))
        _bulk(BehaviorIncident, incidents, self.counts)


def _fast_load_session() -> bool:
    """On PostgreSQL, skip the per-row foreign-key triggers for this transaction when allowed.

    Why: Django's foreign keys are DEFERRABLE INITIALLY DEFERRED, so every COPYed row queues a
    trigger event that runs at COMMIT (a lookup and a row lock on the parent); for millions
    of rows that is most of the load time. Every id the generator writes was returned by an
    insert in this same transaction, so the checks cannot fail. ``session_replication_role``
    needs a superuser; anyone else gets the ordinary (slower) checks.
    """
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        row = cursor.fetchone()
        if not (row and row[0]):
            return False
        cursor.execute("SET LOCAL session_replication_role = replica")
    return True


def seed_district(
    *, name: str, students: int, seed: int, time_zone: str, as_of: dt.date,
    progress: Callable[[int, int, str], None] | None = None,
) -> SeedResult:
    """Validate, then generate a whole district in one transaction. Raises SeedError on bad input
    (before anything is written). ``progress(students_done, students_total, detail)`` is called
    after each school."""
    spec = validate_spec(name=name, students=students, seed=seed, time_zone=time_zone, as_of=as_of)
    started = time.monotonic()
    with transaction.atomic():
        fast = _fast_load_session()
        seeder = _Seeder(spec, progress)
        district = seeder.run()
        if fast:  # back to normal checks for whatever else this transaction does
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL session_replication_role = DEFAULT")
    if connection.vendor == "postgresql":
        # Fresh statistics: without them the planner guesses on tables that just grew by
        # millions of rows (an admin changelist took minutes before ANALYZE, 58 ms after).
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    return SeedResult(district=district, counts=dict(sorted(seeder.counts.items())), elapsed=time.monotonic() - started)


# --- the digest: same seed, same rows --------------------------------------------------------

def _digest_specs(district: District, prefix: str) -> Iterable[tuple[str, object, tuple[str, ...]]]:
    users = User.objects.filter(username__startswith=prefix + ".")
    stu = "student__school__code", "student__local_id"
    yield "district", District.objects.filter(pk=district.pk), ("name", "time_zone", "state", "it_contact_email")
    yield "session", AcademicSession.objects.filter(district=district), ("name", "start_date", "end_date", "is_current")
    yield "school", School.objects.filter(district=district), ("code", "name", "lowest_grade", "highest_grade", "feeds_into__code")
    yield "calendar", CalendarDay.objects.filter(school__district=district), ("school__code", "date", "is_instructional", "note")
    yield "user", users, ("username", "first_name", "last_name", "email", "is_staff", "date_joined")
    yield "group", User.groups.through.objects.filter(user__in=users), ("user__username", "group__name")
    yield "staff", StaffProfile.objects.filter(district=district), ("user__username", "title")
    yield "staff_school", StaffProfile.schools.through.objects.filter(staffprofile__district=district), (
        "staffprofile__user__username", "school__code")
    yield "student", Student.objects.filter(school__district=district), (
        "school__code", "local_id", "first_name", "last_name", "grade_level", "birth_date", "enrollment_date",
        "exit_date", "is_active", "transferred_on", "counselor__username", "directory_opt_out", "consents_to_guardian_access")
    yield "guardian", GuardianLink.objects.filter(student__school__district=district), (
        *stu, "guardian__username", "relationship", "is_custodial", "access_revoked", "access_revoked_note",
        "is_dependent_claim", "preferred_language")
    yield "token", DeviceToken.objects.filter(user__in=users), ("token", "user__username", "platform", "is_active", "created_at", "last_seen_at")
    yield "preference", NotificationPreference.objects.filter(user__in=users), (
        "user__username", "category", "channel", "frequency", "low_grade_threshold")
    sec = "section__school__code", "section__course_name", "section__period"
    yield "section", Section.objects.filter(school__district=district), ("school__code", "course_name", "period", "teacher__username")
    yield "enrollment", SectionEnrollment.objects.filter(section__school__district=district), (
        *sec, *stu, "start_date", "end_date", "notifications_muted")
    yield "assignment", Assignment.objects.filter(section__school__district=district), (
        *sec, "title", "status", "due_date", "max_score", "is_major")
    asg = "assignment__section__school__code", "assignment__section__course_name", "assignment__section__period", "assignment__title"
    yield "submission", Submission.objects.filter(student__school__district=district), (*asg, *stu, "submitted_at", "is_exempt")
    yield "grade", Grade.objects.filter(student__school__district=district), (*asg, *stu, "score", "posted_at")
    yield "attendance", AttendanceRecord.objects.filter(student__school__district=district), (
        *stu, "date", "status", "fraction_present", "recorded_at")
    yield "iep", IEP.objects.filter(student__school__district=district), (
        *stu, "status", "eligibility_date", "disability_category", "last_annual_review", "next_review_due",
        "last_reevaluation", "case_manager__username")
    iep = "iep__student__school__code", "iep__student__local_id"
    yield "iep_team", IEPTeamMember.objects.filter(iep__student__school__district=district), (*iep, "user__username", "role")
    yield "iep_service", IEPService.objects.filter(iep__student__school__district=district), (
        *iep, "name", "minutes_per_month", "provider__username")
    yield "iep_meeting", IEPMeeting.objects.filter(iep__student__school__district=district), (
        *iep, "purpose", "status", "scheduled_for", "guardian_notice_sent_on")
    yield "service_log", ServiceLog.objects.filter(student__school__district=district), (
        *stu, "service__name", "delivered_on", "minutes", "provider__username")
    yield "plan504", Section504Plan.objects.filter(student__school__district=district), (
        *stu, "status", "evaluation_date", "start_date", "next_review_due", "coordinator__username")
    yield "accommodation", Accommodation.objects.filter(plan__student__school__district=district), (
        "plan__student__school__code", "plan__student__local_id", "description")
    yield "implementer", Accommodation.implementers.through.objects.filter(accommodation__plan__student__school__district=district), (
        "accommodation__plan__student__local_id", "accommodation__description", "user__username")
    yield "incident", BehaviorIncident.objects.filter(student__school__district=district), (
        *stu, "occurred_at", "category", "severity", "description", "reported_by__username")


def district_digest(district: District) -> str:
    """SHA-256 over the district's rows by natural keys (codes, local ids, usernames, dates),
    never database ids, so two databases seeded alike give the same digest."""
    h = hashlib.sha256()
    for label, queryset, fields in _digest_specs(district, slugify_name(district.name)):
        h.update(label.encode())
        for row in queryset.order_by(*fields).values_list(*fields).iterator(chunk_size=5000):
            h.update(repr(row).encode())
    return h.hexdigest()
