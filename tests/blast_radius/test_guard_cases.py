"""The blast-radius guard beside the happy path: the baseline with fewer than ten runs, one
audience over while the other is not, the cap's boundary, limits of another job or district,
a released hold's approved retry kept out of the baseline, a decision by a district admin,
two system admins deciding the same hold at once, a second retry of a held run, and the
24-hour escalation run by two schedulers at once.

The real runner and the real attendance-interventions job (tests/blast_radius/conftest.py);
the concurrent cases need PostgreSQL's row locks and are skipped on SQLite."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
import time_machine
from django.db import connection, connections

from interventions.models import Intervention
from notifications.models import Notification
from scheduling import blast_radius, runner, services
from scheduling.blast_radius import Limits, baseline, verdict
from scheduling.models import AlertDelivery, BlastRadiusLimit, Incident, JobRun, RunHold, ScheduleChange
from scheduling.monitoring import alerting
from tests import factories as f
from tests.blast_radius.conftest import SLUG, STUDENTS, run_attendance, seed_history

BASE = dt.datetime(2026, 9, 1, 22, 30, tzinfo=dt.UTC)


def history(district, counts: list[tuple[int, int]], *, job: str = SLUG, first_day: int = 0) -> None:
    """Successful runs, oldest first from ``first_day``, each with (families, staff) messages."""
    JobRun.objects.bulk_create([
        JobRun(job=job, district=district, trigger="schedule", slot=BASE + dt.timedelta(days=i), status="succeeded",
               started_at=BASE + dt.timedelta(days=i), outbound={"families": fam, "staff": staff})
        for i, (fam, staff) in enumerate(counts, start=first_day)
    ])


def held_run(district, all_absent) -> JobRun:
    seed_history(district, staff=2)
    run = run_attendance(district, all_absent["days"][-1])
    assert run.status == JobRun.Status.HELD, (run.status, run.error)
    return run


@pytest.mark.django_db
def test_with_fewer_than_ten_runs_the_baseline_is_the_median_of_those_there_are(district):
    history(district, [(10, 1), (30, 3)])
    assert baseline(job_slug=SLUG, district_id=district.pk) is None  # two runs: no baseline, the cap only
    history(district, [(20, 2), (1000, 100)], first_day=2)
    # Four runs: the median of four is the mean of the middle two.
    assert baseline(job_slug=SLUG, district_id=district.pk) == {"families": 25, "staff": 2.5, "runs": 4}


@pytest.mark.django_db
def test_each_audience_is_judged_against_its_own_baseline():
    usual = {"families": 1000, "staff": 2}
    # Staff 11x their usual and over 200, far below the families' volume: held.
    assert verdict({"families": 900, "staff": 220}, usual, Limits()) == (
        "220 messages to staff, more than 5x the baseline of 2 and more than 200")
    # Families 4,000 is 4x: within, whatever the staff's 2.
    assert verdict({"families": 4000, "staff": 2}, usual, Limits()) is None
    assert verdict({"families": 5001, "staff": 0}, usual, Limits()).startswith("5001 messages to families")


@pytest.mark.django_db
def test_the_cap_is_more_than_cap_messages_in_all_audiences():
    limits = Limits(cap=100)
    assert verdict({"families": 60, "staff": 40}, None, limits) is None  # exactly the cap: within
    assert verdict({"families": 60, "staff": 41}, None, limits) == "101 messages, over the cap of 100"
    # With a baseline too: the cap holds whatever the baseline.
    assert verdict({"families": 101, "staff": 0}, {"families": 100, "staff": 0}, limits)


@pytest.mark.django_db
def test_limits_of_another_job_or_another_district_do_not_apply(district):
    other = f.DistrictFactory(name="Other")
    BlastRadiusLimit.objects.create(district=other, job="", multiplier=2, floor=5, cap=50)
    BlastRadiusLimit.objects.create(district=other, job=SLUG, multiplier=3, floor=6, cap=60)
    BlastRadiusLimit.objects.create(district=district, job="grade-posting-digest", multiplier=9, floor=9, cap=90)
    assert Limits.for_job(job_slug=SLUG, district_id=district.pk) == Limits()
    BlastRadiusLimit.objects.create(district=district, job="", multiplier=4, floor=7, cap=70)
    assert Limits.for_job(job_slug=SLUG, district_id=district.pk) == Limits(4, 7, 70)
    assert Limits.for_job(job_slug="grade-posting-digest", district_id=district.pk) == Limits(9, 9, 90)
    assert Limits.for_job(job_slug=SLUG, district_id=other.pk) == Limits(3, 6, 60)
    # Another district's history is not this district's baseline either.
    history(other, [(0, 500)] * 5)
    assert baseline(job_slug=SLUG, district_id=district.pk) is None


@pytest.mark.django_db
def test_a_district_admin_may_neither_release_nor_discard(district, all_absent, limits, district_admin):
    run = held_run(district, all_absent)
    for act in (blast_radius.hold_release, blast_radius.hold_discard):
        with pytest.raises(blast_radius.HoldError, match="only a system admin"):
            act(hold=run.hold, acting_user=district_admin, note="Checked with the school")
    run.hold.refresh_from_db()
    assert run.hold.decision == "" and JobRun.objects.get(pk=run.pk).status == JobRun.Status.HELD
    assert not ScheduleChange.objects.exists() and not JobRun.objects.filter(retry_of=run).exists()


@pytest.mark.django_db
def test_a_released_holds_approved_retry_is_not_a_usual_volume(district, all_absent, limits, system_admin):
    """The approved retry of a release sends the held volume; the next runs' baseline must
    not learn it as usual (released runs do not count, nor does the run that released them)."""
    run = held_run(district, all_absent)
    blast_radius.hold_release(hold=run.hold, acting_user=system_admin, note="Import checked")
    retry = JobRun.objects.get(retry_of=run, status=JobRun.Status.QUEUED)
    with time_machine.travel(run.finished_at + dt.timedelta(hours=1), tick=False):
        retry = runner.execute(retry.pk)
    assert retry.status == JobRun.Status.SUCCEEDED and retry.outbound == {"families": 0, "staff": STUDENTS}

    assert baseline(job_slug=SLUG, district_id=district.pk) == {"families": 0, "staff": 2, "runs": 3}


@pytest.mark.django_db
def test_a_second_retry_of_a_held_run_holds_again_and_sends_nothing(district, all_absent, limits, system_admin):
    run = held_run(district, all_absent)
    first = services.retry_run(run=run, acting_user=system_admin)
    with time_machine.travel(run.finished_at + dt.timedelta(minutes=5), tick=False):
        first = runner.execute(first.pk)
    # Staff retry the original run again (its page still offers it): held again.
    second = services.retry_run(run=run, acting_user=system_admin)
    with time_machine.travel(run.finished_at + dt.timedelta(minutes=10), tick=False):
        second = runner.execute(second.pk)

    assert (first.status, second.status) == (JobRun.Status.HELD, JobRun.Status.HELD)
    assert second.note.startswith(f"held: a retry of held run #{first.pk}")
    assert list(RunHold.objects.order_by("id").values_list("decision", flat=True)) == ["superseded", "superseded", ""]
    assert not Intervention.objects.exists() and not Notification.objects.exists()
    assert [h.run_id for h in blast_radius.undecided_holds()] == [second.pk]


@pytest.mark.django_db
def test_a_released_run_cannot_be_retried(district, all_absent, limits, system_admin):
    run = held_run(district, all_absent)
    blast_radius.hold_discard(hold=run.hold, acting_user=system_admin, note="Bad import")
    with pytest.raises(services.ScheduleError, match="is discarded"):
        services.retry_run(run=JobRun.objects.get(pk=run.pk), acting_user=system_admin)


def _at_once(calls) -> list:
    """Run the calls in threads released together; each thread's result or exception."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def worker(i, call):
        try:
            barrier.wait()
            results[i] = call()
        except Exception as exc:  # collected: the test asserts which one lost
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


