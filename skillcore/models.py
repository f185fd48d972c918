"""The FERPA access trail: an append-only record of who read or wrote which student records.

FERPA asks that access to education records be limited to school officials with a
legitimate educational interest and that requests and disclosures be recorded
(34 CFR 99.31, 99.32). Every job run and every staff view of a student record writes
here. On PostgreSQL a trigger refuses UPDATE and TRUNCATE, and DELETE of any row younger
than 7 years (migration 0005); older rows can only be purged through ``access_log_purge``.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models


class AccessLog(models.Model):
    class Operation(models.TextChoices):
        READ = "read", "Read"
        CREATE = "create", "Create"
        UPDATE = "update", "Update"
        DELETE = "delete", "Delete"
        VIEW = "view", "Viewed in admin"
        DISCLOSE = "disclose", "Disclosed to a third party"

    at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        help_text="The person, when a person acted.",
    )
    job_run_id = models.BigIntegerField(null=True, blank=True, db_index=True, help_text="The job run, when a job acted.")
    actor_label = models.CharField(max_length=150, help_text="Who acted, in words (kept if the user is renamed).")
    purpose = models.CharField(max_length=200, help_text="The legitimate educational interest.")
    model = models.CharField(max_length=100, help_text="The table read or written, as app.Model.")
    operation = models.CharField(max_length=10, choices=Operation.choices)
    query_count = models.PositiveIntegerField(default=1)
    row_count = models.PositiveBigIntegerField(default=0)
    student_count = models.PositiveIntegerField(default=0)
    student_ids = models.JSONField(default=list, blank=True, help_text="The students whose records were touched.")
    recipient = models.CharField(max_length=200, blank=True, help_text="Disclosures only: who received the records.")

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["model", "at"], name="accesslog_model_at_idx")]
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_label} {self.operation} {self.model} ({self.row_count} rows)"

    # The trail stores what the code knows (``students.GuardianLink``, ``admin: change
    # students.student``) so a row means the same after a model is renamed in the interface;
    # people read it through these two labels.
    ADMIN_VIEWS = {
        "changelist": "list of {plural}", "change": "{name} page", "add": "add {name}", "delete": "delete {name}",
        "history": "history of {name}",
    }

    @staticmethod
    def model_text(label: str) -> str:
        """``students.GuardianLink`` -> "Guardian link"; a table no longer installed keeps its label."""
        from django.apps import apps

        try:
            name = str(apps.get_model(label)._meta.verbose_name)
        except (LookupError, ValueError):
            return label
        return name[:1].upper() + name[1:]

    @classmethod
    def purpose_text(cls, purpose: str) -> str:
        """The purpose in words: ``admin: change students.student`` -> "Admin: student page",
        ``admin: changelist students.guardianlink`` -> "Admin: list of guardian links",
        ``scheduled job attendance-interventions`` -> "Scheduled job: attendance-interventions".
        Purposes in another form are shown as written, with a capital."""
        from django.apps import apps

        head, _, rest = purpose.partition(": ")
        if head == "admin" and rest:
            view, _, label = rest.partition(" ")
            template = cls.ADMIN_VIEWS.get(view)
            try:
                opts = apps.get_model(label)._meta if template and "." in label else None
            except (LookupError, ValueError):
                opts = None
            if opts is not None:
                return "Admin: " + template.format(name=opts.verbose_name, plural=opts.verbose_name_plural)
            return f"Admin: {rest}"
        if purpose.startswith("scheduled job "):
            return f"Scheduled job: {purpose.removeprefix('scheduled job ')}"
        return purpose[:1].upper() + purpose[1:]


class EventBusEntry(models.Model):
    """The event bus when Redis is not configured: one row per published event.

    A transient bus, not a record: rows older than EVENT_STREAM_RETENTION_DAYS are trimmed
    by the stream-cleanup job. ``stream`` is the Redis stream name the event would have
    (``<prefix><event type>``), so both backends report the same streams.
    """

    stream = models.CharField(max_length=150)
    event_type = models.CharField(max_length=100)
    payload = models.JSONField(default=dict)
    published_at = models.DateTimeField()

    class Meta:
        # Trimming walks the oldest rows first (published_at < cutoff, in id order);
        # readers follow one stream in publication order.
        indexes = [
            models.Index(fields=["published_at"], name="eventbus_published_idx"),
            models.Index(fields=["stream", "id"], name="eventbus_stream_id_idx"),
        ]
        default_permissions = ("view",)
        verbose_name_plural = "event bus entries"

    def __str__(self) -> str:
        return f"{self.stream} #{self.pk} at {self.published_at:%Y-%m-%d %H:%M}"


class StoredEvent(models.Model):
    """The event store: durable events, appended in the publisher's transaction and kept
    7 years (EVENT_STORE_RETENTION_DAYS); the stream-cleanup job deletes older ones
    (skillcore.events.store_purge)."""

    event_type = models.CharField(max_length=100)
    payload = models.JSONField(default=dict)
    occurred_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["event_type", "occurred_at"], name="storedevent_type_at_idx"),
            # The daily purge finds the ids due (occurred before the 7-year cutoff) without a
            # scan of seven years of events.
            models.Index(fields=["occurred_at"], name="storedevent_occurred_idx"),
        ]
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"{self.event_type} #{self.pk} at {self.occurred_at:%Y-%m-%d %H:%M}"
