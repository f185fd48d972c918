"""Set-based reads for interventions: who is chronically absent, and why."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from django.db import connection, transaction

from students.models import ABSENT_FRACTION_MAX, ABSENT_STATUSES, AcademicSession, District
from students.selectors import instructional_calendars

WINDOW_DAYS = 30  # "the last 30 instructional days"
ABSENCE_COUNT_LIMIT = 10  # "10 or more absences this session"
STREAK_LIMIT = 3  # "3 or more consecutive absent instructional days", anywhere in the session
TIER_2_RATE = Fraction(1, 5)  # an active Tier 1 is escalated when the session rate reaches 20%


@dataclass(frozen=True)
class AttendanceRisk:
    student_id: int
    school_id: int
    counselor_id: int | None
    enrolled_days: int
    absences: int
    window_days: int
    window_absences: int
    streak: int  # the longest run of absent instructional days this session
    criteria: tuple[str, ...]
    window_streak: int = 0  # the longest run ending in the last 30 instructional days
    last_absence: dt.date | None = None  # the latest absent day counted
    last_run_end: dt.date | None = None  # the last day of the latest run of 3 or more

    def has_evidence_after(self, day: dt.date) -> bool:
        """Whether a rule that holds rests on an absence dated after ``day``.

        A counselor closed the student's intervention on ``day``: what was known then does
        not reopen it. A rate or the absence count holds on every absence, so one absent
        day after ``day`` is new evidence; a run of 3 counts only when it ends after ``day``
        (a run in September closed in October is the evidence the counselor already weighed).
        """
        counted = {"session-rate", "30-day-rate", "10-absences"}.intersection(self.criteria)
        if counted and self.last_absence is not None and self.last_absence > day:
            return True
        return "3-in-a-row" in self.criteria and self.last_run_end is not None and self.last_run_end > day

    @property
    def rate(self) -> Fraction:
        return Fraction(self.absences, self.enrolled_days) if self.enrolled_days else Fraction(0)

    @property
    def reason(self) -> str:
        """e.g. "87.5% attendance (9 absences in 72 days, 3 in a row)"."""
        attendance = (1 - self.rate) * 100
        absences = f"{self.absences} absence{'s' if self.absences != 1 else ''}"
        days = f"{self.enrolled_days} day{'s' if self.enrolled_days != 1 else ''}"
        text = f"{float(attendance):.1f}% attendance ({absences} in {days}"
        if self.streak >= STREAK_LIMIT:
            text += f", {self.streak} in a row"
        return text + ")"


# One statement for the whole district, returning only the at-risk students with their
# counts. Absent days are read through the partial index attendance_absent_idx; only days on
# the student's school calendar, inside the session, inside the student's enrollment and on
# or before the as-of date count. A day is absent by status or when the student missed at least
# half of it (fraction present <= 0.5). Streaks are "gaps and islands" over the school's
# instructional-day index, so a weekend or holiday (no calendar row) neither breaks nor
# extends a streak, while a present day does. The runs are found in one ordered pass, not by
# grouping on (student, island): one sort of the absent days by (student, day index), then
# windows and the per-student aggregate that read that order as it comes. LEAD marks the last
# day of each run, LAG over those last days gives each run's length, and a run's days in the
# last 30 follow from its length and last index (its days are consecutive indexes). At 50,000
# students (440,000 absent days, 378,000 runs, nearly all one day long) the grouping on
# (student, island) was a hash aggregate spilling to disk, then a second one per student:
# 1.35 s of backend CPU for the statement, 1.05 s this way (bench/daily_jobs.py; docs/benchmarks.md).
# Enrolled days: a whole-session student's are the school's day count; only mid-year entries
# and exits are counted on the calendar index.
# Rates compare integers (absences * den >= num * days for threshold num/den): exact on
# every database. Portable SQL (CASE, window functions): it runs on SQLite too.
# Measured at 50,000 students against an independent hand-written statement (the former grouping
# on (student, island)) and the per-student loop: bench/daily_jobs.py.
# The calendar's instructional-day index, written out twice rather than shared: PostgreSQL
# materialises a CTE read twice, and the planner then loses its estimates for the big join.
_CALENDAR_SQL = """
    SELECT c.school_id, c.date,
           ROW_NUMBER() OVER (PARTITION BY c.school_id ORDER BY c.date) AS idx,
           COUNT(*) OVER (PARTITION BY c.school_id) AS n
    FROM students_calendarday c
    JOIN students_school sc ON sc.id = c.school_id
    WHERE sc.district_id = %(district)s AND c.is_instructional AND c.date >= %(first)s AND c.date <= %(last)s
