"""Bad input, generated (hypothesis): cron expressions, time zones, command-line arguments
and the admin forms. Whatever comes in, the answer is a value or a clear validation error
(BadCron / CommandError exit 2 with one line and nothing written / a form error), never a
500 or a traceback. Example counts stay modest so the suite stays fast."""
from __future__ import annotations

import datetime as dt
import zoneinfo
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from scheduling import cron, services
from scheduling.models import JobRun, JobSchedule, RolloverRequest, ScheduleChange
from students.models import AcademicSession, District, School, Student

SETTINGS = hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
UTC = dt.UTC

CRON_PARTS = ["*", "0", "5", "59", "60", "23", "24", "*/15", "*/0", "1-5", "5-1", "MON", "mon-fri", "JAN", "L", "?", "#",
              "5#2", "1,2,3", ",", "-1", "99999999999999999999", "1/2", "@daily", "0x1", "½", "", "*/", "W", "15W"]
cron_like = st.lists(st.sampled_from(CRON_PARTS), min_size=0, max_size=7).map(" ".join)
# Text of every kind, NUL, control characters and astral-plane characters included.
any_text = st.text(max_size=80)
cron_input = st.one_of(cron_like, any_text)
ZONES = sorted(zoneinfo.available_timezones())
zone_input = st.one_of(st.sampled_from(ZONES), any_text, st.sampled_from(
    ["", "UTC", "utc", "America/New_York ", "../etc/passwd", "/UTC", "America//New_York", "Etc/GMT+14", "Etc/GMT+15", "a" * 300]))


# -- cron and time zones ---------------------------------------------------------------------------
@given(expr=cron_input)
@SETTINGS
def test_any_cron_text_is_valid_or_a_clear_badcron(expr):
    try:
        normalized = cron.validate(expr)
    except cron.BadCron as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert len(normalized.split()) == 5
    # A valid expression can be evaluated in any real zone (it may never fire: e.g. Feb 30).
    try:
        slots = cron.next_slots(normalized, "America/New_York", dt.datetime(2026, 3, 1, tzinfo=UTC), 3)
    except StopIteration:
        return
    assert slots == sorted(slots) and all(s.tzinfo is not None for s in slots)


@given(name=zone_input)
@SETTINGS
def test_any_zone_text_is_a_zone_or_a_clear_badcron(name):
    try:
        tz = cron.zone(name)
    except cron.BadCron as exc:
        assert "is not an IANA time zone" in str(exc)
        return
    assert isinstance(tz, zoneinfo.ZoneInfo)


@given(name=zone_input)
@SETTINGS
def test_district_time_zone_validation_refuses_with_a_field_error(name):
    from django.core.exceptions import ValidationError

    district = District(name="Zone test", state="NY", time_zone=name)
    others = [f.name for f in District._meta.get_fields() if f.name != "time_zone"]
    try:
        district.clean_fields(exclude=others)
    except ValidationError as exc:
        assert set(exc.message_dict) == {"time_zone"} and all(exc.message_dict["time_zone"])
        return
    cron.zone(district.time_zone)  # accepted means usable by the scheduler


# -- command line ------------------------------------------------------------------------------------
def _snapshot() -> tuple:
    return tuple(m.objects.count() for m in (District, School, Student, AcademicSession, JobRun, JobSchedule,
                                             ScheduleChange, RolloverRequest))


def _refused(*args) -> str:
    """Run a command that must refuse: exit status 2, one line, nothing written."""
    before = _snapshot()
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as info:
        call_command(*args, stdout=out, stderr=err)
    assert info.value.returncode == 2, (args, str(info.value))
    message = str(info.value)
    assert message and "\n" not in message.strip(), message
    assert _snapshot() == before
    return message


@pytest.fixture
def synced(district):
    services.sync_schedules()
    return district


