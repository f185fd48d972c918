"""A district admin's read-only view of the scheduled-jobs dashboard: their own district's
schedules and runs (next run, last status, failures, held runs), nothing of another district
or of a global job (the dashboard's 404 page), no form and no action (every action and
action page is the dashboard's 403 page, and writes nothing), a fixed number of queries; the
system admin's dashboard keeps everything."""
from __future__ import annotations

import datetime as dt
import json

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from scheduling import services
from scheduling.models import JobRun, JobSchedule, RunHold, ScheduleChange
from students.models import Role
from tests import factories as f

pytestmark = pytest.mark.django_db
NOW = dt.datetime(2026, 11, 10, 15, 0, tzinfo=dt.UTC)


def url(name, *args):
    return reverse(f"admin:scheduled_jobs{name}", args=args)


def _run(district, job, status, *, days_ago=1, error="", seconds=30):
    started = NOW - dt.timedelta(days=days_ago, hours=2)
    return JobRun.objects.create(
        job=job, district=district, trigger=JobRun.Trigger.SCHEDULE, slot=started, status=status, started_at=started,
        finished_at=started + dt.timedelta(seconds=seconds), duration_seconds=seconds, error=error,
    )


def _hold(run):
    return RunHold.objects.create(
        run=run, held_at=run.finished_at, counts={"families": 900}, baseline={"families": 40, "runs": 10},
        limits={"multiplier": 5, "floor": 200, "cap": 5000}, reason="900 messages to families, usually 40",
        breakdown=[{"template": "attendance-intervention", "school": "Lakeside High", "audience": "families", "count": 900}],
        samples=[],
    )


@pytest.fixture
def world(district, school, district_admin):
    """Lakeside (the district admin's) and Far Hills, each with every job's schedule, a failed
    digest, a succeeded attendance run held by the blast-radius guard; a global job's run."""
    far = f.DistrictFactory(name="Far Hills Schools", time_zone="America/Denver")
    with time_machine.travel(NOW, tick=False):
        services.sync_schedules()
    objects = {}
    for d in (district, far):
        failed = _run(d, "grade-posting-digest", JobRun.Status.FAILED, error="OperationalError: the SIS timed out")
        held = _run(d, "attendance-interventions", JobRun.Status.HELD)
        objects[d.pk] = {"failed": failed, "held": held, "hold": _hold(held),
                         "schedules": {s.job: s for s in JobSchedule.objects.filter(district=d)}}
        for s in objects[d.pk]["schedules"].values():
            latest = JobRun.objects.filter(job=s.job, district=d).order_by("-started_at").first()
            JobSchedule.objects.filter(pk=s.pk).update(last_run=latest)
    global_schedule = JobSchedule.objects.get(job="system-health-summary", district=None)
    objects["global"] = {"schedule": global_schedule, "run": _run(None, "system-health-summary", JobRun.Status.SUCCEEDED)}
    return {"mine": objects[district.pk], "far": objects[far.pk], "far_district": far, "global": objects["global"]}


@pytest.fixture
def da_client(client, district_admin):
    client.force_login(district_admin)
    return client


def test_a_district_admin_sees_their_districts_schedules_and_runs(da_client, world, district):
    with time_machine.travel(NOW, tick=False):
        response = da_client.get(url(""))
    assert response.status_code == 200
    html = response.content.decode()
    mine, far = world["mine"], world["far"]
    # Every schedule of the district, with its next run and last status; nothing of Far Hills or global jobs.
    for schedule in mine["schedules"].values():
        assert f'id="schedule-{schedule.pk}"' in html, schedule.job
    for schedule in far["schedules"].values():
        assert f'id="schedule-{schedule.pk}"' not in html
    assert f'id="schedule-{world["global"]["schedule"].pk}"' not in html
    assert "Far Hills" not in html and "Scheduler heartbeat" not in html
    assert "Scheduled jobs — Lakeside Unified" in html
    row = html.split(f'id="schedule-{mine["schedules"]["grade-posting-digest"].pk}"')[1].split("</tr>")[0]
    assert 'sj-badge failed">failed' in row and url("_run", mine["failed"].pk) in row
    assert "UTC" in html.split('id="schedule-')[1].split("</tr>")[0]  # the next run, local with its offset
    # The district's figures: one failing schedule, one held run.
    tiles = html.split('id="district-status"')[1].split("</section>")[0]
    assert 'Failing</h3><div class="big">1<' in tiles and 'Held</h3><div class="big">1<' in tiles
    # Its held run, without the release and discard forms; Far Hills' hold is not there.
    assert f'id="hold-{mine["hold"].pk}"' in html and f'id="hold-{far["hold"].pk}"' not in html
    assert "A system administrator releases or discards these messages" in html
    # No action anywhere: not one form that posts, no action button or link.
    assert 'method="post"' not in html.replace('method="post" action="/admin/logout/"', "")
    for action in ("Run now", "Pause", "Resume", "Edit cron", "Release and send", "Discard"):
        assert f">{action}<" not in html, action


