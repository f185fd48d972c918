"""Compliance audit report: 0 1 1 * * (district local time).

Why then: 01:00 local on the 1st: the previous month is closed; the report must exist exactly once per month (on 2026-11-01 01:00 happens twice in New York: it runs once).

What it does, for the calendar month before the slot's local date:
1. FERPA: who accessed which student records (the access trail: per person or job and
   model, trail entries per operation, rows, distinct students) and every disclosure to a
   third party.
2. IDEA: active IEPs whose annual review is overdue or due within 30 days of the report
   date; per IEP service, minutes required per month against minutes delivered (service
   logs dated in the month).
3. Section 504: active plans past their review date; accommodations without an implementer.
4. State export CSVs (IDEA services, 504 plans) that leave out students who opted out of
   directory information (FERPA 99.37), since they carry names, grade and school.
5. Stored as one Report (kind compliance-audit) with its SHA-256 content hash and the
   evidence of its inputs (counts, the time window in local and UTC terms).

Idempotency: the report is keyed (kind, district, month) and replaced in place; the same
inputs give the same bytes and the same hash (nothing in it depends on when it ran).

Student data read: the access trail, IEPs, IEP services and service logs, 504 plans and
accommodations, students (names, grade, school, directory opt-out).
"""
from __future__ import annotations

import datetime as dt
from datetime import timedelta

from scheduling.registry import Job
from scheduling.reports import number


def shortfall_groups(services: list[dict]) -> dict:
    """The services short of their monthly minutes, grouped by school and then by service,
    each group with its subtotals (required, delivered, shortfall), and the total over all.
    A principal reads their school's block; a coordinator the service's rows. Schools and
    services by name; students in the order read (by name)."""
    by_school: dict[str, dict[str, list[dict]]] = {}
    for s in services:
        if s["shortfall"]:
            by_school.setdefault(s["school"], {}).setdefault(s["service"], []).append(s)

    def totals(rows: list[dict]) -> dict:
        return {"required": sum(r["required"] for r in rows), "delivered": sum(r["delivered"] for r in rows),
                "shortfall": sum(r["shortfall"] for r in rows), "count": len(rows),
                "students": len({r["student_id"] for r in rows})}

    schools = []
    for school in sorted(by_school):
        groups = [{"service": name, "rows": rows, **totals(rows)} for name, rows in sorted(by_school[school].items())]
        schools.append({"school": school, "services": groups,
                        **totals([r for g in groups for r in g["rows"]])})
    return {"schools": schools, **totals([r for sc in schools for g in sc["services"] for r in g["rows"]])}


def _count(n: int, one: str, many: str) -> str:
    return f"{number(n)} {one if n == 1 else many}"


def _day(d: dt.date) -> str:
    return f"{d:%B} {d.day}, {d.year}"


def evidence_sentences(*, inputs: dict, window: dict) -> list[str]:
    """The evidence stored with the report (its inputs and time window), said in sentences
    for the printed page; the keys themselves stay in Report.evidence for machines."""
    first, last, as_of = (dt.date.fromisoformat(window[k]) for k in ("start", "end", "as_of"))
    utc = [dt.datetime.fromisoformat(window[k]).strftime("%Y-%m-%d %H:%M UTC") for k in ("utc_start", "utc_end")]
    i = inputs
    disclosed = _count(i["disclosures"], "disclosure", "disclosures")
    return [
        f"The month covered runs from {_day(first)} to {_day(last)} in the district's time ({window['time_zone']}), "
        f"that is from {utc[0]} to {utc[1]}; IEP and 504 status is as of {_day(as_of)}.",
        f"The access trail held {_count(i['access_log_rows'], 'entry', 'entries')} for the month, and "
        f"{disclosed} to a third party {'was' if i['disclosures'] == 1 else 'were'} recorded.",
        f"{_count(i['ieps_due_or_overdue'], 'IEP has', 'IEPs have')} an annual review overdue or due within 30 days; "
        f"{_count(i['iep_services'], 'IEP service was', 'IEP services were')} checked against "
        f"{'its' if i['iep_services'] == 1 else 'their'} monthly minutes; "
        f"{_count(i['iep_meetings_without_minutes'], 'IEP meeting was', 'IEP meetings were')} held without minutes.",
        f"{_count(i['plans_504'], 'Section 504 plan is', 'Section 504 plans are')} active, with "
        f"{_count(i['accommodations'], 'accommodation', 'accommodations')}, "
        f"{number(i['accommodations_without_implementer'])} of them without an implementer.",
        f"{_count(i['directory_opt_outs_left_out'], 'student who opted', 'students who opted')} out of directory "
        "information (FERPA 99.37) "
        f"{'is' if i['directory_opt_outs_left_out'] == 1 else 'are'} left out of the state exports.",
        "The report's SHA-256 content hash is stored with it: the same inputs give the same hash.",
    ]