"""
_RISKS_SQL = """
WITH cal AS ({calendar}),
absent AS (
    SELECT a.student_id, cal.idx, cal.n, cal.date
    FROM students_attendancerecord a
    JOIN students_student s ON s.id = a.student_id
    JOIN cal ON cal.school_id = s.school_id AND cal.date = a.date
    WHERE s.is_active
      AND a.date >= s.enrollment_date AND (s.exit_date IS NULL OR a.date <= s.exit_date)
      AND (a.status IN ({absent_statuses}) OR a.fraction_present <= {half})
),
ordered AS (  -- rn: the day's place among the student's absent days; next_idx: the next one's index
    SELECT student_id, idx, n, date,
           ROW_NUMBER() OVER w AS rn, LEAD(idx) OVER w AS next_idx
    FROM absent
    WINDOW w AS (PARTITION BY student_id ORDER BY idx)
),
run_ends AS (  -- the last day of each run of consecutive absent instructional days, with its length
    SELECT student_id, idx, n, date,
           rn - COALESCE(LAG(rn) OVER (PARTITION BY student_id ORDER BY idx), 0) AS length
    FROM ordered
    WHERE next_idx IS NULL OR next_idx <> idx + 1
),
per AS (  -- a run ending at idx covers idx - length + 1 .. idx; the window is idx > n - {window}
    SELECT student_id, SUM(length) AS absences,
           SUM(CASE WHEN idx - length >= n - {window} THEN length
                    WHEN idx > n - {window} THEN idx - (n - {window}) ELSE 0 END) AS window_absences,
           MAX(length) AS streak, MAX(CASE WHEN idx > n - {window} THEN length ELSE 0 END) AS window_streak,
           MAX(date) AS last_absence, MAX(CASE WHEN length >= {streak} THEN date END) AS last_run_end
    FROM run_ends GROUP BY student_id
),
sch AS (
    SELECT school_id, COUNT(*) AS n, MIN(CASE WHEN idx > n - {window} THEN date END) AS window_start
    FROM ({calendar}) AS cal2 GROUP BY school_id
),
spans AS (
    SELECT p.student_id, s.school_id, s.counselor_id, p.absences, p.window_absences, p.streak,
           p.window_streak, p.last_absence, p.last_run_end, sch.n, sch.window_start,
           CASE WHEN s.enrollment_date > %(first)s THEN s.enrollment_date ELSE %(first)s END AS lo,
           CASE WHEN s.exit_date IS NOT NULL AND s.exit_date < %(last)s THEN s.exit_date ELSE %(last)s END AS hi
    FROM per p JOIN students_student s ON s.id = p.student_id JOIN sch ON sch.school_id = s.school_id
),
days AS (
    SELECT sp.*,
        CASE WHEN sp.lo <= %(first)s AND sp.hi >= %(last)s THEN sp.n ELSE (
            SELECT COUNT(*) FROM students_calendarday c
            WHERE c.school_id = sp.school_id AND c.is_instructional AND c.date >= sp.lo AND c.date <= sp.hi
        ) END AS enrolled,
        CASE WHEN sp.lo <= sp.window_start AND sp.hi >= %(last)s THEN (CASE WHEN sp.n < {window} THEN sp.n ELSE {window} END) ELSE (
            SELECT COUNT(*) FROM students_calendarday c
            WHERE c.school_id = sp.school_id AND c.is_instructional AND c.date <= sp.hi
              AND c.date >= (CASE WHEN sp.lo > sp.window_start THEN sp.lo ELSE sp.window_start END)
        ) END AS window_days
    FROM spans sp
)
SELECT student_id, school_id, counselor_id, enrolled, absences, window_days, window_absences, streak,
       window_streak, last_absence, last_run_end
FROM days
WHERE absences >= {count_limit} OR streak >= {streak}
   OR (enrolled >= %(minimum)s AND absences * %(den)s >= %(num)s * enrolled)
   OR (window_days > 0 AND window_absences * %(den)s >= %(num)s * window_days)
