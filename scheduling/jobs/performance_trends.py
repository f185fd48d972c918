"""Performance trends: 0 3 * * 0 (district local time).

Why then: Sunday 03:00 local: a week of grades is complete and the heavy aggregation runs when nobody uses the system.

What it does, per active student of the district (in batches of 2,000 by id):
1. This week (the seven local days ending on the slot's local date) against the week
   before: grade average on percentages (score / max score), attendance rate over
   enrolled instructional days, assignment completion (submitted / due), behaviour
   incidents; UP / DOWN / STABLE at more than 5 points either way (incidents: any change);
   a week with no data gives no figure and no trend (NULL, never NaN).
2. Intervention effectiveness: attendance over the 10 instructional days before and after
   each intervention opened in the last 180 days.
3. Upsert one interventions.StudentAnalytics row per student and week.
4. A grade-average drop of more than 10 points alerts the student's counselor
   (performance-alert, high priority, email). Attendance drops do not alert here: one
   absent day in a 5-day week is 20 points; absences have the attendance job's rules.

Idempotency: rows are keyed (student, week start) and upserted; alerts carry the dedupe key
``performance-alert:<student>:<week start>:<counselor>:email``, so a re-run of the same slot
(or a manual run for the same week) writes no new row and sends nothing twice. A retry
resumes after the last batch saved in the checkpoint.

Student data read: students, grades (with assignment maximums), attendance records,
calendar days, section enrolments, assignments and submissions, behaviour incidents,
interventions. Written: StudentAnalytics, the notification outbox.
"""
from __future__ import annotations

from datetime import timedelta

from django.db import transaction

from notifications.summary_labels import ENQUEUE_FIGURES
from scheduling.registry import Job

BATCH = 2000