def test_a_district_admin_opens_a_schedule_and_a_run_of_their_district_read_only(da_client, world):
    mine = world["mine"]
    digest = mine["schedules"]["grade-posting-digest"]
    page = da_client.get(url("_schedule", digest.pk)).content.decode()
    assert "Grade posting digest" in page and "Lakeside Unified" in page and f'href="{url("_run", mine["failed"].pk)}"' in page
    run_page = da_client.get(url("_run", mine["failed"].pk))
    assert run_page.status_code == 200
    text = run_page.content.decode()
    assert "OperationalError: the SIS timed out" in text
    held_page = da_client.get(url("_run", mine["held"].pk)).content.decode()
    assert "undecided: a system administrator releases or discards it" in held_page
    for html in (page, text, held_page):
        assert 'method="post"' not in html.replace('method="post" action="/admin/logout/"', "")
        assert ">Retry now<" not in html and ">Run now<" not in html and ">Edit cron<" not in html
    progress = da_client.get(url("_run_progress", mine["failed"].pk))
    assert progress.status_code == 200 and json.loads(progress.content)["status"] == "failed"


def test_another_districts_or_a_global_schedule_or_run_is_the_dashboards_404(da_client, world):
    far, glob = world["far"], world["global"]
    for target in (url("_schedule", far["schedules"]["grade-posting-digest"].pk), url("_run", far["failed"].pk),
                   url("_run", far["held"].pk), url("_run_progress", far["failed"].pk),
                   url("_schedule", glob["schedule"].pk), url("_run", glob["run"].pk), url("_run", 987654)):
        response = da_client.get(target)
        assert response.status_code == 404, target
        html = response.content.decode()
        assert "404 · Not found" in html and "SkillCore district administration" in html, target
        assert "Far Hills" not in html and "SIS timed out" not in html


def test_every_action_is_the_dashboards_403_and_writes_nothing(da_client, world):
    mine = world["mine"]
    digest = mine["schedules"]["grade-posting-digest"]
    JobSchedule.objects.filter(pk=mine["schedules"]["attendance-interventions"].pk).update(paused=True, pause_note="x")
    paused = mine["schedules"]["attendance-interventions"]
    runs, changes, cron = JobRun.objects.count(), ScheduleChange.objects.count(), digest.cron
    for target, data in ((url("_run_now", digest.pk), {}), (url("_pause", digest.pk), {"note": "winter break"}),
                         (url("_resume", paused.pk), {}), (url("_retry", mine["failed"].pk), {}),
                         (url("_cron", digest.pk), {"cron": "0 5 * * *", "_save": "Save"}), (url("_delete", digest.pk), {}),
                         (url("_hold_decide", mine["hold"].pk, "release"), {"note": "please send"}),
                         (url("_hold_decide", mine["hold"].pk, "discard"), {"note": "drop"})):
        response = da_client.post(target, data)
        assert response.status_code == 403, target
        html = response.content.decode()
        assert "is for system administrators" in html and "read-only" in html, target
        assert "SkillCore district administration" in html
    for target in (url("_cron", digest.pk), url("_delete", digest.pk), url("_preview", digest.pk) + "?cron=0+5+*+*+*"):
        assert da_client.get(target).status_code == 403, target
    assert (JobRun.objects.count(), ScheduleChange.objects.count()) == (runs, changes)
    digest.refresh_from_db()
    assert (digest.paused, digest.cron, digest.removed_at) == (False, cron, None)
    assert JobSchedule.objects.get(pk=paused.pk).paused and RunHold.objects.get(pk=mine["hold"].pk).decision == ""


def _queries(client, target) -> int:
    with time_machine.travel(NOW, tick=False), CaptureQueriesContext(connection) as ctx:
        assert client.get(target).status_code == 200
    return len(ctx.captured_queries)


def test_the_district_admins_pages_cost_the_same_whatever_the_history(da_client, world, district):
    mine = world["mine"]
    targets = [url(""), url("_schedule", mine["schedules"]["grade-posting-digest"].pk), url("_run", mine["failed"].pk)]
    before = [_queries(da_client, t) for t in targets]
    for n in range(3):  # more districts, more runs, more holds: the same statements
        other = f.DistrictFactory(name=f"District {n}")
        with time_machine.travel(NOW, tick=False):
            services.sync_schedules()
        _hold(_run(other, "attendance-interventions", JobRun.Status.HELD))
    for days in range(2, 12):
        _run(district, "grade-posting-digest", JobRun.Status.SUCCEEDED, days_ago=days)
        _hold(_run(district, "attendance-interventions", JobRun.Status.HELD, days_ago=days))
    assert [_queries(da_client, t) for t in targets] == before
    assert max(before) <= 15, before


def test_the_system_admins_dashboard_keeps_every_district_and_action(client, system_admin, world):
    client.force_login(system_admin)
    with time_machine.travel(NOW, tick=False):
        html = client.get(url("")).content.decode()
    assert 'id="system-status"' in html and 'id="district-status"' not in html
    assert f'id="hold-{world["far"]["hold"].pk}"' in html and ">Release and send<" in html
    assert client.get(url("_run", world["far"]["failed"].pk)).content.decode().count(">Retry now<") == 1


def test_the_admin_index_lists_the_dashboard_for_district_admins(da_client, world):
    app_list = da_client.get(reverse("admin:index")).context["app_list"]
    scheduling = next(app for app in app_list if app["app_label"] == "scheduling")
    assert scheduling["models"][0]["name"] == "Scheduled jobs dashboard"


def test_a_principal_is_still_refused(client, school, world):
    client.force_login(f.StaffFactory(roles=[Role.PRINCIPAL], schools=[school]))
    response = client.get(url(""))
    assert response.status_code == 403
    assert "The scheduled-jobs dashboard is for system administrators" in response.content.decode()