ORDER BY student_id
"""


def _risk_rows(sql: str, params: dict) -> list[tuple]:
    """Run the statement; on PostgreSQL without merge joins for it (and only for it).

    The absent days meet the calendar's day index on (school, day). PostgreSQL estimates a hash
    join's bucket from the key column with the most distinct values, here the day: the 100
    schools of a district share their ~180 days, so it expects ~100 calendar rows a bucket,
    prices the hash join ~3x too high and sorts all 440,000 absent days by (school, day) for a
    merge join instead, before sorting them again by (student, day index) for the runs. Hashing
    the 18,000 calendar rows leaves the one sort: 1.05 s -> 0.85 s of backend CPU for the
    statement at 50,000 students (EXPLAIN ANALYZE, docs/benchmarks.md). The setting is local to
    the transaction and put back right after the statement, for a caller's transaction going on.
    """
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('enable_mergejoin'), set_config('enable_mergejoin', 'off', true)")
        before = cursor.fetchone()[0]
        cursor.execute(sql, params)
        rows = cursor.fetchall()
        # Given back whether or not a caller's transaction goes on: the same statements either way.
        cursor.execute("SELECT set_config('enable_mergejoin', %s, true)", [before])
    return rows


def _date(value) -> dt.date:
    return dt.date.fromisoformat(value) if isinstance(value, str) else value


@dataclass(frozen=True)
class AttendanceEvidence:
    checked: int  # active students of the district
    risks: list[AttendanceRisk]
    # Students whose last 30 instructional days are at or over the threshold or hold a run of
    # 3 (enrolled days or not): everyone else with an active intervention is ready to review.
    slipping: frozenset[int]


def attendance_evidence(*, district: District, session: AcademicSession, as_of: dt.date) -> AttendanceEvidence:
    """The district's chronically absent students as of a local date, with the rules that hold.

    A day is absent by status (``students.models.ABSENT_STATUSES``) or when the student
    missed at least half of it (fraction present <= 0.5). A student is at risk when any
    holds (rates are absent days / enrolled instructional days):
    1. session rate >= the district threshold (inclusive), with at least the district's
       minimum enrolled days;
    2. rate over the last 30 instructional days >= the threshold (same minimum: a student
       enrolled for two days is not flagged by a rate);
    3. 10 or more absences this session;
    4. 3 or more consecutive absent instructional days anywhere in the session.
    The statement selects on these rules and on "slipping" (the last 30 instructional days
    at or over the threshold, whatever the enrolled days, or a run of 3 ending in them); the
    criteria named on each risk are derived from the same counts here. Two queries whatever
    the district's size.
    """
    from students.models import Student

    last = min(as_of, session.end_date)
    first = session.start_date
    checked = Student.objects.filter(school__district=district, is_active=True).count()
    if last < first:
        return AttendanceEvidence(checked=checked, risks=[], slipping=frozenset())
    threshold = Fraction(Decimal(district.chronic_absence_threshold))
    # Rates compared on integers here as in the statement, absent * den >= num * days (a Fraction
    # product per row was most of the loop below at 15,000 at-risk students).
    num, den = threshold.numerator, threshold.denominator
    minimum = district.min_enrolled_days
    statuses = {f"s{i}": str(s) for i, s in enumerate(ABSENT_STATUSES)}
    sql = _RISKS_SQL.format(
        calendar=_CALENDAR_SQL, window=int(WINDOW_DAYS), count_limit=int(ABSENCE_COUNT_LIMIT), streak=int(STREAK_LIMIT),
        absent_statuses=", ".join(f"%({name})s" for name in statuses),
        # A literal, so that PostgreSQL matches the partial index attendance_absent_idx's predicate.
        half=str(Decimal(ABSENT_FRACTION_MAX)),
    )
    params = {"district": district.pk, "first": first, "last": last, "minimum": minimum,
              "num": num, "den": den, **statuses}
    rows = _risk_rows(sql, params)

    risks: list[AttendanceRisk] = []
    slipping: set[int] = set()
    for (student_id, school_id, counselor_id, enrolled, absences, window_days, window_absences, streak,
         window_streak, last_absence, last_run_end) in rows:
        enrolled, absences, window_days = int(enrolled), int(absences), int(window_days)
        window_absences, streak, window_streak = int(window_absences or 0), int(streak or 0), int(window_streak or 0)
        window_high = bool(window_days) and window_absences * den >= num * window_days
        if window_high or window_streak >= STREAK_LIMIT:
            slipping.add(student_id)
        criteria = []
        if enrolled >= minimum and absences * den >= num * enrolled:
            criteria.append("session-rate")
        if enrolled >= minimum and window_high:
            criteria.append("30-day-rate")
        if absences >= ABSENCE_COUNT_LIMIT:
            criteria.append("10-absences")
        if streak >= STREAK_LIMIT:
            criteria.append("3-in-a-row")
        if criteria:
            risks.append(
                AttendanceRisk(
                    student_id=student_id, school_id=school_id, counselor_id=counselor_id,
                    enrolled_days=enrolled, absences=absences, window_days=window_days,
                    window_absences=window_absences, streak=streak, criteria=tuple(criteria),
                    window_streak=window_streak, last_absence=_date(last_absence) if last_absence else None,
                    last_run_end=_date(last_run_end) if last_run_end else None,
                )
            )
    return AttendanceEvidence(checked=checked, risks=risks, slipping=frozenset(slipping))


def attendance_risks(*, district: District, session: AcademicSession, as_of: dt.date) -> tuple[int, list[AttendanceRisk]]:
    """(active students checked, at-risk students) as of a local date: ``attendance_evidence``'s rules."""
    evidence = attendance_evidence(district=district, session=session, as_of=as_of)
    return evidence.checked, evidence.risks


