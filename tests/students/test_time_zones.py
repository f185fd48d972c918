"""A district's time zone is a real place's IANA zone: "localtime" (the host's clock setting),
"Factory" (tzdata's "not set") and anything outside zoneinfo.available_timezones() are
refused by the model's rule, in the admin form, in every command taking a zone and in the
settings' global zone."""
from __future__ import annotations

import zoneinfo
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from skillcore import env
from students.models import District
from students.zones import usable_zones
from tests.test_admin_forms import DISTRICT, errors, post_add

REFUSED = ["localtime", "Factory", "posix/America/New_York", "right/UTC", "America/New_York ", "Mars/Olympus_Mons"]


def test_the_usable_zones_are_zoneinfos_list_without_the_two():
    assert usable_zones() == zoneinfo.available_timezones() - {"localtime", "Factory"}
    assert {"America/New_York", "UTC", "Pacific/Chatham"} <= usable_zones()


@pytest.mark.django_db
@pytest.mark.parametrize("zone", REFUSED)
def test_the_model_refuses_the_zone(zone):
    with pytest.raises(ValidationError) as exc:
        District(name="Zone test", state="NY", time_zone=zone).full_clean()
    assert set(exc.value.message_dict) == {"time_zone"}


@pytest.mark.django_db
def test_the_model_accepts_a_place():
    District(name="Zone test", state="NZ", time_zone="Pacific/Chatham").full_clean()


@pytest.mark.django_db
@pytest.mark.parametrize("zone", ["localtime", "Factory"])
def test_the_admin_form_refuses_the_zone(client, system_admin, zone):
    client.force_login(system_admin)
    response = post_add(client, District, {**DISTRICT, "time_zone": zone})
    assert "time_zone" in errors(response)
    assert not District.objects.filter(name="Riverside").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("zone", ["localtime", "Factory", "posix/America/New_York"])
def test_commands_taking_a_zone_exit_2_with_one_line(district, zone):
    from scheduling import services

    services.sync_schedules()
    for args in (["seed_district", "--students", "5", f"--timezone={zone}", "--no-progress"],
                 ["jobs", "next", "attendance-interventions", "--district", str(district.pk), "--tz", zone]):
        before = District.objects.count()
        with pytest.raises(CommandError) as exc:
            call_command(*args, stdout=StringIO(), stderr=StringIO())
        assert exc.value.returncode == 2 and "\n" not in str(exc.value) and zone in str(exc.value), args
        assert District.objects.count() == before


@pytest.mark.parametrize("zone", ["localtime", "Factory"])
def test_the_settings_global_zone_refuses_it(monkeypatch, zone, capsys):
    monkeypatch.setenv("SCHEDULING_GLOBAL_TIME_ZONE", zone)
    with pytest.raises(env.BadSetting):
        env.get_zone("SCHEDULING_GLOBAL_TIME_ZONE", "UTC")
    err = capsys.readouterr().err
    assert "SCHEDULING_GLOBAL_TIME_ZONE" in err and zone in err and err.count("\n") == 1
    monkeypatch.setenv("SCHEDULING_GLOBAL_TIME_ZONE", "Europe/Paris")
    assert env.get_zone("SCHEDULING_GLOBAL_TIME_ZONE", "UTC") == "Europe/Paris"
