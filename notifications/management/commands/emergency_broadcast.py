"""``manage.py emergency_broadcast --district ID --scenario SCENARIO --message TEXT``.

The real emergency path: every family (guardians of active students) and staff member of
the district, by email and push, category emergency — sent at once, whatever the hour or
anyone's preferences. Scenarios: school-closure, lockdown, weather-delay, broadcast.
Bad input exits 2 with one line and sends nothing.
"""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from notifications.emergency import emergency_broadcast_send
from scheduling.models import Scenario
from skillcore.access import access_trail
from students.models import District


class Command(BaseCommand):
    help = "Send an emergency message to every family and staff member of a district (ignores quiet hours)."

    def add_arguments(self, parser):
        parser.add_argument("--district", required=True)
        parser.add_argument("--scenario", required=True, help=", ".join(Scenario.values))
        parser.add_argument("--message", required=True)

    def handle(self, *args, district, scenario, message, **options):
        if not str(district).isdigit() or (found := District.objects.filter(pk=int(district)).first()) is None:
            raise CommandError(f"unknown district {district}", returncode=2)
        if scenario not in Scenario.values:
            raise CommandError(f"unknown scenario {scenario!r}: use one of {', '.join(Scenario.values)}", returncode=2)
        if not message.strip():
            raise CommandError("--message is empty", returncode=2)
        if len(message) > 1000:
            raise CommandError("--message is longer than 1000 characters", returncode=2)
        with access_trail(actor_label="manage.py emergency_broadcast", purpose="emergency broadcast"):
            b = emergency_broadcast_send(district=found, scenario=scenario, message=message,
                                         actor_label="manage.py emergency_broadcast")
        self.stdout.write(json.dumps({"broadcast": b.pk, **b.counts}, sort_keys=True))