def needs_tier_2(risk: AttendanceRisk, *, minimum_days: int) -> bool:
    return risk.enrolled_days >= minimum_days and risk.rate >= TIER_2_RATE


# -- weekly figures (performance-trends, weekly-analytics-report) ------------------------------
@dataclass
class StudentWeek:
    """One student's raw counts for one week; the percentages derive from them (None, not
    NaN, when a week has nothing to divide by)."""

    grade_sum: float = 0.0  # sum of score / max_score * 100 over the grades posted
    grade_count: int = 0
    enrolled_days: int = 0  # instructional days of the school inside the student's enrolment
    absences: int = 0  # of those, days that count as absent (students.models.ABSENT_STATUSES, <= 50% present)
    due: int = 0  # published assignments of enrolled sections due that week (exemptions left out)
    submitted: int = 0
    incidents: int = 0

    @staticmethod
    def _ratio(num: float, den: float) -> Decimal | None:
        return None if not den else (Decimal(num) * 100 / Decimal(den)).quantize(Decimal("0.01"))

    @property
    def grade_pct(self) -> Decimal | None:
        return None if not self.grade_count else (Decimal(repr(self.grade_sum)) / self.grade_count).quantize(Decimal("0.01"))

    @property
    def attendance_pct(self) -> Decimal | None:
        return self._ratio(self.enrolled_days - self.absences, self.enrolled_days)

    @property
    def completion_pct(self) -> Decimal | None:
        return self._ratio(self.submitted, self.due)


@dataclass(frozen=True)
class StudentRow:
    id: int
    school_id: int
    grade_level: int
    counselor_id: int | None
    enrollment_date: dt.date
    exit_date: dt.date | None
    first_name: str
    last_name: str


def _local_bounds(first: dt.date, last: dt.date, zone) -> tuple[dt.datetime, dt.datetime]:
    """[local midnight of ``first``, local midnight after ``last``) as aware datetimes."""
    return (
        dt.datetime.combine(first, dt.time.min, tzinfo=zone),
        dt.datetime.combine(last + dt.timedelta(days=1), dt.time.min, tzinfo=zone),
    )


_COMPLETION_SQL = """
SELECT e.student_id, a.due_date,
       COUNT(*) AS due,
       SUM(CASE WHEN sub.submitted_at IS NOT NULL THEN 1 ELSE 0 END) AS submitted
FROM students_sectionenrollment e
JOIN students_student s ON s.id = e.student_id
JOIN students_school sc ON sc.id = s.school_id
JOIN students_assignment a ON a.section_id = e.section_id
LEFT JOIN students_submission sub ON sub.assignment_id = a.id AND sub.student_id = e.student_id
WHERE sc.district_id = %s AND s.is_active AND s.id >= %s AND s.id <= %s
  AND a.status = 'published' AND a.due_date >= %s AND a.due_date <= %s
  AND e.start_date <= a.due_date AND (e.end_date IS NULL OR e.end_date >= a.due_date)
  AND (sub.id IS NULL OR NOT sub.is_exempt)
GROUP BY e.student_id, a.due_date
"""