def build(*, district, as_of: dt.date) -> dict:
    """Everything the report holds, as of a local date: title, html, csv, exports, evidence."""
    from iep import compliance
    from scheduling.reports import bar_chart, render_html, to_csv

    first, last = compliance.month_before(as_of)
    ferpa = compliance.ferpa_access(district=district, first=first, last=last)
    reviews = compliance.iep_reviews(district=district, as_of=as_of)
    for r in reviews:
        r["overdue_days"] = -r["days"]
    services = compliance.service_minutes(district=district, first=first, last=last)
    plans = compliance.plans_504(district=district, as_of=as_of)
    no_minutes = compliance.meetings_without_minutes(district=district, first=first, last=last)
    month = f"{first:%Y-%m}"

    access_rows = [
        {"actor": g.actor, "model": g.model, "operations": ", ".join(f"{op} {n}" for op, n in sorted(g.operations.items())),
         "queries": g.queries, "rows": g.rows, "students": len(g.students)}
        for g in ferpa.groups
    ]
    main_csv = to_csv(
        ["actor", "records", "operations", "queries", "rows", "distinct_students"],
        [[r["actor"], r["model"], r["operations"], r["queries"], r["rows"], r["students"]] for r in access_rows],
    )
    shown_services = [s for s in services if not s["opt_out"]]
    shown_plans = [p for p in plans if not p["opt_out"]]
    opted_out = len({s["student_id"] for s in services if s["opt_out"]} | {p["student_id"] for p in plans if p["opt_out"]})
    exports = {
        f"ferpa-disclosures-{month}.csv": to_csv(
            ["date", "disclosed_by", "recipient", "records", "students", "purpose"],
            [[d["date"], d["actor"], d["recipient"], d["model"], d["students"], d["purpose"]] for d in ferpa.disclosures],
        ),
        f"state-idea-services-{month}.csv": to_csv(
            ["state_student_id", "last_name", "first_name", "grade_level", "school_code", "service", "minutes_required",
             "minutes_delivered", "month"],
            [[s["local_id"], s["last_name"], s["first_name"], s["grade_level"], s["school_code"], s["service"], s["required"],
              s["delivered"], month] for s in shown_services],
        ),
        f"state-section-504-{month}.csv": to_csv(
            ["state_student_id", "last_name", "first_name", "grade_level", "school_code", "plan_start", "review_due",
             "past_review", "accommodations", "without_implementer"],
            [[p["local_id"], p["last_name"], p["first_name"], p["grade_level"], p["school_code"], p["start"], p["review_due"],
              "yes" if p["past_review"] else "no", p["accommodations"], len(p["without_implementer"])] for p in shown_plans],
        ),
    }
    by_school: dict[str, list[int]] = {}  # school -> [delivered (capped per service), required]
    for s in services:
        figures = by_school.setdefault(s["school"], [0, 0])
        figures[0] += min(s["delivered"], s["required"])
        figures[1] += s["required"]
    required = sum(s["required"] for s in services)
    delivered = sum(min(s["delivered"], s["required"]) for s in services)
    overdue = sum(1 for r in reviews if r["status"] == "overdue")
    past_review = [p for p in plans if p["past_review"]]
    unassigned = [p for p in plans if p["without_implementer"]]
    inputs = {
        "access_log_rows": ferpa.log_rows, "disclosures": len(ferpa.disclosures), "ieps_due_or_overdue": len(reviews),
        "iep_services": len(services), "plans_504": len(plans),
        "accommodations": sum(p["accommodations"] for p in plans),
        "accommodations_without_implementer": sum(len(p["without_implementer"]) for p in plans),
        "directory_opt_outs_left_out": opted_out, "iep_meetings_without_minutes": no_minutes,
    }
    start, end = (dt.datetime.combine(d, dt.time.min, tzinfo=district.zone) for d in (first, last + dt.timedelta(days=1)))
    evidence = {
        "window": {"start": first.isoformat(), "end": last.isoformat(), "time_zone": district.time_zone,
                   "utc_start": start.astimezone(dt.UTC).isoformat(), "utc_end": end.astimezone(dt.UTC).isoformat(),
                   "as_of": as_of.isoformat()},
        "inputs": inputs,
        # Who the HTML names (reviews, services, plans): viewing the report is a view of
        # these students' records, logged on the access trail by the admin's view page.
        "students_named": sorted({r["student_id"] for r in reviews} | {s["student_id"] for s in services}
                                 | {p["student_id"] for p in past_review + unassigned}),
    }
    title = f"Compliance audit: {district.name}, {first:%B %Y}"
    html = render_html("reports/compliance_audit.html", {
        "title": title, "district": district.name, "first": first, "last": last, "as_of": as_of, "time_zone": district.time_zone,
        "headline": [
            {"label": "Records accessed (students)", "value": ferpa.students},
            {"label": "Disclosures", "value": len(ferpa.disclosures)},
            {"label": "IEP reviews overdue", "value": overdue, "warn": overdue > 0},
            {"label": "IEP reviews due in 30 days", "value": len(reviews) - overdue},
            {"label": "Service minutes delivered", "value": f"{number(delivered)} / {number(required)}",
             "warn": delivered < required},
            {"label": "IEP meetings without minutes", "value": no_minutes, "warn": no_minutes > 0},
            {"label": "504 plans past review", "value": len(past_review), "warn": bool(past_review)},
            {"label": "Accommodations without implementer", "value": inputs["accommodations_without_implementer"],
             "warn": inputs["accommodations_without_implementer"] > 0},
        ],
        "ferpa": ferpa, "access_rows": access_rows, "reviews": reviews, "services": services,
        "chart_minutes": bar_chart(
            [(school, by_school[school][0] * 100 / by_school[school][1]) for school in sorted(by_school)],
            title="Service minutes delivered, % of required, by school",
        ),
        "shortfalls": shortfall_groups(services), "full_services": sum(1 for s in services if not s["shortfall"]),
        "plans_past_review": past_review, "unassigned": unassigned, "exports": sorted(exports), "opted_out": opted_out,
        "evidence": evidence_sentences(inputs=inputs, window=evidence["window"]),
    })
    return {"title": title, "first": first, "last": last, "html": html, "csv": main_csv, "exports": exports,
            "evidence": evidence, "inputs": inputs, "overdue": overdue}