@pytest.mark.django_db(transaction=True)
def test_two_admins_deciding_the_same_hold_at_once_decide_it_once(district, all_absent, limits, system_admin):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent decisions need PostgreSQL's row locks (SQLite serializes the whole database)")
    run = held_run(district, all_absent)
    other_admin = f.UserFactory(username="sysadmin2", is_staff=True, is_superuser=True)
    hold = run.hold

    results = _at_once([
        lambda: blast_radius.hold_release(hold=hold, acting_user=system_admin, note="first"),
        lambda: blast_radius.hold_release(hold=hold, acting_user=other_admin, note="second"),
        lambda: blast_radius.hold_discard(hold=hold, acting_user=other_admin, note="third"),
    ])

    won = [r for r in results if isinstance(r, RunHold)]
    lost = [r for r in results if isinstance(r, blast_radius.HoldError)]
    assert len(won) == 1 and len(lost) == 2, results
    assert all("already" in str(e) for e in lost)
    assert ScheduleChange.objects.count() <= 1  # no schedule synced: none, else one
    decided = RunHold.objects.get(pk=hold.pk)
    assert decided.note == won[0].note
    # A release queued one approved retry; a discard, none.
    assert JobRun.objects.filter(retry_of=run).count() == (1 if decided.decision == "released" else 0)