def district_students(*, district: District, id_range: tuple[int, int] | None = None) -> dict[int, StudentRow]:
    """Active students of the district (optionally ids lo..hi), one query."""
    from students.models import Student

    qs = Student.objects.filter(school__district=district, is_active=True)
    if id_range:
        qs = qs.filter(id__gte=id_range[0], id__lte=id_range[1])
    fields = ("id", "school_id", "grade_level", "counselor_id", "enrollment_date", "exit_date", "first_name", "last_name")
    return {row[0]: StudentRow(*row) for row in qs.order_by("id").values_list(*fields)}


def student_week_figures(
    *, district: District, weeks: list[tuple[dt.date, dt.date]], students: dict[int, StudentRow],
    id_range: tuple[int, int],
) -> dict[tuple[int, int], StudentWeek]:
    """Counts per (student id, week index) for the given local weeks (first, last day).

    Six queries whatever the number of students: calendars, grades, absent days,
    assignments due (with submissions), incidents — each grouped in the database or
    reduced in one pass. Grades are percentages (score / max score), so a 9/10 quiz and a
    45/50 test both count as 90%: averaging raw scores is the reference's bug (DESIGN §4).
    Grades and incidents fall in a week by their local date in the district's zone.
    """
    from django.db.models import Case, Count, F, FloatField, IntegerField, Sum, Value, When
    from django.db.models.functions import Cast

    from students.models import AttendanceRecord, BehaviorIncident, Grade

    zone = district.zone
    out: dict[tuple[int, int], StudentWeek] = {}
    if not students or not weeks:
        return out
    lo_id, hi_id = id_range
    first, last = min(w[0] for w in weeks), max(w[1] for w in weeks)

    def week(sid: int, index: int) -> StudentWeek:
        return out.setdefault((sid, index), StudentWeek())

    def week_case(field: str, *, dates: bool) -> Case:
        whens = []
        for i, (a, b) in enumerate(weeks):
            if dates:
                whens.append(When(**{f"{field}__gte": a, f"{field}__lte": b}, then=Value(i)))
            else:
                start, end = _local_bounds(a, b, zone)
                whens.append(When(**{f"{field}__gte": start, f"{field}__lt": end}, then=Value(i)))
        return Case(*whens, default=Value(-1), output_field=IntegerField())

    in_range = dict(student__school__district=district, student__is_active=True, student_id__gte=lo_id, student_id__lte=hi_id)
    start, end = _local_bounds(first, last, zone)

    # 1. Grades: sum of percentages and count per student and week.
    grades = (
        Grade.objects.filter(**in_range, posted_at__gte=start, posted_at__lt=end)
        .annotate(w=week_case("posted_at", dates=False))
        .values("student_id", "w")
        .annotate(
            pct_sum=Sum(Cast("score", FloatField()) * 100.0 / Cast(F("assignment__max_score"), FloatField())),
            n=Count("id"),
        )
    )
    for row in grades:
        if row["w"] >= 0 and row["student_id"] in students:
            wk = week(row["student_id"], row["w"])
            wk.grade_sum, wk.grade_count = float(row["pct_sum"] or 0.0), row["n"]

    # 2. Enrolled instructional days (calendar in memory) and absent days among them.
    calendars = instructional_calendars(school_ids={s.school_id for s in students.values()}, first=first, last=last)
    for s in students.values():
        cal = calendars.get(s.school_id)
        for i, (a, b) in enumerate(weeks):
            lo = max(a, s.enrollment_date)
            hi = min(b, s.exit_date) if s.exit_date else b
            days = cal.count_between(lo, hi) if cal else 0
            if days:
                week(s.id, i).enrolled_days = days
    from django.db.models import Q

    absent = AttendanceRecord.objects.filter(
        Q(status__in=[str(x) for x in ABSENT_STATUSES]) | Q(fraction_present__lte=ABSENT_FRACTION_MAX),
        **in_range, date__gte=first, date__lte=last,
    ).values_list("student_id", "date")
    for sid, day in absent:
        s = students.get(sid)
        cal = calendars.get(s.school_id) if s else None
        if cal is None or cal.count_between(day, day) == 0:
            continue  # not an instructional day of the school: not counted either side
        if day < s.enrollment_date or (s.exit_date and day > s.exit_date):
            continue
        for i, (a, b) in enumerate(weeks):
            if a <= day <= b:
                week(sid, i).absences += 1

    # 3. Assignment completion: submitted / due, per assignment due date.
    with connection.cursor() as cursor:
        cursor.execute(_COMPLETION_SQL, [district.pk, lo_id, hi_id, first, last])
        rows = cursor.fetchall()
    for sid, due_date, due, submitted in rows:
        if sid not in students:
            continue
        day = _date(due_date)
        for i, (a, b) in enumerate(weeks):
            if a <= day <= b:
                wk = week(sid, i)
                wk.due += int(due)
                wk.submitted += int(submitted or 0)

    # 4. Behaviour incidents.
    incidents = (
        BehaviorIncident.objects.filter(**in_range, occurred_at__gte=start, occurred_at__lt=end)
        .annotate(w=week_case("occurred_at", dates=False))
        .values("student_id", "w").annotate(n=Count("id"))
    )
    for row in incidents:
        if row["w"] >= 0 and row["student_id"] in students:
            week(row["student_id"], row["w"]).incidents = row["n"]
    return out


