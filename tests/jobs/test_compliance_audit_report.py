"""compliance-audit-report: FERPA access and disclosures from the trail, IDEA reviews and
service minutes, 504 reviews and implementers, state exports without directory opt-outs, a
stable content hash with evidence, once on the 2026-11-01 fall-back day through the real
scheduler, idempotency, query counts, the CLI."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from scheduling import registry, services
from scheduling.models import JobRun, Report
from skillcore.models import AccessLog
from students.models import Role
from tests import factories as f
from tests.jobs.slot_runs import local_slot, run_slot

SLUG = "compliance-audit-report"
UTC = dt.UTC


def run_month(district, *, again=False) -> JobRun:
    slot = local_slot(district, 2026, 11, 1, 1)  # 01:00 EDT, the first of the two
    with time_machine.travel(slot + dt.timedelta(minutes=1), tick=False):
        run = run_slot(SLUG, district, slot, trigger=JobRun.Trigger.MANUAL if again else JobRun.Trigger.SCHEDULE)
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    return run


def at(district, y, m, d, h=12, mi=0):
    return dt.datetime(y, m, d, h, mi, tzinfo=district.zone)


def read_csv(text):
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def world(district, school):
    principal = f.StaffFactory(username="princ", first_name="Rosa", last_name="Diaz", roles=[Role.PRINCIPAL], schools=[school])
    outsider = f.StaffFactory(username="far", roles=[Role.PRINCIPAL], schools=[f.SchoolFactory(district=f.DistrictFactory(name="Far"))])
    ana = f.StudentFactory(school=school, first_name="Ana", last_name="Ruiz", local_id="A1", grade_level=9)
    ben = f.StudentFactory(school=school, first_name="Ben", last_name="Opted", local_id="B2", grade_level=10, directory_opt_out=True)
    cy = f.StudentFactory(school=school, first_name="Cy", last_name="Later", local_id="C3")
    # FERPA trail: October in New York time. 23:30 on the 31st is in; 00:30 on Nov 1 is not.
    f.AccessLogFactory(at=at(district, 2026, 10, 5), actor=principal, actor_label="princ", model="students.Grade",
                       operation="view", row_count=3, student_ids=[ana.pk, ben.pk])
    f.AccessLogFactory(at=at(district, 2026, 10, 31, 23, 30), actor=principal, actor_label="princ", model="students.Grade",
                       operation="read", row_count=2, student_ids=[ana.pk])
    f.AccessLogFactory(at=at(district, 2026, 11, 1, 0, 30), actor=principal, actor_label="princ", model="students.Student",
                       operation="read", row_count=1, student_ids=[cy.pk])
    f.AccessLogFactory(at=at(district, 2026, 9, 30, 23, 59), actor=principal, actor_label="princ", model="students.Student",
                       operation="read", row_count=1, student_ids=[cy.pk])
    f.AccessLogFactory(at=at(district, 2026, 10, 9), actor=principal, actor_label="princ", model="students.Student",
                       operation="disclose", row_count=1, student_ids=[ana.pk], student_count=1,
                       recipient="County Health Department", purpose="health emergency (99.36)")
    f.AccessLogFactory(at=at(district, 2026, 10, 6), actor=outsider, actor_label="far", model="students.Student", operation="read")
    job_run = JobRun.objects.create(job="attendance-interventions", district=district, trigger="manual",
                                    slot=at(district, 2026, 10, 7), status="succeeded")
    f.AccessLogFactory(at=at(district, 2026, 10, 7, 6), job_run_id=job_run.pk, actor_label="job", model="students.AttendanceRecord",
                       operation="read", row_count=40, student_ids=[ana.pk, ben.pk, cy.pk])
    # IDEA: review overdue (due Oct 20), due soon (Nov 20), far (March): only two listed.
    overdue = f.IEPFactory(student=ana, last_annual_review=dt.date(2025, 10, 20))
    f.IEPFactory(student=ben, last_annual_review=dt.date(2025, 11, 20))
    f.IEPFactory(student=cy, last_annual_review=dt.date(2026, 3, 1))
    speech = f.IEPServiceFactory(iep=overdue, name="Speech therapy", minutes_per_month=120)
    f.ServiceLogFactory(service=speech, delivered_on=dt.date(2026, 10, 5), minutes=30)
    f.ServiceLogFactory(service=speech, delivered_on=dt.date(2026, 10, 19), minutes=30)
    f.ServiceLogFactory(service=speech, delivered_on=dt.date(2026, 9, 28), minutes=60)  # September: not counted
    ot = f.IEPServiceFactory(iep=ben.ieps.get(), name="Occupational therapy", minutes_per_month=60)
    f.ServiceLogFactory(service=ot, delivered_on=dt.date(2026, 10, 12), minutes=60)
    # 504: one past review with an unimplemented accommodation; one fine.
    late = f.Section504PlanFactory(student=cy, next_review_due=dt.date(2026, 10, 15))
    f.AccommodationFactory(plan=late, description="Preferential seating")
    fine = f.Section504PlanFactory(student=ben, next_review_due=dt.date(2027, 1, 20))
    f.AccommodationFactory(plan=fine, description="Extended time").implementers.add(principal)
    return {"ana": ana, "ben": ben, "cy": cy, "principal": principal, "speech": speech}


@pytest.mark.django_db
def test_report_content(district, world):
    run = run_month(district)
    report = Report.objects.get(kind="compliance-audit", district=district)
    assert (report.period_start, report.period_end) == (dt.date(2026, 10, 1), dt.date(2026, 10, 31))
    assert run.result["report_id"] == report.pk and run.result["month"] == "2026-10"

    access = {(r["actor"], r["records"]): r for r in read_csv(report.csv)}
    assert set(access) == {("princ", "students.Grade"), ("princ", "students.Student"), ("job attendance-interventions", "students.AttendanceRecord")}
    grades = access[("princ", "students.Grade")]
    assert (grades["operations"], grades["rows"], grades["distinct_students"]) == ("read 1, view 1", "5", "2")
    assert access[("princ", "students.Student")]["operations"] == "disclose 1"  # Sept 30 and Nov 1 are outside
    (disclosure,) = read_csv(report.extra_csv["ferpa-disclosures-2026-10.csv"])
    assert disclosure["recipient"] == "County Health Department" and disclosure["date"] == "2026-10-09"

    assert "overdue by 12 days" in report.html and "due in 19 days" in report.html
    assert "Later" not in report.html.split("IDEA: annual")[1].split("IDEA: special")[0]  # March review not listed
    assert report.evidence["inputs"]["ieps_due_or_overdue"] == 2

    # Service minutes: October only (60 of 120 speech; 60 of 60 OT).
    services_export = read_csv(report.extra_csv["state-idea-services-2026-10.csv"])
    assert [(r["state_student_id"], r["minutes_required"], r["minutes_delivered"]) for r in services_export] == [("A1", "120", "60")]
    assert "60 / 180" not in report.html and "120 / 180" in report.html  # delivered (capped per service) / required
    assert "1 of 2 services delivered in full" in report.html
    minutes = report.html.split("IDEA: special")[1].split("Section 504")[0]
    assert "Speech therapy" in minutes and "Occupational therapy" not in minutes  # only shortfalls are listed

    plans = read_csv(report.extra_csv["state-section-504-2026-10.csv"])
    assert [(p["state_student_id"], p["past_review"], p["without_implementer"]) for p in plans] == [("C3", "yes", "1")]
    assert "Preferential seating" in report.html
    assert report.evidence["inputs"]["accommodations_without_implementer"] == 1


@pytest.mark.django_db
def test_state_exports_leave_out_directory_opt_outs(district, world):
    run_month(district)
    report = Report.objects.get(kind="compliance-audit")
    for name in ("state-idea-services-2026-10.csv", "state-section-504-2026-10.csv"):
        text = report.extra_csv[name]
        assert "B2" not in text and "Opted" not in text
    assert report.evidence["inputs"]["directory_opt_outs_left_out"] == 1
    # The opted-out student is still counted in the compliance figures themselves.
    assert report.evidence["inputs"]["iep_services"] == 2 and report.evidence["inputs"]["plans_504"] == 2


@pytest.mark.django_db
def test_hash_is_stable_for_the_same_inputs_and_changes_with_them(district, world):
    first = run_month(district)
    report = Report.objects.get(kind="compliance-audit")
    again = run_month(district, again=True)
    assert again.result["content_hash"] == first.result["content_hash"] == Report.objects.get(pk=report.pk).content_hash
    assert (again.result["created"], again.result["changed"]) == (False, False)
    assert Report.objects.count() == 1
    assert report.evidence["window"] == {
        "start": "2026-10-01", "end": "2026-10-31", "time_zone": "America/New_York",
        "utc_start": "2026-10-01T04:00:00+00:00", "utc_end": "2026-11-01T04:00:00+00:00", "as_of": "2026-11-01",
    }
    f.ServiceLogFactory(service=world["speech"], delivered_on=dt.date(2026, 10, 26), minutes=15)
    third = run_month(district, again=True)
    assert third.result["changed"] and third.result["content_hash"] != first.result["content_hash"]
    assert Report.objects.count() == 1 and Report.objects.get().id == report.pk


@pytest.mark.django_db
def test_runs_once_on_the_fall_back_day_through_the_scheduler(district, world, monkeypatch):
    import django_q.scheduler

    from tests.scheduling.conftest import scheduler_pass

    # Keep pytest-django's transaction (the pass closes "old" connections), and fire only this job.
    monkeypatch.setattr(django_q.scheduler, "close_old_django_connections", lambda: None)
    job = registry.get(SLUG)
    monkeypatch.setattr(registry, "all_jobs", lambda: [job])
    with time_machine.travel(at(district, 2026, 10, 31, 12), tick=False) as traveller:
        services.sync_schedules()
        # Every 30 s from 00:50 EDT to 02:05 EST: the whole 01:00-01:59 hour happens twice
        # (05:00 and 06:00 UTC), so does the district's minute of the job's spread window.
        t, end = dt.datetime(2026, 11, 1, 4, 50, tzinfo=UTC), dt.datetime(2026, 11, 1, 7, 5, tzinfo=UTC)
        while t <= end:
            traveller.move_to(t)
            scheduler_pass()
            t += dt.timedelta(seconds=30)
    run = JobRun.objects.get(job=SLUG, district=district)  # (the "Far" district's own run is its own)
    minute = job.spread_offset(district.pk)  # the first 01:MM, EDT
    assert (run.slot, run.trigger, run.status) == (dt.datetime(2026, 11, 1, 5, minute, tzinfo=UTC), "schedule", "succeeded")
    assert Report.objects.filter(kind="compliance-audit", district=district).count() == 1


@pytest.mark.django_db
def test_query_count_is_flat(district, world, school):
    def queries(again):
        with CaptureQueriesContext(connection) as ctx:
            run_month(district, again=again)
        return len(ctx.captured_queries)

    run_month(district)
    # Both measured runs replace the stored report (one that finds the same content writes
    # nothing): a new trail entry for October changes the first one's content too.
    f.AccessLogFactory(at=at(district, 2026, 10, 4), actor=world["principal"], actor_label="princ")
    small = queries(True)
    for i in range(10):
        s = f.StudentFactory(school=school, directory_opt_out=i % 2 == 0)
        iep = f.IEPFactory(student=s, last_annual_review=dt.date(2025, 10, 1))
        f.ServiceLogFactory(service=f.IEPServiceFactory(iep=iep), delivered_on=dt.date(2026, 10, 2))
        f.AccommodationFactory(plan=f.Section504PlanFactory(student=s))
        f.AccessLogFactory(at=at(district, 2026, 10, 3), actor=world["principal"], actor_label="princ", student_ids=[s.pk])
    assert queries(True) == small


@pytest.mark.django_db
def test_jobs_run_command(district, world):
    out = io.StringIO()
    with time_machine.travel(at(district, 2026, 11, 2), tick=False):
        call_command("jobs", "run", SLUG, "--district", str(district.pk), "--as-of", "2026-11-01T01:00", "--json", stdout=out)
    assert json.loads(out.getvalue())["status"] == "succeeded"
    assert Report.objects.get(kind="compliance-audit").period_start == dt.date(2026, 10, 1)
    # The run's own reads are in the trail, after the month it reports on.
    assert AccessLog.objects.filter(purpose="scheduled job compliance-audit-report").exists()


@pytest.mark.django_db
def test_opening_the_report_in_admin_is_on_the_access_trail(district, world, client, system_admin):
    run_month(district)
    report = Report.objects.get(kind="compliance-audit")
    assert set(report.evidence["students_named"]) == {world["ana"].pk, world["ben"].pk, world["cy"].pk}
    client.force_login(system_admin)
    assert client.get(f"/admin/scheduling/report/{report.pk}/view/").status_code == 200
    name = "state-idea-services-2026-10.csv"
    download = client.get(f"/admin/scheduling/report/{report.pk}/csv/", {"name": name})
    assert download.status_code == 200 and download.content.decode() == report.extra_csv[name]
    assert client.get(f"/admin/scheduling/report/{report.pk}/csv/", {"name": "../../etc/passwd"}).status_code == 404
    views = AccessLog.objects.filter(actor=system_admin, model="scheduling.Report", operation="view").order_by("id")
    assert [v.purpose for v in views] == [
        "admin: view report compliance-audit", f"admin: download {name} of report compliance-audit",
    ]
    assert set(views[0].student_ids) == set(report.evidence["students_named"])


# -- exports are safe to open in a spreadsheet ---------------------------------------------------
HOSTILE = ['=HYPERLINK("http://x.invalid","x")', "+1", "-2", "@x", "\tx", "\rx"]


def downloaded_csvs(client, report) -> dict[str, list[list[str]]]:
    """Every CSV of the report as a person downloads it from the admin, parsed."""
    files = {}
    for name in [None, *sorted(report.extra_csv)]:
        response = client.get(f"/admin/scheduling/report/{report.pk}/csv/", {"name": name} if name else {})
        assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
        files[name or "main"] = list(csv.reader(io.StringIO(response.content.decode(), newline="")))
    return files


@pytest.mark.django_db
def test_every_csv_cell_that_reads_as_a_formula_is_neutralized_end_to_end(district, world, school, client, system_admin):
    for i, text in enumerate(HOSTILE):
        s = f.StudentFactory(school=school, first_name=text, last_name=text, local_id=f"H{i}", grade_level=9)
        f.Section504PlanFactory(student=s, next_review_due=dt.date(2027, 1, 20))
        service = f.IEPServiceFactory(iep=f.IEPFactory(student=s, last_annual_review=dt.date(2026, 3, 1)), name=text,
                                      minutes_per_month=30)
        f.ServiceLogFactory(service=service, delivered_on=dt.date(2026, 10, 5), minutes=10)
        f.AccessLogFactory(at=at(district, 2026, 10, 8), actor=world["principal"], actor_label=text, model="students.Student",
                           operation="disclose", row_count=1, student_ids=[s.pk], student_count=1, recipient=text, purpose=text)
    run_month(district)
    report = Report.objects.get(kind="compliance-audit")
    client.force_login(system_admin)
    files = downloaded_csvs(client, report)
    seen = {name: [c for row in rows for c in row] for name, rows in files.items()}
    # Each hostile text reached the files it belongs in, neutralized: names, service, recipient, actor.
    for text in HOSTILE:
        assert seen["state-section-504-2026-10.csv"].count("'" + text) == 2  # last and first name
        assert seen["state-idea-services-2026-10.csv"].count("'" + text) == 3  # names and the service
        assert seen["ferpa-disclosures-2026-10.csv"].count("'" + text) == 3  # who, to whom, why
        assert "'" + text in seen["main"]
    # And no cell of any file starts like a formula.
    for name, cells in seen.items():
        assert not [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))], name
    # The stored text is what was downloaded (neutralized when written, not only when served).
    for name, text in report.extra_csv.items():
        assert list(csv.reader(io.StringIO(text, newline=""))) == files[name]


@pytest.mark.django_db
def test_a_csv_stored_before_neutralizing_is_served_neutralized(district, client, system_admin):
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([["name", "trend", "note"], [HOSTILE[0], -3, "-2+3+cmd|' /C calc'!A0"],
                                                     ["@x", "-0.5", "+1"]])  # what the writer did before
    legacy = out.getvalue()
    report = Report.objects.create(kind="compliance-audit", district=district, period_start=dt.date(2026, 9, 1),
                                   period_end=dt.date(2026, 9, 30), title="old", html="<p>old</p>", csv=legacy,
                                   extra_csv={"old.csv": legacy}, evidence={}, content_hash="x" * 64,
                                   created_at=dt.datetime(2026, 10, 1, tzinfo=UTC), updated_at=dt.datetime(2026, 10, 1, tzinfo=UTC))
    client.force_login(system_admin)
    for rows in downloaded_csvs(client, report).values():
        assert rows == [["name", "trend", "note"], ["'=HYPERLINK(\"http://x.invalid\",\"x\")", "-3", "'-2+3+cmd|' /C calc'!A0"],
                        ["'@x", "-0.5", "'+1"]]  # bare numbers stay numbers


@pytest.mark.django_db
def test_report_changelist_and_change_page_are_on_the_access_trail(district, world, client, system_admin):
    run_month(district)
    report = Report.objects.get(kind="compliance-audit")
    named = set(report.evidence["students_named"])
    assert named == {world["ana"].pk, world["ben"].pk, world["cy"].pk}
    client.force_login(system_admin)
    listing = client.get("/admin/scheduling/report/")
    assert listing.status_code == 200 and report.title.encode() in listing.content
    page = client.get(f"/admin/scheduling/report/{report.pk}/change/")
    assert page.status_code == 200 and str(world["cy"].pk).encode() in page.content  # the evidence lists the ids
    views = AccessLog.objects.filter(actor=system_admin, model="scheduling.Report", operation="view").order_by("id")
    assert [(v.purpose, set(v.student_ids), v.student_count, v.row_count) for v in views] == [
        ("admin: changelist scheduling.report", named, 3, 1),
        ("admin: change report compliance-audit", named, 3, 1),
    ]


# -- how the report reads ------------------------------------------------------------------------
def table_rows(html: str, table_id: str) -> list[tuple[str, list[str]]]:
    """The rows of one table of the report as (the row's class, its cells' text)."""
    from html.parser import HTMLParser

    class Rows(HTMLParser):
        def __init__(self):
            super().__init__()
            self.inside, self.rows, self.cell = False, [], None

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "table":
                self.inside = attrs.get("id") == table_id
            elif self.inside and tag == "tr":
                self.rows.append((attrs.get("class") or "", []))
            elif self.inside and tag in ("td", "th"):
                self.cell = ""

        def handle_endtag(self, tag):
            if tag == "table":
                self.inside = False
            elif self.inside and tag in ("td", "th") and self.cell is not None:
                self.rows[-1][1].append(self.cell.strip())
                self.cell = None

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

    parser = Rows()
    parser.feed(html)
    return parser.rows


@pytest.mark.django_db
def test_shortfalls_are_grouped_by_school_and_service_with_subtotals(district, world, school):
    adams = f.SchoolFactory(district=district, name="Adams Elementary")  # sorts before the fixture's school
    for first, minutes, delivered in (("Dee", 1200, 200), ("Eli", 900, 0)):
        student = f.StudentFactory(school=adams, first_name=first, last_name="Adams", local_id=f"D{minutes}")
        iep = f.IEPFactory(student=student, last_annual_review=dt.date(2026, 3, 1))
        speech = f.IEPServiceFactory(iep=iep, name="Speech therapy", minutes_per_month=minutes)
        if delivered:
            f.ServiceLogFactory(service=speech, delivered_on=dt.date(2026, 10, 6), minutes=delivered)
        if first == "Dee":
            f.IEPServiceFactory(iep=iep, name="Counseling", minutes_per_month=600)
    run_month(district)
    html = Report.objects.get(kind="compliance-audit").html

    assert table_rows(html, "shortfalls") == [
        ("", ["Student", "ID", "Required", "Delivered", "Shortfall"]),
        ("group school", ["Adams Elementary"]),
        ("group service", ["Counseling"]),
        ("", ["Adams, Dee", "D1200", "600", "0", "600"]),
        ("subtotal", ["Subtotal, Counseling: 1 service", "600", "0", "600"]),
        ("group service", ["Speech therapy"]),
        ("", ["Adams, Dee", "D1200", "1,200", "200", "1,000"]),
        ("", ["Adams, Eli", "D900", "900", "0", "900"]),
        ("subtotal", ["Subtotal, Speech therapy: 2 services", "2,100", "200", "1,900"]),
        ("subtotal school-total", ["Total, Adams Elementary: 3 services", "2,700", "200", "2,500"]),
        ("group school", [school.name]),
        ("group service", ["Speech therapy"]),
        ("", ["Ruiz, Ana", "A1", "120", "60", "60"]),
        ("subtotal", ["Subtotal, Speech therapy: 1 service", "120", "60", "60"]),
        ("subtotal school-total", [f"Total, {school.name}: 1 service", "120", "60", "60"]),
    ]
    assert table_rows(html, "shortfalls-by-school") == [
        ("", ["School", "Services short", "Students", "Required", "Delivered", "Shortfall"]),
        ("", ["Adams Elementary", "3", "2", "2,700", "200", "2,500"]),
        ("", [school.name, "1", "1", "120", "60", "60"]),
        ("total", ["All schools", "4", "3", "2,820", "260", "2,560"]),
    ]
    # The headline's minutes: delivered (capped per service) of required, with separators.
    assert "320 / 2,880" in html  # 60 + 60 (OT in full) + 200 of 120 + 60 + 1,200 + 900 + 600
    assert "1 of 5 services delivered in full; 4 short of their monthly minutes, by school and service." in html


@pytest.mark.django_db
def test_evidence_reads_as_sentences(district, world):
    run_month(district)
    report = Report.objects.get(kind="compliance-audit")
    evidence = report.html.split('<div id="evidence">')[1].split("</div>")[0]
    sentences = [p.removeprefix("<p>") for p in evidence.split("</p>") if p]
    assert sentences == [
        "The month covered runs from October 1, 2026 to October 31, 2026 in the district&#x27;s time (America/New_York), "
        "that is from 2026-10-01 04:00 UTC to 2026-11-01 04:00 UTC; IEP and 504 status is as of November 1, 2026.",
        f"The access trail held {report.evidence['inputs']['access_log_rows']} entries for the month, and "
        "1 disclosure to a third party was recorded.",
        "2 IEPs have an annual review overdue or due within 30 days; 2 IEP services were checked against their monthly "
        "minutes; 0 IEP meetings were held without minutes.",
        "2 Section 504 plans are active, with 2 accommodations, 1 of them without an implementer.",
        "1 student who opted out of directory information (FERPA 99.37) is left out of the state exports.",
        "The report&#x27;s SHA-256 content hash is stored with it: the same inputs give the same hash.",
    ]
    # No key of the stored evidence (snake_case) is printed anywhere in the report.
    assert not [key for key in report.evidence["inputs"] if "_" in key and key in report.html]
