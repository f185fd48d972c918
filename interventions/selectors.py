"""Set-based reads for interventions: who is chronically absent, and why."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from django.db import connection

from students.models import ABSENT_STATUSES, AcademicSession, District
from students.selectors import instructional_calendars

WINDOW_DAYS = 30  # "the last 30 instructional days"
ABSENCE_COUNT_LIMIT = 10  # "10 or more absences this session"
STREAK_LIMIT = 3  # "3 or more consecutive absent instructional days"
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
    streak: int
    criteria: tuple[str, ...]

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


# One statement for the whole district. Absent days are read through the partial index
# attendance_absent_idx; only days on the student's school calendar, inside the session,
# inside the student's enrollment and on or before the as-of date count. Streaks are
# "gaps and islands" over the school's instructional-day index, so a weekend or holiday
# (no calendar row) neither breaks nor extends a streak, while a present day does.
_ABSENCES_SQL = """
WITH cal AS (
    SELECT c.school_id, c.date,
           ROW_NUMBER() OVER (PARTITION BY c.school_id ORDER BY c.date) AS idx,
           COUNT(*) OVER (PARTITION BY c.school_id) - {window} AS win_lo
    FROM students_calendarday c
    JOIN students_school sc ON sc.id = c.school_id
    WHERE sc.district_id = %s AND c.is_instructional AND c.date >= %s AND c.date <= %s
),
absent AS (
    SELECT a.student_id, cal.idx, cal.win_lo,
           cal.idx - ROW_NUMBER() OVER (PARTITION BY a.student_id ORDER BY cal.idx) AS island
    FROM students_attendancerecord a
    JOIN students_student s ON s.id = a.student_id
    JOIN cal ON cal.school_id = s.school_id AND cal.date = a.date
    WHERE s.is_active
      AND a.date >= s.enrollment_date AND (s.exit_date IS NULL OR a.date <= s.exit_date)
      AND (a.status IN ({absent_statuses}) OR a.fraction_present < 0.5)
),
islands AS (
    SELECT student_id, COUNT(*) AS length, MAX(idx) AS last_idx, MAX(win_lo) AS win_lo,
           SUM(CASE WHEN idx > win_lo THEN 1 ELSE 0 END) AS in_window
    FROM absent GROUP BY student_id, island
)
SELECT i.student_id, s.school_id, s.counselor_id, s.enrollment_date, s.exit_date,
       SUM(i.length), SUM(i.in_window),
       MAX(CASE WHEN i.last_idx > i.win_lo THEN i.length ELSE 0 END)
FROM islands i JOIN students_student s ON s.id = i.student_id
GROUP BY i.student_id, s.school_id, s.counselor_id, s.enrollment_date, s.exit_date
"""


def _date(value) -> dt.date:
    return dt.date.fromisoformat(value) if isinstance(value, str) else value


def attendance_risks(*, district: District, session: AcademicSession, as_of: dt.date) -> tuple[int, list[AttendanceRisk]]:
    """The district's chronically absent students as of a local date, with the rules that hold.

    A student is at risk when any holds (rates are absent days / enrolled instructional days):
    1. session rate >= the district threshold (inclusive), with at least the district's
       minimum enrolled days;
    2. rate over the last 30 instructional days >= the threshold (same minimum: a student
       enrolled for two days is not flagged by a rate);
    3. 10 or more absences this session;
    4. 3 or more consecutive absent instructional days ending in the last 30.
    Returns (active students checked, risks). Three queries whatever the district's size.
    """
    from students.models import Student

    last = min(as_of, session.end_date)
    first = session.start_date
    checked = Student.objects.filter(school__district=district, is_active=True).count()
    if last < first:
        return checked, []
    calendars = instructional_calendars(
        school_ids=list(district.schools.values_list("id", flat=True)), first=first, last=last
    )
    sql = _ABSENCES_SQL.format(window=WINDOW_DAYS, absent_statuses=", ".join("%s" for _ in ABSENT_STATUSES))
    with connection.cursor() as cursor:
        cursor.execute(sql, [district.pk, first, last, *[str(s) for s in ABSENT_STATUSES]])
        rows = cursor.fetchall()

    threshold = Fraction(Decimal(district.chronic_absence_threshold))
    minimum = district.min_enrolled_days
    risks: list[AttendanceRisk] = []
    for student_id, school_id, counselor_id, enrolled_on, exit_on, absences, window_absences, streak in rows:
        calendar = calendars.get(school_id)
        if calendar is None:
            continue
        lo = max(first, _date(enrolled_on))
        hi = min(last, _date(exit_on)) if exit_on else last
        enrolled = calendar.count_between(lo, hi)
        window_start = calendar.window_start(last, WINDOW_DAYS) or lo
        window_days = calendar.count_between(max(lo, window_start), hi)
        absences, window_absences, streak = int(absences), int(window_absences or 0), int(streak or 0)
        criteria = []
        if enrolled >= minimum and absences >= threshold * enrolled:
            criteria.append("session-rate")
        if enrolled >= minimum and window_days and window_absences >= threshold * window_days:
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
                )
            )
    risks.sort(key=lambda r: r.student_id)
    return checked, risks


def needs_tier_2(risk: AttendanceRisk, *, minimum_days: int) -> bool:
    return risk.enrolled_days >= minimum_days and risk.rate >= TIER_2_RATE