def run(ctx) -> dict:
    from scheduling.models import Report
    from scheduling.reports import report_store

    district = ctx.district
    as_of = ctx.scheduled_for.astimezone(district.zone).date()
    built = build(district=district, as_of=as_of)
    stored = report_store(
        kind=Report.Kind.COMPLIANCE_AUDIT, district_id=district.pk, school_id=None, period_start=built["first"],
        period_end=built["last"], title=built["title"], html=built["html"], csv_text=built["csv"],
        extra_csv=built["exports"], evidence=built["evidence"], job_run_id=ctx.run.id, now=ctx.scheduled_for,
    )
    ctx.progress(1, 1)
    ctx.logger.info("compliance report %s for %s: hash %s", stored.report.pk, built["first"], stored.report.content_hash)
    return {
        "report_id": stored.report.pk, "month": f"{built['first']:%Y-%m}", "created": stored.created, "changed": stored.changed,
        "content_hash": stored.report.content_hash, **built["inputs"],
    }


# What the run's summary figures mean on its page and in the CLI (scheduling/summaries.py).
FIGURES = {
    "report_id": "Report number",
    "month": "Month audited",
    "created": ("New report", "no report for this month existed"),
    "changed": ("Changed", "its figures differ from the stored report's"),
    "content_hash": ("Content fingerprint", "SHA-256 of the report: the same data gives the same fingerprint"),
    "access_log_rows": "Access-trail rows in the month",
    "disclosures": "Disclosures recorded",
    "ieps_due_or_overdue": "IEP reviews due or overdue",
    "iep_services": "IEP services checked",
    "plans_504": "504 plans",
    "accommodations": "504 accommodations",
    "accommodations_without_implementer": "Accommodations with no implementer",
    "directory_opt_outs_left_out": ("Directory opt-outs left out", "students whose families opted out of directory information"),
    "iep_meetings_without_minutes": "IEP meetings held without minutes",
}


JOB = Job(
    slug='compliance-audit-report',
    title='Compliance audit report',
    default_cron='0 1 1 * *',
    why=__doc__.split("Why then: ", 1)[1].split("\n\n", 1)[0].replace("\n", " "),
    scope='district',
    critical=True,
    expected_duration=timedelta(minutes=30),
    # Back-office: 01:00-01:59 keeps the month closed and ends before data-archival (03:00).
    spread_minutes=60,
    timeout=3600,
    max_attempts=3,
    backoff_base=60,
    catch_up_window=timedelta(days=2),
    overlap="skip",
    calendar="any day",
    figures=FIGURES,
    progress_unit="reports",
    entry=run,
)