@pytest.mark.django_db(transaction=True)
def test_two_schedulers_escalating_at_once_escalate_a_hold_once(district, all_absent, limits, settings, httpserver):
    if connection.vendor != "postgresql":
        pytest.skip("concurrent escalations need PostgreSQL's row locks (SQLite serializes the whole database)")
    settings.PAGERDUTY_ROUTING_KEY = "R0UT1NGKEY"
    settings.PAGERDUTY_EVENTS_URL = httpserver.url_for("/v2/enqueue")  # a real HTTP server on localhost
    httpserver.expect_request("/v2/enqueue", method="POST").respond_with_json({"status": "success"}, status=202)
    run = held_run(district, all_absent)
    later = run.hold.held_at + dt.timedelta(hours=24, seconds=1)

    results = _at_once([lambda: alerting.escalate_undecided_holds(now=later)] * 2)

    assert sum(results) == 1, results
    incident = Incident.objects.get(kind=Incident.Kind.HELD_UNDECIDED)
    assert incident.occurrences == 1
    assert AlertDelivery.objects.filter(incident=incident).count() == 1
    assert len([r for r, _ in httpserver.log if b"held-24h" in r.data or b"with no decision" in r.data]) == 1
    assert alerting.escalate_undecided_holds(now=later + dt.timedelta(hours=24)) == 0


# -- a job whose messages are held (not proposals): the outbox test job --------------------------
@pytest.fixture
def notice_job():
    from scheduling import registry
    from tests.blast_radius.test_held_outbox import NOTICE, notice

    job = registry.Job(slug=NOTICE, title="Family notice (test)", default_cron="0 18 * * *", why="test", entry=notice)
    registry.register(job)
    yield job
    registry.unregister(NOTICE)


def held_notice(district, notice_job) -> JobRun:
    from tests.jobs.slot_runs import local_slot, run_slot

    seed_history(district, job=notice_job.slug, families=2, staff=0)
    BlastRadiusLimit.objects.create(district=district, job=notice_job.slug, floor=10)
    slot = local_slot(district, 2026, 10, 6, 18, 0)
    with time_machine.travel(slot + dt.timedelta(minutes=1), tick=False):
        run = run_slot(notice_job.slug, district, slot)
    assert run.status == JobRun.Status.HELD and run.outbound == {"families": 40, "staff": 0}
    return run


@pytest.fixture
def families(district, school):
    from students.models import Role

    for i in range(40):
        guardian = f.UserFactory(username=f"parent{i}", email=f"parent{i}@example.org", roles=[Role.GUARDIAN])
        f.GuardianLinkFactory(guardian=guardian, student=f.StudentFactory(school=school))


@pytest.mark.django_db
def test_a_retry_of_a_held_message_run_takes_them_over_and_a_release_sends_each_once(
        district, families, notice_job, system_admin, smtp_server):
    from notifications import delivery

    run = held_notice(district, notice_job)
    retry = services.retry_run(run=run, acting_user=system_admin)
    with time_machine.travel(run.finished_at + dt.timedelta(minutes=5), tick=False):
        retry = runner.execute(retry.pk)

    assert retry.status == JobRun.Status.HELD and retry.outbound == {"families": 40, "staff": 0}
    assert Notification.objects.count() == 40 and set(Notification.objects.values_list("job_run_id", flat=True)) == {
        retry.pk}
    at = run.finished_at + dt.timedelta(hours=15)  # 09:00 the next morning: inside the window
    blast_radius.hold_release(hold=retry.hold, acting_user=system_admin, note="Real notices", now=at)
    with time_machine.travel(at + dt.timedelta(minutes=1), tick=False):
        delivery.drain()
        delivery.drain()
    assert sorted(m["To"] for m in smtp_server.messages) == sorted(f"parent{i}@example.org" for i in range(40))


