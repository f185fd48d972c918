"""``manage.py demo``: a working SkillCore on a fresh machine in one command (``make demo``).

Steps, each idempotent so running twice changes nothing but passwords:
1. migrate (the SQLite file under var/ when DATABASE_URL is unset);
2. seed a small synthetic district, unless one exists;
3. create a demo system admin, and one login per staff role taken from the seeded staff
   (renamed ``demo-<role>``), so each role sees a real caseload;
4. create the job schedules and run each job once (first demo only), so the dashboard
   shows real history; then (first demo only) an emergency broadcast that reaches a
   guardian by SMS through a local Twilio-compatible server (skillcore/sms_recorder.py),
   which records every text in var/demo-sms.jsonl;
5. print the logins and the admin URL;
6. serve the admin with a qcluster beside it (skipped with ``--no-serve``); SIGTERM or
   Ctrl-C stops both, the qcluster's workers included.

The demo publishes its passwords, so it refuses to run unless DEBUG is on (the .env that
``make demo`` writes turns it on for this checkout).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import zoneinfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from skillcore.management.commands.seed_district import Progress, parse_count
from skillcore.seed import seed_district
from students.models import District, Role

DEMO_DISTRICT = "Demo Unified School District"
DEMO_TIME_ZONE = "America/New_York"
DEMO_SEED = 1
DEMO_PASSWORD = "skillcore-demo"
ADMIN_USERNAME = "admin"
# Roles that log in to the staff admin; guardians and students use other front ends.
# The demo's texts: a Twilio-compatible recorder plays Twilio (skillcore/sms_recorder.py).
# 555-01xx numbers are reserved for fiction in North America: nobody can be texted by mistake.
DEMO_TWILIO_SID = "AC" + "de" * 16
DEMO_TWILIO_TOKEN = "skillcore-demo-twilio-token"
DEMO_TWILIO_FROM = "+12025550100"
DEMO_GUARDIAN_MOBILE = "+12025550143"
DEMO_BROADCAST = "This is the SkillCore demo: what an emergency broadcast looks like. No action is needed."
DEMO_ROLES = [Role.DISTRICT_ADMIN, Role.PRINCIPAL, Role.COUNSELOR, Role.SPED_COORDINATOR, Role.CASE_MANAGER, Role.TEACHER]


class Command(BaseCommand):
    help = "Migrate, seed a small district, create demo logins and serve the admin at http://127.0.0.1:8000/admin/."

    def add_arguments(self, parser):
        parser.add_argument("--no-serve", action="store_true", help="Do everything but start the web server.")
        parser.add_argument("--students", default="600", help="Students in the demo district (default 600).")
        parser.add_argument("--addrport", default="127.0.0.1:8000", help="Where to serve (default 127.0.0.1:8000).")

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("demo publishes its passwords: run it with DEBUG=1 (make demo does).", returncode=2)
        students = parse_count(options["students"], "--students")
        if not options["no_serve"]:
            address_problem = _address_problem(options["addrport"])
            if address_problem:  # before anything is written: runserver would os._exit(1) later
                raise CommandError(address_problem, returncode=2)
        settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
        self.migrate()
        district = self.seed(students, show_progress=options["verbosity"] > 0)
        logins = self.logins(district)
        self.jobs(district)
        recorder = self.sms_recorder()
        try:
            self.texts(district, recorder, serving=not options["no_serve"])
            self.announce(logins, options["addrport"])
            if not options["no_serve"]:
                self.serve(options["addrport"])
        finally:
            if recorder is not None:
                recorder.stop()

    # -- steps ------------------------------------------------------------------------------
    def migrate(self) -> None:
        self.stdout.write("1. Migrating the database...")
        call_command("migrate", interactive=False, verbosity=0)

    def seed(self, students: int, *, show_progress: bool) -> District:
        existing = District.objects.order_by("pk").first()
        if existing:
            self.stdout.write(f"2. District {existing.name!r} already exists: not seeding again.")
            return existing
        self.stdout.write(f"2. Seeding {DEMO_DISTRICT!r} ({students} students, seed {DEMO_SEED}, {DEMO_TIME_ZONE})...")
        zone_today = timezone.now().astimezone(zoneinfo.ZoneInfo(DEMO_TIME_ZONE)).date()
        progress = Progress(self.stderr, enabled=show_progress)
        result = seed_district(name=DEMO_DISTRICT, students=students, seed=DEMO_SEED, time_zone=DEMO_TIME_ZONE,
                               as_of=zone_today, progress=progress)
        progress.done()
        self.stdout.write(f"   {sum(result.counts.values()):,} rows in {result.elapsed:.1f}s.")
        return result.district

    @transaction.atomic
    def logins(self, district: District) -> list[tuple[str, str, str]]:
        """(username, role, scope) per demo login; creates or renames them once, then only
        resets their password."""
        self.stdout.write("3. Creating the demo logins...")
        User = get_user_model()
        admin, _ = User.objects.get_or_create(username=ADMIN_USERNAME, defaults={"email": "admin@demo.example.org"})
        admin.is_staff = admin.is_superuser = admin.is_active = True
        admin.set_password(DEMO_PASSWORD)
        admin.save()
        admin.groups.add(Group.objects.get_or_create(name=str(Role.SYSTEM_ADMIN))[0])
        logins = [(ADMIN_USERNAME, "system admin (superuser)", "everything")]
        for role in DEMO_ROLES:
            username = f"demo-{role}"
            user = User.objects.filter(username=username).first()
            if user is None:
                # A seeded staff member of this role, preferring the high school (the widest
                # mix of data); renamed so the login is easy to type.
                candidates = User.objects.filter(groups__name=role, staff_profile__district=district)
                user = (candidates.filter(staff_profile__schools__code__startswith="H").order_by("username").first()
                        or candidates.order_by("username").first())
                if user is None:
                    continue
                user.username = username
            user.is_staff = user.is_active = True
            user.set_password(DEMO_PASSWORD)
            user.save()
            schools = ", ".join(user.staff_profile.schools.values_list("name", flat=True)) if hasattr(user, "staff_profile") else ""
            logins.append((username, Role(role).label.lower(), schools or district.name))
        return logins

    def jobs(self, district: District) -> None:
        """Create the job schedules, and run each job that has a body once for the demo
        district (first demo only), so the dashboard shows real history. The end-of-year
        rollover is never run by the demo: it is the one destructive annual job."""
        from scheduling import periodic_tasks, registry, runner, services
        from scheduling.models import JobRun

        first = not JobRun.objects.exists()
        self.stdout.write("4. Scheduling the jobs" + (" and running each once for the demo district..." if first else "..."))
        report = services.sync_schedules()
        periodic_tasks.sync()  # what `jobs sync` also does: the qcluster served below drains the outbox
        self.stdout.write(f"   {report.created} schedules created, {report.unchanged + report.updated} kept; "
                          "the outbox is drained every minute by the qcluster.")
        if not first:
            return
        for job in registry.all_jobs():
            if not job.has_body or job.slug == "end-of-year-rollover":
                continue
            run = runner.run_sync(job_slug=job.slug, district=None if job.is_global else district)
            note = f" ({run.note})" if run.note and run.status != JobRun.Status.SUCCEEDED else ""
            self.stdout.write(f"   ran {job.slug}: {run.get_status_display().lower()}{note} in {run.duration_seconds or 0:.1f}s")

    def sms_recorder(self):
        """Without a Twilio account (TWILIO_ACCOUNT_SID unset), a local Twilio-compatible
        server for the demo's texts, with settings (and the environment the qcluster
        inherits) pointing at it until it stops. None when Twilio is configured."""
        if settings.TWILIO_ACCOUNT_SID:
            return None
        from skillcore.sms_recorder import SmsRecorder

        recorder = SmsRecorder(DEMO_TWILIO_SID, DEMO_TWILIO_TOKEN, settings.VAR_DIR / "demo-sms.jsonl")
        values = {"TWILIO_ACCOUNT_SID": DEMO_TWILIO_SID, "TWILIO_AUTH_TOKEN": DEMO_TWILIO_TOKEN,
                  "TWILIO_FROM_NUMBER": DEMO_TWILIO_FROM, "TWILIO_API_BASE_URL": recorder.start()}
        saved = {name: (getattr(settings, name), os.environ.get(name)) for name in values}
        for name, value in values.items():
            setattr(settings, name, value)
            os.environ[name] = value
        stop = recorder.stop

        def stop_and_restore():
            stop()
            for name, (setting, environ) in saved.items():
                setattr(settings, name, setting)
                if environ is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = environ

        recorder.stop = stop_and_restore
        return recorder

    def texts(self, district: District, recorder, *, serving: bool) -> None:
        """First demo only: a guardian with a mobile number (consent by paper form) and an
        emergency broadcast to the district. Serving, the qcluster's outbox drain (every
        minute) sends its texts to the local Twilio-compatible server, with the emails and
        pushes; with --no-serve no qcluster runs, so the texts are drained here and shown."""
        from notifications import delivery, emergency
        from notifications.models import Channel, RecipientProfile
        from notifications.services import recipient_sms_consent_record
        from scheduling.models import EmergencyBroadcast
        from students.models import GuardianLink

        if recorder is None:
            self.stdout.write("   SMS: Twilio is configured (TWILIO_ACCOUNT_SID): the demo sends no texts.")
            return
        link = (GuardianLink.objects.filter(student__school__district=district, student__is_active=True, access_revoked=False)
                .select_related("guardian").order_by("guardian__username").first())
        if link is None:
            return
        guardian = link.guardian
        if not RecipientProfile.objects.filter(user=guardian).exclude(mobile_number="").exists():
            recipient_sms_consent_record(user_id=guardian.pk, mobile_number=DEMO_GUARDIAN_MOBILE, method="paper-form")
        if EmergencyBroadcast.objects.filter(district=district).exists():
            self.stdout.write(f"   SMS: texts go to a local Twilio-compatible server, recorded in {recorder.path}.")
            return
        broadcast = emergency.emergency_broadcast_send(
            district=district, scenario="broadcast", message=DEMO_BROADCAST, actor_label="manage.py demo")
        if serving:
            self.stdout.write(f"   Emergency broadcast #{broadcast.pk}: the qcluster sends its texts within a minute, "
                              f"recorded in {recorder.path} (emails in {settings.EMAIL_FILE_PATH}).")
            return
        sent = 0
        while True:
            batch = delivery.drain_batch(batch_size=100, channels=(Channel.SMS,))
            sent += batch.sent
            if batch.claimed < 100:
                break
        texted = [m for m in recorder.messages() if m["to"] == DEMO_GUARDIAN_MOBILE]
        self.stdout.write(f"   Emergency broadcast #{broadcast.pk}: {sent} text(s) sent, recorded in {recorder.path}:")
        if texted:
            self.stdout.write(f"   to {guardian.get_full_name() or guardian.username} ({texted[-1]['to']}): {texted[-1]['body']!r}")

    def announce(self, logins: list[tuple[str, str, str]], addrport: str) -> None:
        self.stdout.write(f"5. Log in at http://{addrport}/admin/ with password {DEMO_PASSWORD!r} as:")
        width = max(len(u) for u, _, _ in logins)
        for username, role, scope in logins:
            self.stdout.write(f"   {username:<{width}}  {role} ({scope})")

    def serve(self, addrport: str) -> None:
        """Serve the admin with a qcluster (scheduler + workers, ORM broker on the same
        database) beside it, until Ctrl-C or SIGTERM; then stop the qcluster and its workers."""
        self.stdout.write(f"6. Serving the admin at http://{addrport}/admin/ with a qcluster running the jobs "
                          f"(Ctrl-C stops both).")
        # The qcluster gets a process group of its own, so stopping it reaches its workers
        # too (a SIGKILL of the group after the grace period, for any that did not exit).
        cluster = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=settings.BASE_DIR,
                                   start_new_session=True)
        # SIGTERM's default action ends this process at once, skipping the finally block and
        # orphaning the qcluster: turn it into the same exit as Ctrl-C.
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            # No autoreloader: it would re-run this whole command in a child process.
            call_command("runserver", addrport, use_reloader=False)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            stop_process_group(cluster)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _address_problem(addrport: str) -> str:
    """Why the web server could not listen on ``addrport`` ("" when it can)."""
    host, _, port = addrport.rpartition(":")
    if not port.isdigit():
        return f"--addrport must be HOST:PORT, not {addrport!r}"
    try:
        with socket.create_server((host.strip("[]") or "127.0.0.1", int(port))):
            return ""
    except OSError as exc:
        return f"cannot serve on {addrport}: {exc.strerror or exc}"


def stop_process_group(process: subprocess.Popen, *, grace: float = 20.0) -> None:
    """Ask ``process`` (the leader of its own process group) to stop with SIGTERM, wait up
    to ``grace`` seconds, then SIGKILL whatever is left of its group (workers it forked)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # start_new_session: the group id is the leader's pid
    except (ProcessLookupError, PermissionError):
        pass  # the whole group is gone already
    process.wait()