@pytest.mark.django_db
@given(expr=cron_input, zone=zone_input, count=st.integers(-5, 10**6), after=st.one_of(any_text, st.just("2026-11-01T01:30")))
@SETTINGS
def test_jobs_next_with_any_cron_zone_count_and_after(synced, expr, zone, count, after):
    args = ["jobs", "next", "attendance-interventions", "--district", str(synced.pk), "--cron", expr, "--tz", zone,
            "--count", str(count), "--after", after]
    before = _snapshot()
    try:
        call_command(*args, stdout=StringIO())
    except CommandError as exc:
        assert exc.returncode == 2 and "\n" not in str(exc).strip()
    assert _snapshot() == before  # "next" never writes


@pytest.mark.django_db
@given(district=st.one_of(st.integers(), any_text), as_of=st.one_of(any_text, st.just("2026-11-02T06:00")),
       job=st.one_of(st.sampled_from(["attendance-interventions", "no-such-job", ""]), any_text))
@SETTINGS
def test_jobs_run_with_a_missing_district_or_bad_slot_writes_nothing(db, district, as_of, job):
    assume(not District.objects.filter(pk=district if isinstance(district, int) and -2**63 < district < 2**63 else -1).exists())
    _refused("jobs", "run", job, "--district", str(district), "--as-of", as_of)


@pytest.mark.django_db
@given(note=any_text)
@SETTINGS
def test_jobs_pause_with_any_note(synced, note):
    schedule = JobSchedule.objects.get(job="attendance-interventions", district=synced)
    if schedule.paused:
        services.resume_schedule(schedule=schedule, acting_user=None)
    args = ("jobs", "pause", "attendance-interventions", "--district", str(synced.pk), f"--note={note}")
    if not note.strip() or "\x00" in note:
        _refused(*args)
    else:
        call_command(*args, stdout=StringIO())
        schedule.refresh_from_db()
        assert schedule.paused and schedule.pause_note == note.strip()


@pytest.mark.django_db
@given(students=st.one_of(any_text, st.integers(-10, 10**9).map(str)), zone=zone_input,
       as_of=st.one_of(any_text, st.just("2026-11-02")), seed=st.one_of(st.just("1"), any_text))
@SETTINGS
def test_seed_district_refuses_any_bad_argument(db, students, zone, as_of, seed):
    def ok_count(v):
        try:
            return 1 <= int(v) <= 10**6
        except ValueError:
            return False

    def ok_zone(v):
        try:
            zoneinfo.ZoneInfo(v)
            return True
        except Exception:
            return False

    def ok_date(v):
        try:
            dt.date.fromisoformat(v)  # "" is refused too: an empty --as-of is not "today"
            return True
        except ValueError:
            return False

    def ok_seed(v):
        try:
            int(v)
            return True
        except ValueError:
            return False

    # Only bad combinations: a valid one would seed a district (tests/students/test_seed.py).
    assume(not (ok_count(students) and ok_zone(zone) and ok_date(as_of) and ok_seed(seed)))
    # "--opt=value": a value that starts with "-" is still that option's value.
    _refused("seed_district", f"--students={students}", f"--timezone={zone}", f"--as-of={as_of}", f"--seed={seed}", "--no-progress")


@pytest.mark.django_db
@given(data=st.data(), to=any_text,
       start=st.one_of(any_text, st.just("2027-08-20")), end=st.one_of(any_text, st.just("2027-06-10"), st.just("2028-06-10")))
@SETTINGS
def test_rollover_refuses_any_bad_argument(district, data, to, start, end):
    # The only district has no current session to close, so every combination is refused,
    # after the arguments reached the database's queries.
    district = data.draw(st.one_of(st.just(str(district.pk)), any_text, st.integers(-5, 10**12).map(str)), label="district")
    _refused("rollover", f"--district={district}", f"--to={to}", f"--start={start}", f"--end={end}")


@pytest.mark.django_db
@pytest.mark.parametrize("args", [
    ("seed_district", "--students", "10", "--seed", "-3x"),  # "-3x" reads as an option: argparse's own error
    ("seed_district",),
    ("rollover", "--district", "1", "--to"),
    ("rollover", "--bogus"),
    ("jobs", "next", "x", "--count", "many"),
])
def test_argparse_errors_are_one_line_exit_2_too(args):
    _refused(*args)


