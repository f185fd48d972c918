"""The blast-radius guard's state: the limits a district sets, and one hold per run whose
outbound volume was far above its baseline (scheduling/blast_radius.py has the rules)."""
from __future__ import annotations

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

# Defaults when a district set no limit: more than 5x the baseline AND more than 200
# messages (per audience) holds; so does more than 50,000 messages in one run, with or
# without a baseline (the first runs have none). The cap is set high enough that a large
# district's usual daily digest (a message per guardian and child) is not held every day
# before its district sizes it (docs/blast-radius-guard.md).
DEFAULT_MULTIPLIER = 5
DEFAULT_FLOOR = 200
DEFAULT_CAP = 50_000


class BlastRadiusLimit(models.Model):
    """A district's limits, for one job or (``job`` empty) every job of the district. The
    job's row wins over the district's; without either the defaults apply."""

    district = models.ForeignKey("students.District", on_delete=models.CASCADE, related_name="blast_radius_limits")
    job = models.CharField(max_length=100, blank=True, help_text="A job's slug; empty: every job of the district.")
    multiplier = models.PositiveSmallIntegerField(
        default=DEFAULT_MULTIPLIER, validators=[MinValueValidator(1)],
        help_text="Hold when an audience gets more than this many times its baseline ...",
    )
    floor = models.PositiveIntegerField(
        default=DEFAULT_FLOOR, help_text="... and more than this many messages.",
    )
    cap = models.PositiveIntegerField(
        default=DEFAULT_CAP, validators=[MinValueValidator(1)],
        help_text="Hold any run of more messages than this (all audiences), baseline or not.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["district", "job"], name="blastradiuslimit_one_per_district_job"),
            models.CheckConstraint(condition=Q(multiplier__gte=1, cap__gte=1), name="blastradiuslimit_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.district_id}/{self.job or '*'}: >{self.multiplier}x and >{self.floor}, cap {self.cap}"


class RunHold(models.Model):
    """A run the guard held: what it would have sent, what that was compared to, and the
    system admin's decision (who, when, and the note they had to write)."""

    class Decision(models.TextChoices):
        RELEASED = "released", "Released"
        DISCARDED = "discarded", "Discarded"
        # A retry of the slot took the held messages over (and is held in its turn).
        SUPERSEDED = "superseded", "Superseded by a retry"

    run = models.OneToOneField("scheduling.JobRun", on_delete=models.PROTECT, related_name="hold")
    held_at = models.DateTimeField(db_index=True)
    counts = models.JSONField(default=dict, help_text="Held messages per audience (families, staff).")
    baseline = models.JSONField(default=dict, help_text="Median per audience of the last successful runs; runs: how many.")
    limits = models.JSONField(default=dict, help_text="multiplier, floor and cap applied.")
    reason = models.CharField(max_length=300)
    breakdown = models.JSONField(default=list, help_text="Counts by template, school and audience.")
    samples = models.JSONField(default=list, help_text="Up to 20 recipients and what each would be told.")
    escalated_at = models.DateTimeField(null=True, blank=True, help_text="Left undecided 24 h: the alert escalated.")
    decision = models.CharField(max_length=12, choices=Decision.choices, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_label = models.CharField(max_length=150, blank=True, help_text="Who decided, in words (kept if the user is deleted).")
    note = models.TextField(blank=True, help_text="Why, in the deciding admin's words (required).")
    messages_affected = models.PositiveIntegerField(null=True, blank=True, help_text="Released or discarded.")

    class Meta:
        ordering = ["-held_at", "-id"]
        constraints = [
            # Decided iff a decision, a time and (for a person's decision) a note are recorded.
            models.CheckConstraint(
                condition=Q(decision="", decided_at__isnull=True)
                | (~Q(decision="") & Q(decided_at__isnull=False)),
                name="runhold_decided_iff_decision",
            ),
            models.CheckConstraint(
                condition=~Q(decision__in=["released", "discarded"]) | ~Q(note=""),
                name="runhold_decision_has_note",
            ),
        ]
        indexes = [
            # The dashboard's card and the 24-hour escalation read the undecided holds only.
            models.Index(fields=["held_at"], condition=Q(decision=""), name="runhold_undecided_idx"),
        ]

    def __str__(self) -> str:
        return f"hold of run #{self.run_id} {self.decision or 'undecided'}"

    @property
    def total(self) -> int:
        return sum(self.counts.values())
