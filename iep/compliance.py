"""Set-based reads for the monthly compliance audit (FERPA, IDEA, Section 504) and the state
export rows. Every function takes the district and the month's bounds and returns plain,
ordered data, so the report built from it is byte-for-byte the same for the same inputs.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from django.db.models import Count, Q, Sum

from interventions.selectors import _local_bounds
from students.models import District, StaffProfile


def month_before(day: dt.date) -> tuple[dt.date, dt.date]:
    """The calendar month before the one ``day`` is in: (first day, last day)."""
    last = day.replace(day=1) - dt.timedelta(days=1)
    return last.replace(day=1), last


# -- FERPA ------------------------------------------------------------------------------------
@dataclass
class AccessGroup:
    actor: str
    model: str
    operations: Counter = field(default_factory=Counter)  # operation -> log rows
    queries: int = 0
    rows: int = 0
    students: set = field(default_factory=set)


@dataclass
class FerpaFigures:
    groups: list[AccessGroup]
    disclosures: list[dict]
    log_rows: int
    actors: int
    students: int


def ferpa_access(*, district: District, first: dt.date, last: dt.date) -> FerpaFigures:
    """Who accessed which student records in the month, from the access trail.

    The district's rows are those written by its staff (StaffProfile) or by its job runs.
    Grouped per actor (label, and a job run counts as "job <slug>") and model: log rows per
    operation, queries, rows and distinct students. Disclosures (operation "disclose") are
    listed one by one. Streams the month's rows once (two queries with the run lookup).
    """
    from scheduling.models import JobRun
    from skillcore.models import AccessLog

    start, end = _local_bounds(first, last, district.zone)
    in_month = AccessLog.objects.filter(at__gte=start, at__lt=end)
    runs = dict(
        JobRun.objects.filter(district=district, id__in=in_month.filter(job_run_id__isnull=False).values("job_run_id"))
        .values_list("id", "job")
    )
    staff = StaffProfile.objects.filter(district=district).values("user_id")
    logs = (
        in_month.filter(Q(actor_id__in=staff) | Q(job_run_id__in=list(runs)))
        .order_by("at", "id")
        .values_list("at", "actor_label", "job_run_id", "model", "operation", "query_count", "row_count", "student_ids",
                     "recipient", "purpose", "student_count")
    )
    groups: dict[tuple[str, str], AccessGroup] = {}
    disclosures: list[dict] = []
    everyone: set = set()
    n = 0
    for at, label, run_id, model, op, queries, rows, student_ids, recipient, purpose, student_count in logs.iterator(chunk_size=2000):
        n += 1
        actor = f"job {runs[run_id]}" if run_id in runs else label
        g = groups.setdefault((actor, model), AccessGroup(actor=actor, model=model))
        g.operations[op] += 1
        g.queries += queries
        g.rows += rows
        g.students.update(student_ids or ())
        everyone.update(student_ids or ())
        if op == "disclose":
            disclosures.append({
                "date": at.astimezone(district.zone).date().isoformat(), "actor": actor, "recipient": recipient,
                "model": model, "students": student_count or len(student_ids or ()), "purpose": purpose,
            })
    ordered = sorted(groups.values(), key=lambda g: (g.actor, g.model))
    return FerpaFigures(groups=ordered, disclosures=disclosures, log_rows=n,
                        actors=len({g.actor for g in ordered}), students=len(everyone))


# -- IDEA -------------------------------------------------------------------------------------
REVIEW_HORIZON_DAYS = 30


def iep_reviews(*, district: District, as_of: dt.date) -> list[dict]:
    """Active IEPs whose annual review is overdue (due before ``as_of``) or due within 30 days."""
    from iep.models import IEP

    rows = (
        IEP.objects.filter(status=IEP.Status.ACTIVE, student__school__district=district, student__is_active=True,
                           next_review_due__lte=as_of + dt.timedelta(days=REVIEW_HORIZON_DAYS))
        .order_by("next_review_due", "student__last_name", "student__first_name", "pk")
        .values("pk", "next_review_due", "student_id", "student__local_id", "student__first_name", "student__last_name",
                "student__school__name", "case_manager__first_name", "case_manager__last_name", "case_manager__username")
    )
    out = []
    for r in rows:
        days = (r["next_review_due"] - as_of).days
        manager = " ".join(x for x in (r["case_manager__first_name"], r["case_manager__last_name"]) if x) or (r["case_manager__username"] or "")
        out.append({
            "student": f"{r['student__last_name']}, {r['student__first_name']}", "student_id": r["student_id"],
            "local_id": r["student__local_id"],
            "school": r["student__school__name"], "case_manager": manager or "none", "due": r["next_review_due"].isoformat(),
            "status": "overdue" if days < 0 else "due soon", "days": days,
        })
    return out


def service_minutes(*, district: District, first: dt.date, last: dt.date) -> list[dict]:
    """Each service of an active IEP: minutes required per month against minutes delivered
    (service logs dated in the month). One query."""
    from iep.models import IEPService

    rows = (
        IEPService.objects.filter(iep__status="active", iep__student__school__district=district, iep__student__is_active=True)
        .annotate(delivered=Sum("logs__minutes", filter=Q(logs__delivered_on__gte=first, logs__delivered_on__lte=last)))
        .order_by("iep__student__last_name", "iep__student__first_name", "iep__student_id", "name", "pk")
        .values("pk", "name", "minutes_per_month", "delivered", "iep__student_id", "iep__student__local_id",
                "iep__student__first_name", "iep__student__last_name", "iep__student__grade_level",
                "iep__student__school__code", "iep__student__school__name", "iep__student__directory_opt_out")
    )
    return [
        {
            "service": r["name"], "required": r["minutes_per_month"], "delivered": int(r["delivered"] or 0),
            "shortfall": max(0, r["minutes_per_month"] - int(r["delivered"] or 0)), "student_id": r["iep__student_id"],
            "local_id": r["iep__student__local_id"], "first_name": r["iep__student__first_name"],
            "last_name": r["iep__student__last_name"], "grade_level": r["iep__student__grade_level"],
            "school_code": r["iep__student__school__code"], "school": r["iep__student__school__name"],
            "opt_out": r["iep__student__directory_opt_out"],
        }
        for r in rows
    ]


# -- Section 504 ------------------------------------------------------------------------------
def plans_504(*, district: District, as_of: dt.date) -> list[dict]:
    """Active 504 plans with their accommodations and how many have no implementer. Two queries."""
    from iep.models import Accommodation, Section504Plan

    plans = list(
        Section504Plan.objects.filter(status="active", student__school__district=district, student__is_active=True)
        .order_by("student__last_name", "student__first_name", "pk")
        .values("pk", "start_date", "next_review_due", "student_id", "student__local_id", "student__first_name",
                "student__last_name", "student__grade_level", "student__school__code", "student__school__name",
                "student__directory_opt_out")
    )
    unassigned: dict[int, list[str]] = defaultdict(list)
    totals: Counter = Counter()
    for plan_id, description, implementers in (
        Accommodation.objects.filter(plan_id__in=[p["pk"] for p in plans])
        .annotate(n=Count("implementers")).order_by("plan_id", "description", "pk").values_list("plan_id", "description", "n")
    ):
        totals[plan_id] += 1
        if implementers == 0:
            unassigned[plan_id].append(description)
    return [
        {
            "plan": p["pk"], "student": f"{p['student__last_name']}, {p['student__first_name']}", "student_id": p["student_id"],
            "local_id": p["student__local_id"], "first_name": p["student__first_name"], "last_name": p["student__last_name"],
            "grade_level": p["student__grade_level"], "school_code": p["student__school__code"], "school": p["student__school__name"],
            "opt_out": p["student__directory_opt_out"], "start": p["start_date"].isoformat(),
            "review_due": p["next_review_due"].isoformat(), "past_review": p["next_review_due"] < as_of,
            "accommodations": totals[p["pk"]], "without_implementer": unassigned.get(p["pk"], []),
        }
        for p in plans
    ]


def meetings_without_minutes(*, district: District, first: dt.date, last: dt.date) -> int:
    """IEP meetings of the month (their local date in [first, last]) that were not cancelled
    and have no minutes (the district's rule: a meeting is recorded as held only with them;
    one still "scheduled" after its date was held, or missed, without a record). One query."""
    from iep.models import IEPMeeting

    start, end = (dt.datetime.combine(d, dt.time.min, tzinfo=district.zone) for d in (first, last + dt.timedelta(days=1)))
    return IEPMeeting.objects.filter(
        iep__student__school__district=district, scheduled_for__gte=start, scheduled_for__lt=end,
        status__in=["scheduled", "held"], minutes__isnull=True,
    ).count()