# -- admin forms ---------------------------------------------------------------------------------------
@pytest.fixture
def admin_client(client, system_admin):
    client.force_login(system_admin)
    return client


@pytest.mark.django_db
@given(expr=cron_input)
@SETTINGS
def test_dashboard_cron_edit_never_500s(synced, admin_client, expr):
    schedule = JobSchedule.objects.get(job="attendance-interventions", district=synced)
    before = schedule.cron
    response = admin_client.post(reverse("admin:scheduled_jobs_cron", args=[schedule.pk]), {"cron": expr, "_save": "Save"})
    assert response.status_code in (302, 400)
    schedule.refresh_from_db()
    if response.status_code == 400:
        assert schedule.cron == before and b"errorlist" in response.content
    preview = admin_client.get(reverse("admin:scheduled_jobs_preview", args=[schedule.pk]), {"cron": expr})
    assert preview.status_code in (200, 400)


@pytest.mark.django_db
@given(note=any_text)
@SETTINGS
def test_dashboard_pause_note_never_500s(synced, admin_client, note):
    schedule = JobSchedule.objects.get(job="attendance-interventions", district=synced)
    if schedule.paused:
        services.resume_schedule(schedule=schedule, acting_user=None)
    response = admin_client.post(reverse("admin:scheduled_jobs_pause", args=[schedule.pk]), {"note": note})
    assert response.status_code in (302, 400)


DISTRICT_FIELDS = {
    "time_zone": zone_input,
    "state": any_text,
    "chronic_absence_threshold": st.one_of(any_text, st.decimals(allow_nan=True).map(str), st.floats().map(str)),
    "min_enrolled_days": st.one_of(any_text, st.integers().map(str)),
    "meeting_notice_lead_days": st.one_of(any_text, st.integers().map(str)),
    "notify_window_start": st.one_of(any_text, st.times().map(str)),
    "notify_window_end": st.one_of(any_text, st.times().map(str)),
    "iep_reminder_offsets": st.one_of(any_text, st.lists(st.integers()).map(str), st.sampled_from(
        ["{}", "[30, -1]", '["\\u0000"]', '{"a": "\\u0000"}', "[1e400]", "[30, 30]", "null", "[" * 500])),
    "it_contact_email": any_text,
}


@pytest.mark.django_db
@given(field=st.sampled_from(sorted(DISTRICT_FIELDS)), data=st.data())
@SETTINGS
def test_district_settings_form_never_500s(district, admin_client, field, data):
    value = data.draw(DISTRICT_FIELDS[field], label=field)
    url = reverse("admin:students_district_change", args=[district.pk])
    post = {
        "name": district.name, "state": "NY", "time_zone": "America/New_York", "it_contact_email": "",
        "chronic_absence_threshold": "0.10", "min_enrolled_days": "10", "iep_reminder_offsets": "[30, 14, 7]",
        "meeting_notice_lead_days": "10", "notify_window_start": "07:00", "notify_window_end": "21:00",
        field: value,
    }
    response = admin_client.post(url, post)
    assert response.status_code in (200, 302), response.status_code
    if response.status_code == 200:
        assert b"errorlist" in response.content or b"errornote" in response.content


@pytest.mark.django_db
def test_nul_characters_are_refused_before_they_reach_postgresql(synced):
    """PostgreSQL refuses NUL in text even in a WHERE clause (a DataError, i.e. a traceback):
    each command names the problem instead. Found by the properties above on PostgreSQL."""
    pk = str(synced.pk)
    assert "NUL" in _refused("rollover", f"--district={pk}", "--to=2027\x00-2028", "--start=2027-08-20", "--end=2028-06-10")
    assert "NUL" in _refused("jobs", "pause", "attendance-interventions", "--district", pk, "--note", "break\x00")
