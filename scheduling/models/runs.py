"""The engine's state: one JobSchedule per job and district, one JobRun per execution (or
per decided slot), an audit row per staff change, a scheduler heartbeat.

The job definitions themselves live in code (scheduling/jobs/); the database holds what
staff may change (cron, pause) and what happened (runs). JobRun refers to its job by slug
and district, not to the JobSchedule row, so deleting a schedule never deletes history.
"""
from __future__ import annotations

import zoneinfo

from django.conf import settings
from django.db import models
from django.db.models import Q

from scheduling import cron


class JobSchedule(models.Model):
    """When a job runs for one district (district NULL: a global job).

    ``cron`` is seeded from the job's code default by ``jobs sync``; once staff edit it,
    ``cron_customized`` is set and sync never touches it again. The django-q2 Schedule
    row (``q_schedule``) is the firing mechanism; its ``next_run`` is computed by this
    engine (scheduling/cron.py, in the district's zone).
    """

    job = models.CharField(max_length=100, db_index=True, help_text="The job's slug (scheduling/jobs/).")
    district = models.ForeignKey(
        "students.District", on_delete=models.CASCADE, null=True, blank=True, related_name="job_schedules",
        help_text="Empty for a global job.",
    )
    cron = models.CharField(max_length=100, blank=True, help_text="Empty: ad-hoc, only run on demand.")
    cron_customized = models.BooleanField(default=False, help_text="Staff changed the cron: sync keeps it.")
    paused = models.BooleanField(default=False)
    pause_note = models.TextField(blank=True)
    paused_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    paused_at = models.DateTimeField(null=True, blank=True)
    last_slot = models.DateTimeField(null=True, blank=True, help_text="The latest slot decided (run, skipped or missed).")
    q_schedule = models.OneToOneField(
        "django_q.Schedule", on_delete=models.SET_NULL, null=True, blank=True, related_name="job_schedule"
    )
    removed_at = models.DateTimeField(
        null=True, blank=True, help_text="Deleted by staff: no longer fires; sync does not bring it back; history kept."
    )
    # Denormalized so the dashboard and `jobs list` read the last run with a join instead
    # of a scan of the whole history (set when a run of this job and district starts).
    last_run = models.ForeignKey(
        "JobRun", on_delete=models.SET_NULL, null=True, blank=True, related_name="+", editable=False,
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["job", "district_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["job", "district"], condition=Q(district__isnull=False), name="jobschedule_one_per_district"
            ),
            # NULLs are distinct in a unique index: a second constraint keeps global jobs single.
            models.UniqueConstraint(fields=["job"], condition=Q(district__isnull=True), name="jobschedule_one_global"),
        ]

    def __str__(self) -> str:
        return f"{self.job} @ {self.district_id or 'global'}"

    @property
    def q_name(self) -> str:
        return schedule_name(self.job, self.district_id)

    @staticmethod
    def zone_name_for(district_time_zone: str | None) -> str:
        """The rule, for callers holding only the district's zone (rows read as values, a
        district without a schedule yet): a district's schedule runs in the district's zone,
        a global one (None) in SCHEDULING_GLOBAL_TIME_ZONE."""
        return settings.SCHEDULING_GLOBAL_TIME_ZONE if district_time_zone is None else district_time_zone

    @property
    def zone_name(self) -> str:
        """The IANA zone the cron is read in (and its times are shown in)."""
        return self.zone_name_for(self.district.time_zone if self.district_id else None)

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return cron.zone(self.zone_name)


def schedule_name(job: str, district_id: int | None) -> str:
    """The stable django-q2 Schedule name: skillcore:<slug>:<district id> or :global."""
    return f"skillcore:{job}:{district_id if district_id is not None else 'global'}"