@pytest.mark.django_db
def test_the_limits_admin_refuses_a_second_row_and_a_zero_multiplier(client, system_admin, district):
    BlastRadiusLimit.objects.create(district=district, job=SLUG, multiplier=5, floor=10, cap=100)
    client.force_login(system_admin)
    url = "/admin/scheduling/blastradiuslimit/add/"
    same = client.post(url, {"district": district.pk, "job": SLUG, "multiplier": 3, "floor": 1, "cap": 9})
    zero = client.post(url, {"district": district.pk, "job": "", "multiplier": 0, "floor": 1, "cap": 0})
    unknown = client.post(url, {"district": district.pk, "job": "no-such-job", "multiplier": 3, "floor": 1, "cap": 9})
    for page in (same, zero, unknown):
        assert page.status_code == 200 and "errorlist" in page.content.decode()
    assert list(BlastRadiusLimit.objects.values_list("job", "multiplier")) == [(SLUG, 5)]


@pytest.mark.django_db(transaction=True)
def test_a_retry_judged_while_an_admin_releases_the_hold_neither_deadlocks_nor_holds_nothing(
        district, families, notice_job, system_admin):
    """An admin's release locks the hold, then the held rows; the retry's judgement must take
    the same locks in the same order (else each waits for the other: a deadlock, the admin's
    page a 500) and see the decision once it is made."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL's row locks (SQLite serializes the whole database)")
    import time

    from django.db import transaction

    run = held_notice(district, notice_job)
    retry = services.retry_run(run=run, acting_user=system_admin)
    locked, results = threading.Event(), {}

    def admin():
        try:
            with transaction.atomic():
                RunHold.objects.select_for_update().get(pk=run.hold.pk)  # the admin's decision under way
                locked.set()
                time.sleep(1.5)  # the retry's judgement reaches the hold meanwhile
                results["admin"] = blast_radius.hold_release(hold=run.hold, acting_user=system_admin, note="Real")
        except Exception as exc:  # asserted below
            results["admin"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=admin)
    thread.start()
    assert locked.wait(10)
    with time_machine.travel(run.finished_at + dt.timedelta(minutes=5), tick=True):
        retry = runner.execute(retry.pk)
    thread.join(30)

    assert isinstance(results["admin"], RunHold) and results["admin"].messages_affected == 40, results
    # The retry saw the release: nothing left held, nothing to hold again; each message once.
    assert retry.status == JobRun.Status.SUCCEEDED, (retry.status, retry.note)
    assert not RunHold.objects.filter(decision="").exists()
    assert Notification.objects.count() == 40
    assert not Notification.objects.filter(status="held").exists()


@pytest.mark.django_db
def test_the_24_hours_run_from_the_first_hold_whatever_the_retries(district, all_absent, limits, system_admin):
    """Retrying a held run is not a decision: it must neither push the escalation back nor
    escalate a second time."""
    run = held_run(district, all_absent)
    first_held = run.hold.held_at
    retry = services.retry_run(run=run, acting_user=system_admin)
    with time_machine.travel(first_held + dt.timedelta(hours=20), tick=False):
        retry = runner.execute(retry.pk)
    assert retry.status == JobRun.Status.HELD and retry.hold.held_at == first_held

    assert alerting.escalate_undecided_holds(now=first_held + dt.timedelta(hours=23, minutes=59)) == 0
    assert alerting.escalate_undecided_holds(now=first_held + dt.timedelta(hours=24)) == 1
    escalated = RunHold.objects.get(run=retry).escalated_at
    assert escalated == first_held + dt.timedelta(hours=24)

    again = services.retry_run(run=retry, acting_user=system_admin)
    with time_machine.travel(first_held + dt.timedelta(hours=30), tick=False):
        again = runner.execute(again.pk)
    assert again.status == JobRun.Status.HELD and again.hold.escalated_at == escalated
    assert alerting.escalate_undecided_holds(now=first_held + dt.timedelta(hours=60)) == 0
    assert Incident.objects.filter(kind=Incident.Kind.HELD_UNDECIDED).count() == 1