def run(ctx) -> dict:
    from interventions.models import StudentAnalytics
    from interventions.selectors import StudentWeek, district_students, intervention_effects, student_week_figures
    from interventions.trends import count_trend, drops, student_analytics_upsert, trend, week_bounds
    from notifications.models import Category, Channel, Priority
    from notifications.services import NotificationRequest, notifications_enqueue
    from students.models import Student

    district = ctx.district
    local_date = ctx.scheduled_for.astimezone(district.zone).date()
    this_week, last_week = week_bounds(local_date)
    ids = list(
        Student.objects.filter(school__district=district, is_active=True).order_by("id").values_list("id", flat=True)
    )
    after = int(ctx.checkpoint.get("after_student", 0)) if ctx.checkpoint.get("week") == this_week[0].isoformat() else 0
    todo = [i for i in ids if i > after]
    summary = {
        "students_checked": len(ids) - len(todo) if after else 0, "rows_upserted": 0, "grade_trends": 0,
        "no_grade_trend": 0, "up": 0, "down": 0, "stable": 0, "interventions_measured": 0, "alerts": 0,
        "notifications_queued": 0, "notifications_digested": 0, "notifications_suppressed": 0, "notifications_duplicate": 0,
        "week_start": this_week[0].isoformat(), "week_end": this_week[1].isoformat(),
    }
    for start in range(0, len(todo), BATCH):
        batch = todo[start:start + BATCH]
        id_range = (batch[0], batch[-1])
        students = district_students(district=district, id_range=id_range)
        figures = student_week_figures(district=district, weeks=[this_week, last_week], students=students, id_range=id_range)
        effects = intervention_effects(district=district, as_of=local_date, students=students, id_range=id_range)
        rows, requests = [], []
        for sid, s in students.items():
            now_w, prev_w = figures.get((sid, 0)) or StudentWeek(), figures.get((sid, 1)) or StudentWeek()
            row = StudentAnalytics(
                student_id=sid, week_start=this_week[0], week_end=this_week[1],
                grade_pct=now_w.grade_pct, grade_pct_prev=prev_w.grade_pct, grade_count=now_w.grade_count,
                attendance_pct=now_w.attendance_pct, attendance_pct_prev=prev_w.attendance_pct,
                completion_pct=now_w.completion_pct, completion_pct_prev=prev_w.completion_pct,
                incidents=now_w.incidents, incidents_prev=prev_w.incidents,
                intervention_effects=effects.get(sid, []), computed_at=ctx.scheduled_for, job_run_id=ctx.run.id,
            )
            row.grade_trend = trend(row.grade_pct, row.grade_pct_prev)
            row.attendance_trend = trend(row.attendance_pct, row.attendance_pct_prev)
            row.completion_trend = trend(row.completion_pct, row.completion_pct_prev)
            row.incidents_trend = count_trend(row.incidents, row.incidents_prev)
            fell = drops(row)
            row.alerted = bool(fell) and s.counselor_id is not None
            rows.append(row)
            if row.grade_trend is None:
                summary["no_grade_trend"] += 1
            else:
                summary["grade_trends"] += 1
                summary[row.grade_trend] += 1
            summary["interventions_measured"] += len(row.intervention_effects)
            if row.alerted:
                summary["alerts"] += 1
                requests.append(NotificationRequest(
                    recipient_id=s.counselor_id, category=Category.PERFORMANCE_ALERT, channel=Channel.EMAIL,
                    template="performance-trend-alert", priority=Priority.HIGH, student_id=sid,
                    context={
                        "student_name": f"{s.first_name} {s.last_name}", "week_start": this_week[0].isoformat(),
                        "week_end": this_week[1].isoformat(),
                        "drops": [{"metric": m, "before": f"{b:.1f}%", "now": f"{n:.1f}%"} for m, b, n in fell],
                    },
                    dedupe_key=f"performance-alert:{sid}:{this_week[0].isoformat()}:{s.counselor_id}:email",
                ))
        with transaction.atomic():
            summary["rows_upserted"] += student_analytics_upsert(rows=rows)
            if requests:
                sent = notifications_enqueue(requests, job_run_id=ctx.run.id, district_id=district.id, now=ctx.scheduled_for)
                summary["notifications_queued"] += sent.inserted
                summary["notifications_duplicate"] += sent.duplicates
                summary["notifications_digested"] += sent.digested
                summary["notifications_suppressed"] += sum(sent.suppressed.values())
            ctx.save_checkpoint({"week": this_week[0].isoformat(), "after_student": batch[-1]})
        summary["students_checked"] += len(batch)
        ctx.progress(summary["students_checked"], len(ids))
    ctx.logger.info("week %s..%s: %s students, %s alerts", this_week[0], this_week[1], summary["students_checked"], summary["alerts"])
    return summary


# What the run's summary figures mean on its page and in the CLI (scheduling/summaries.py).
FIGURES = {
    "week_start": "Week from",
    "week_end": "to",
    "students_checked": "Students checked",
    "rows_upserted": "Trend rows written",
    "grade_trends": "Grade trends computed",
    "no_grade_trend": ("No grade trend", "too few grades this week and last to compare"),
    "up": "Grades going up",
    "down": "Grades going down",
    "stable": "Grades stable",
    "interventions_measured": "Interventions measured",
    "alerts": ("Counselor alerts", "a grade drop of more than 10 points"),
    **ENQUEUE_FIGURES,  # the outbox's figures, the same words on every job
}


JOB = Job(
    slug='performance-trends',
    title='Performance trends',
    default_cron='0 3 * * 0',
    why=__doc__.split("Why then: ", 1)[1].split("\n\n", 1)[0].replace("\n", " "),
    scope='district',
    critical=False,
    expected_duration=timedelta(minutes=20),
    # Back-office: 03:00-03:59, still done hours before weekly-analytics-report (06:00).
    spread_minutes=60,
    timeout=3600,
    max_attempts=3,
    backoff_base=60,
    catch_up_window=timedelta(hours=12),
    overlap="skip",
    calendar="any day",
    figures=FIGURES,
    progress_unit="students",
    entry=run,
)