class JobRun(models.Model):
    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        MANUAL = "manual", "Manual"
        RETRY = "retry", "Retry"
        CATCH_UP = "catch-up", "Catch-up"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        # Finished, but did not do what it is for (an empty emergency test group, no
        # current session): the reason is in ``note`` and the run is alerted on.
        WARNING = "warning", "Succeeded with warnings"
        FAILED = "failed", "Failed"
        TIMED_OUT = "timed_out", "Timed out"
        SKIPPED = "skipped", "Skipped"
        MISSED = "missed", "Missed"
        CANCELLED = "cancelled", "Cancelled"
        # The blast-radius guard: a run whose outbound volume is far above its baseline
        # holds its messages until a system admin releases or discards them.
        HELD = "held", "Held for review"
        RELEASED = "released", "Released"
        DISCARDED = "discarded", "Discarded"

    FINISHED = (
        Status.SUCCEEDED, Status.WARNING, Status.FAILED, Status.TIMED_OUT, Status.SKIPPED, Status.MISSED,
        Status.CANCELLED, Status.HELD, Status.RELEASED, Status.DISCARDED,
    )
    SLOT_TRIGGERS = (Trigger.SCHEDULE, Trigger.CATCH_UP)

    job = models.CharField(max_length=100)
    district = models.ForeignKey(
        "students.District", on_delete=models.PROTECT, null=True, blank=True, related_name="job_runs"
    )
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    slot = models.DateTimeField(help_text="The slot this run is for (manual runs: --as-of or the time asked).")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    attempt = models.PositiveSmallIntegerField(default=1)
    retry_of = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="retries",
        help_text="The first attempt, for retries.",
    )
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    deadline = models.DateTimeField(
        null=True, blank=True, help_text="Running past this means the worker is gone (timeout + grace)."
    )
    result = models.JSONField(default=dict, blank=True, help_text="The job's summary of counts.")
    note = models.CharField(max_length=300, blank=True, help_text="Why it was skipped, missed or retried.")
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    log = models.TextField(blank=True, help_text="The last lines of the job's log.")
    progress_done = models.PositiveIntegerField(null=True, blank=True)
    progress_total = models.PositiveIntegerField(null=True, blank=True)
    checkpoint = models.JSONField(default=dict, blank=True, help_text="Where a retry resumes.")
    # The blast-radius guard's measure (scheduling/blast_radius.py): the messages the run
    # wrote, per audience. Null for runs from before the guard, which are no baseline.
    outbound = models.JSONField(null=True, blank=True, help_text="Messages written per audience (families, staff).")
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    task_id = models.CharField(max_length=64, blank=True, help_text="The django-q2 task id.")
    worker = models.CharField(max_length=120, blank=True, help_text="host:pid of the process that ran it.")

    class Meta:
        ordering = ["-slot", "-id"]
        constraints = [
            # Exactly once: inserting the run row for a slot *is* the claim. Two schedulers
            # or two qclusters racing for one slot: the second insert fails.
            models.UniqueConstraint(
                fields=["job", "district", "slot"],
                condition=Q(trigger__in=["schedule", "catch-up"], district__isnull=False),
                name="jobrun_one_per_district_slot",
            ),
            models.UniqueConstraint(
                fields=["job", "slot"],
                condition=Q(trigger__in=["schedule", "catch-up"], district__isnull=True),
                name="jobrun_one_per_global_slot",
            ),
            # A redelivered retry task cannot start the same attempt twice.
            models.UniqueConstraint(fields=["retry_of", "attempt"], name="jobrun_one_per_attempt"),
            models.CheckConstraint(condition=Q(attempt__gte=1), name="jobrun_attempt_positive"),
        ]
        indexes = [
            # The dashboard: last run and 30-day figures per (job, district).
            models.Index(fields=["job", "district", "-started_at"], name="jobrun_job_district_started"),
            # The reaper and overlap check: running rows are few, found by status.
            models.Index(fields=["status", "deadline"], name="jobrun_status_deadline"),
        ]

    def __str__(self) -> str:
        return f"{self.job} @ {self.district_id or 'global'} {self.slot:%Y-%m-%d %H:%M}Z #{self.attempt} {self.status}"

    @property
    def first_run_id(self) -> int:
        return self.retry_of_id or self.id

    @property
    def zone_name(self) -> str:
        """The zone of the run's schedule (JobSchedule.zone_name's rule)."""
        return JobSchedule.zone_name_for(self.district.time_zone if self.district_id else None)


class ScheduleChange(models.Model):
    """The audit trail of staff changes: who, when, what before and after."""

    class Action(models.TextChoices):
        CREATE = "create", "Created"
        RUN_NOW = "run-now", "Run now"
        PAUSE = "pause", "Paused"
        RESUME = "resume", "Resumed"
        RETRY = "retry", "Retried a run"
        EDIT_CRON = "edit-cron", "Edited the cron"
        DELETE = "delete", "Deleted"
        RESTORE = "restore", "Restored"
        RELEASE = "release", "Released held messages"
        DISCARD = "discard", "Discarded held messages"

    schedule = models.ForeignKey(JobSchedule, on_delete=models.PROTECT, related_name="changes")
    action = models.CharField(max_length=12, choices=Action.choices)
    acting_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_label = models.CharField(max_length=150, help_text="Who, in words (kept if the user is deleted).")
    at = models.DateTimeField(db_index=True)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_label} {self.action} {self.schedule}"


class SchedulerHeartbeat(models.Model):
    """One row per scheduler process (host:pid), touched at every scheduler pass."""

    name = models.CharField(max_length=150, unique=True)
    last_beat = models.DateTimeField(db_index=True)
    passes = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} {self.last_beat:%Y-%m-%d %H:%M:%S}"