EFFECT_WINDOW_DAYS = 10  # instructional days compared before and after an intervention opened
EFFECT_LOOKBACK_DAYS = 180  # interventions opened this long ago or less are measured


def intervention_effects(
    *, district: District, as_of: dt.date, students: dict[int, StudentRow], id_range: tuple[int, int],
    window: int = EFFECT_WINDOW_DAYS,
) -> dict[int, list[dict]]:
    """Per student: for each intervention opened in the last 180 days (local date <= as_of),
    the attendance % over the ``window`` instructional days before the day it opened and
    the ``window`` instructional days after it (fewer when less time has passed; None
    when no day has). Three queries: interventions, calendars, absent days.
    """
    from django.db.models import Q

    from interventions.models import Intervention
    from students.models import AttendanceRecord

    zone = district.zone
    lo_id, hi_id = id_range
    since, until = _local_bounds(as_of - dt.timedelta(days=EFFECT_LOOKBACK_DAYS), as_of, zone)
    rows = list(
        Intervention.objects.filter(
            student__school__district=district, student_id__gte=lo_id, student_id__lte=hi_id,
            opened_at__gte=since, opened_at__lt=until,
        ).order_by("student_id", "opened_at", "id").values_list("id", "student_id", "type", "tier", "opened_at")
    )
    rows = [r for r in rows if r[1] in students]
    if not rows:
        return {}
    # The before-window may reach back before the lookback: ~3 calendar weeks per 10 days, with margin.
    first = as_of - dt.timedelta(days=EFFECT_LOOKBACK_DAYS + window * 3 + 30)
    calendars = instructional_calendars(school_ids={students[r[1]].school_id for r in rows}, first=first, last=as_of)
    absent: dict[int, set[dt.date]] = {}
    for sid, day in AttendanceRecord.objects.filter(
        Q(status__in=[str(x) for x in ABSENT_STATUSES]) | Q(fraction_present__lte=ABSENT_FRACTION_MAX),
        student_id__in={r[1] for r in rows}, date__gte=first, date__lte=as_of,
    ).values_list("student_id", "date"):
        absent.setdefault(sid, set()).add(day)

    def rate(sid: int, days: tuple[dt.date, ...]) -> Decimal | None:
        s = students[sid]
        days = tuple(d for d in days if d >= s.enrollment_date and (not s.exit_date or d <= s.exit_date))
        if not days:
            return None
        missed = sum(1 for d in days if d in absent.get(sid, ()))
        return (Decimal(len(days) - missed) * 100 / len(days)).quantize(Decimal("0.01"))

    out: dict[int, list[dict]] = {}
    for iid, sid, kind, tier, opened_at in rows:
        cal = calendars.get(students[sid].school_id)
        if cal is None:
            continue
        opened_on = opened_at.astimezone(zone).date()
        i = cal.index(opened_on)
        before_days = cal.days[max(0, i - window):i]
        j = cal.index(opened_on + dt.timedelta(days=1))
        after_days = tuple(d for d in cal.days[j:j + window] if d <= as_of)
        before, after = rate(sid, before_days), rate(sid, after_days)
        out.setdefault(sid, []).append({
            "intervention": iid, "type": kind, "tier": tier, "opened_on": opened_on.isoformat(),
            "before_pct": None if before is None else str(before), "before_days": len(before_days),
            "after_pct": None if after is None else str(after), "after_days": len(after_days),
            "change": None if before is None or after is None else str(after - before),
        })
    return out
