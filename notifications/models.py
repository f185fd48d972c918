"""Who wants to hear what, how often, on which channel."""
from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from notifications import quiet_hours


class Category(models.TextChoices):
    ATTENDANCE_INTERVENTION = "attendance-intervention", "Attendance intervention"
    IEP_REMINDER = "iep-reminder", "IEP reminder"
    GRADE_DIGEST = "grade-digest", "Grade digest"
    ASSIGNMENT_REMINDER = "assignment-reminder", "Assignment reminder"
    PERFORMANCE_ALERT = "performance-alert", "Performance alert"
    REPORT = "report", "Report"
    EMERGENCY = "emergency", "Emergency"
    EMERGENCY_TEST = "emergency-test", "Emergency test"
    SYSTEM = "system", "System"
    # A notice the law requires the district to give (the IEP meeting notice, 34 CFR
    # 300.322(b)): always at once, whatever the person chose (frequency_applying).
    LEGAL_NOTICE = "legal-notice", "Legal notice (always sent at once)"


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    PUSH = "push", "Push"
    SMS = "sms", "SMS"


# A mobile number as Twilio takes it: E.164, "+", a country code, at most 15 digits in all.
# [0-9], not \d: Python's \d also takes other scripts' digits ("+1٢٠٢..."), which no carrier
# routes and Twilio's webhook never sends back, so a STOP could never find that profile.
E164_RE = r"^\+[1-9][0-9]{7,14}$"
validate_e164 = RegexValidator(
    E164_RE, "Enter the mobile number in international (E.164) form, e.g. +12025550143.", code="invalid_e164",
)


def normalize_mobile_number(value: str) -> str:
    """What people type ("+1 (202) 555-0143") as E.164 ("+12025550143"): spaces, dashes,
    dots and brackets dropped. Validation (``validate_e164``) still decides."""
    return re.sub(r"[\s\-.()]", "", value or "")


class Frequency(models.TextChoices):
    IMMEDIATELY = "immediately", "Immediately"
    DAILY = "daily", "Daily digest"
    WEEKLY = "weekly", "Weekly digest"
    NEVER = "never", "Never"


class NotificationPreference(models.Model):
    """One row per person, category and channel; no row means the category's default
    (``DEFAULT_FREQUENCY``, ``frequency_applying``)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preferences")
    category = models.CharField(max_length=30, choices=Category.choices)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    frequency = models.CharField(max_length=12, choices=Frequency.choices, default=Frequency.IMMEDIATELY)
    low_grade_threshold = models.DecimalField(
        max_digits=5, decimal_places=2, null=True, blank=True,
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))],
        help_text="Grade digest only: also alert at once when a grade falls below this percentage.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "category", "channel"], name="notification_preference_unique"),
            models.CheckConstraint(
                condition=Q(low_grade_threshold__isnull=True) | Q(low_grade_threshold__gte=0, low_grade_threshold__lte=100),
                name="preference_threshold_percentage",
            ),
            # A text goes at once or not at all: a daily or weekly digest does not fit in
            # the 320 characters an SMS may carry (notifications/sms.py).
            models.CheckConstraint(
                condition=~Q(channel="sms") | Q(frequency__in=["immediately", "never"]),
                name="preference_sms_immediate_or_never",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user}: {self.category} by {self.channel} {self.frequency}"

    def clean(self) -> None:
        if self.category in ALWAYS_IMMEDIATE_CATEGORIES and self.frequency != Frequency.IMMEDIATELY:
            # frequency_applying would ignore the row anyway; refusing it keeps the admin from
            # showing a choice that has no effect.
            raise ValidationError({"frequency": f"{Category(self.category).label} always goes out at once: "
                                                "it cannot be set to a digest or never."})
        if self.low_grade_threshold is not None and self.category != Category.GRADE_DIGEST:
            raise ValidationError({"low_grade_threshold": "A low-grade threshold applies to the grade digest only."})
        if self.channel == Channel.SMS and self.frequency not in (Frequency.IMMEDIATELY, Frequency.NEVER):
            raise ValidationError({"frequency": "Texts go immediately or never: a digest does not fit in an SMS."})
        if (self.channel == Channel.SMS and self.frequency == Frequency.IMMEDIATELY and self.user_id
                and self.category not in EMERGENCY_CATEGORIES
                and not RecipientProfile.objects.filter(user_id=self.user_id, sms_consent_at__isnull=False).exists()):
            # Texts are opt-in: choosing a category by SMS needs the consent recorded first
            # (when and how, on the recipient profile); enqueue would suppress it anyway.
            raise ValidationError({"channel": "Record this person's consent to texts (recipient profile) before choosing SMS."})

    @staticmethod
    def default_frequency(category: str, channel: str) -> str:
        """What a person gets when they never chose (no row)."""
        return DEFAULT_FREQUENCY_BY_CHANNEL.get((category, channel), DEFAULT_FREQUENCY.get(category, Frequency.IMMEDIATELY))

    @classmethod
    def frequency_applying(cls, *, category: str, channel: str, chosen: str | None) -> str:
        """How a message of ``category`` by ``channel`` goes out, given the recipient's
        choice (their row's frequency, or None without a row). Emergency categories and legal
        notices ignore preferences altogether: a lockdown alert cannot be "never" or
        "weekly", nor can the notice of an IEP meeting the family has a right to attend
        (34 CFR 300.322(b)). Quiet hours still apply to a legal notice (only emergencies
        skip them), and a text still needs the person's consent (RecipientProfile.sms_allows)."""
        if category in ALWAYS_IMMEDIATE_CATEGORIES:
            return Frequency.IMMEDIATELY
        return chosen or cls.default_frequency(category, channel)


# What a person gets when they never chose. The grade digest job already sends one message
# per day and child, so it goes out as it comes (a guardian may choose weekly, which collects
# those into one message); reports are documents, so not by push. Everything else is
# immediate, emergency categories always (see frequency_applying).
DEFAULT_FREQUENCY: dict[str, str] = {
    Category.ATTENDANCE_INTERVENTION: Frequency.IMMEDIATELY,
    Category.IEP_REMINDER: Frequency.IMMEDIATELY,
    Category.GRADE_DIGEST: Frequency.IMMEDIATELY,
    Category.ASSIGNMENT_REMINDER: Frequency.IMMEDIATELY,
    Category.PERFORMANCE_ALERT: Frequency.IMMEDIATELY,
    Category.REPORT: Frequency.IMMEDIATELY,
    Category.EMERGENCY: Frequency.IMMEDIATELY,
    Category.EMERGENCY_TEST: Frequency.IMMEDIATELY,
    Category.SYSTEM: Frequency.IMMEDIATELY,
    Category.LEGAL_NOTICE: Frequency.IMMEDIATELY,
}
EMERGENCY_CATEGORIES = (Category.EMERGENCY, Category.EMERGENCY_TEST)
# Categories no preference can delay or silence (frequency_applying, NotificationPreference.clean).
ALWAYS_IMMEDIATE_CATEGORIES = (*EMERGENCY_CATEGORIES, Category.LEGAL_NOTICE)
# SMS is opt-in: without a row choosing it, no non-emergency category goes by text (and a
# row choosing it still needs the person's recorded consent, RecipientProfile.sms_allows).
DEFAULT_FREQUENCY_BY_CHANNEL: dict[tuple[str, str], str] = {
    (Category.REPORT, Channel.PUSH): Frequency.NEVER,
    **{(c, Channel.SMS): Frequency.NEVER for c in Category if c not in EMERGENCY_CATEGORIES},
}


class Priority(models.TextChoices):
    HIGH = "high", "High"
    NORMAL = "normal", "Normal"


class Status(models.TextChoices):
    PENDING = "pending", "Pending"
    DEFERRED = "deferred", "Deferred (quiet hours)"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    SUPPRESSED = "suppressed", "Suppressed"
    # Written by a job run and not claimable: waiting for the run's end, or held by the
    # blast-radius guard until a system admin releases or discards it
    # (skillcore/held_messages.py, scheduling/blast_radius.py). Any channel.
    HELD = "held", "Held (blast-radius guard)"


# Statuses a drainer may claim once send_after has passed. "deferred" is "pending, held for
# the family window": the row says why it waited, the claim treats both alike.
CLAIMABLE_STATUSES = (Status.PENDING, Status.DEFERRED)


class Notification(models.Model):
    """The outbox: one row per recipient, channel and dedupe key.

    Jobs write rows through ``services.notifications_enqueue``; the drainer
    (``delivery.drain_batch``) claims, sends and settles them. The context holds ids and the
    few values the template prints, never whole records; push bodies are generic.
    """

    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    category = models.CharField(max_length=30, choices=Category.choices)
    priority = models.CharField(max_length=6, choices=Priority.choices, default=Priority.NORMAL)
    template = models.CharField(max_length=100)
    context = models.JSONField(default=dict, blank=True)
    dedupe_key = models.CharField(max_length=255, unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    status_reason = models.CharField(max_length=200, blank=True)
    send_after = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=100, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)
    error = models.TextField(blank=True)
    # The scheduling app's JobRun id. Not a foreign key: the outbox must not depend on the
    # scheduler's tables (and a pruned run must not cascade into delivery history).
    job_run_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    student = models.ForeignKey(
        "students.Student", on_delete=models.SET_NULL, null=True, blank=True, related_name="notifications",
        help_text="Whom the message is about, if anyone.",
    )
    district = models.ForeignKey(
        "students.District", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="Whose quiet-hours window and time zone apply.",
    )
    quiet_hours = models.BooleanField(
        default=False, help_text="A family message: retries are also held to the district's window."
    )
    language = models.CharField(max_length=5, default="en")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # The drainer's claim: status IN (pending, deferred) AND send_after <= now ORDER BY
            # send_after. Partial, so sent/suppressed history (the bulk of the table) is not in it.
            models.Index(
                fields=["send_after"], condition=Q(status__in=["pending", "deferred"]), name="notification_claimable_idx"
            ),
            # Stale-claim sweep (status='sending' AND claimed_at < lease) and the admin's counts.
            models.Index(fields=["status", "send_after"], name="notification_status_idx"),
            models.Index(fields=["recipient", "-created_at"], name="notification_recipient_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in Status]), name="notification_status_valid"
            ),
            models.CheckConstraint(condition=Q(channel__in=[c.value for c in Channel]), name="notification_channel_valid"),
        ]
        permissions = [("resend_notification", "Can resend failed notifications")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.category} to {self.recipient_id} by {self.channel} ({self.status})"

    def earliest_send_at(self, moment: dt.datetime) -> dt.datetime:
        """The first instant at or after ``moment`` this message may go out: a family
        message (``quiet_hours``) waits for its district's window, in the district's local
        time; anything else goes at ``moment``."""
        if not (self.quiet_hours and self.district_id):
            return moment
        d = self.district
        return quiet_hours.next_window_start(moment, d.zone, d.notify_window_start, d.notify_window_end)


class NotificationCounter(models.Model):
    """Notifications sent and failed on one channel since the beginning: the Prometheus
    counters ``notifications_sent_total`` / ``notifications_failed_total``.

    Kept at write time (notifications/counters.py) instead of grouping the outbox at each
    scrape: that grouping grew with the table, and data archival deleting sent rows after
    90 days (or a resend moving a failed row back to pending) made the counters go down,
    which Prometheus reads as a reset.
    """

    channel = models.CharField(max_length=10, choices=Channel.choices, unique=True)
    sent = models.PositiveBigIntegerField(default=0, help_text="Transitions sending -> sent.")
    failed = models.PositiveBigIntegerField(
        default=0, help_text="Transitions to failed: given up by delivery, or refused at enqueue (bad input)."
    )

    def __str__(self) -> str:
        return f"{self.channel}: {self.sent} sent, {self.failed} failed"


class DigestItem(models.Model):
    """One line of a daily or weekly digest, waiting for its period to close.

    Keyed by recipient, channel, frequency, period and (object, event): a second item about
    the same object and event replaces the first (upsert), so the digest shows the latest.
    Assembly turns a recipient's items into one outbox message (whose context keeps every
    line) and deletes them in the same transaction: a row here is always still to be sent.
    """

    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="digest_items")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    frequency = models.CharField(max_length=12, choices=[(Frequency.DAILY, "Daily"), (Frequency.WEEKLY, "Weekly")])
    period_start = models.DateField(help_text="Local date the period starts (the Monday for weekly).")
    object_key = models.CharField(max_length=120, help_text="e.g. grade:123")
    event = models.CharField(max_length=40, help_text="e.g. posted, changed")
    category = models.CharField(max_length=30, choices=Category.choices)
    template = models.CharField(max_length=100)
    context = models.JSONField(default=dict, blank=True)
    student = models.ForeignKey("students.Student", on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    district = models.ForeignKey("students.District", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    language = models.CharField(max_length=5, default="en")
    quiet_hours = models.BooleanField(default=False)
    # Written by a job run that the blast-radius guard holds (or that has not ended yet):
    # assembly leaves it out until the run's messages are released.
    held = models.BooleanField(default=False)
    job_run_id = models.BigIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField()
    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "channel", "frequency", "period_start", "object_key", "event"],
                name="digest_item_unique",
            ),
        ]
        # Assembly walks one district's items in recipient order, 500 recipients a pass
        # (keyset: recipient > last): the index is in that order so each pass is a range scan.
        indexes = [models.Index(fields=["frequency", "district", "recipient", "period_start"], name="digest_item_walk_idx")]


class DigestDedupeKey(models.Model):
    """A dedupe key already accepted into a daily or weekly digest.

    Digest items are deleted when their digest is assembled, so the items alone cannot
    tell a re-run of the same job slot after assembly (or a retry that crosses local
    midnight into the next period) from a new request: without this table the same line
    would come back in the next digest. Enqueue inserts the keys with ON CONFLICT DO NOTHING
    and only requests whose key was new become digest items. Pruned after
    ``DIGEST_KEY_RETENTION_DAYS`` (``services.digest_dedupe_keys_prune``, from data archival).
    """

    dedupe_key = models.CharField(max_length=255, unique=True)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["created_at"], name="digest_key_created_idx")]  # the prune's age cut

    def __str__(self) -> str:
        return self.dedupe_key


class RecipientProfile(models.Model):
    """Per-person delivery facts the outbox owns: language for non-guardians, the email
    channel's health (set by delivery on a permanent bounce) and the SMS channel: the
    mobile number, the consent to non-emergency texts (when and how it was given) and a
    "STOP" reply (``sms_opted_out_at``, set and cleared by the inbound webhook)."""

    class EmailStatus(models.TextChoices):
        OK = "ok", "OK"
        BOUNCING = "bouncing", "Bouncing (permanent failure)"

    class SmsConsentMethod(models.TextChoices):
        PAPER_FORM = "paper-form", "Signed paper form"
        PORTAL = "portal", "Family portal opt-in"
        VERBAL = "verbal", "Verbal, recorded by staff"
        TEXT_START = "text-start", "Replied START by text"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="recipient_profile")
    language = models.CharField(max_length=5, default="en", choices=[("en", "English"), ("es", "Spanish")])
    email_status = models.CharField(max_length=10, choices=EmailStatus.choices, default=EmailStatus.OK)
    email_status_reason = models.CharField(max_length=200, blank=True)
    email_status_at = models.DateTimeField(null=True, blank=True)
    mobile_number = models.CharField(
        max_length=16, blank=True, validators=[validate_e164], db_index=True,  # the inbound webhook finds people by it
        help_text="E.164, e.g. +12025550143. Emergencies are texted to it; other categories only with consent.",
    )
    sms_consent_at = models.DateTimeField(
        null=True, blank=True, help_text="When the person agreed to non-emergency texts (empty: emergencies only).",
    )
    sms_consent_method = models.CharField(max_length=12, blank=True, choices=SmsConsentMethod.choices)
    sms_opted_out_at = models.DateTimeField(
        null=True, blank=True, help_text='Replied STOP: emergencies only until they reply START.',
    )

    class Meta:
        constraints = [
            # Consent is a fact with its circumstances: a time without a method (or the
            # reverse) proves nothing.
            models.CheckConstraint(
                condition=Q(sms_consent_at__isnull=True, sms_consent_method="")
                | (Q(sms_consent_at__isnull=False) & ~Q(sms_consent_method="")),
                name="recipient_sms_consent_complete",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user}: {self.language}, email {self.email_status}"

    def clean(self) -> None:
        self.mobile_number = normalize_mobile_number(self.mobile_number)
        if bool(self.sms_consent_at) != bool(self.sms_consent_method):
            raise ValidationError({"sms_consent_method": "Record both when and how consent to texts was given, or neither."})
        if self.sms_consent_at and not self.mobile_number:
            raise ValidationError({"mobile_number": "Consent to texts needs the mobile number it was given for."})

    @staticmethod
    def sms_allows(*, category: str, mobile_number: str, consent_at, opted_out_at) -> str | None:
        """Why a text of ``category`` may not go to this person, or None if it may.
        Emergencies need only a number; anything else also the recorded consent, and no
        STOP since."""
        if not mobile_number:
            return "no-mobile-number"
        if category in EMERGENCY_CATEGORIES:
            return None
        if opted_out_at is not None:
            return "sms-opted-out"
        if consent_at is None:
            return "sms-no-consent"
        return None


class SmsConsentEvent(models.Model):
    """The history of a person's consent to texts: each opt-in (a form, the portal, a START
    reply) and each opt-out (a STOP reply), with the number it was for, when and how.
    ``RecipientProfile`` holds the state now; these rows say how it came to be (what a
    family or a regulator asks for when a text is disputed). Written by the services that
    change the state, in the same transaction; never edited."""

    class Action(models.TextChoices):
        OPT_IN = "opt-in", "Opted in"
        OPT_OUT = "opt-out", "Opted out (STOP)"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sms_consent_events")
    mobile_number = models.CharField(max_length=16)
    action = models.CharField(max_length=8, choices=Action.choices)
    method = models.CharField(max_length=12, help_text="How: a consent method, or text-stop for a STOP reply.")
    at = models.DateTimeField()

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["user", "-at"], name="sms_consent_event_user_idx")]

    def __str__(self) -> str:
        return f"{self.user_id} {self.action} {self.mobile_number} by {self.method} at {self.at:%Y-%m-%d %H:%M}"


class Message(models.Model):
    """A chat message between two people (a teacher and a guardian), optionally about a
    student. Kept two years after it was sent; the data-archival job then moves it to the
    archive (compressed JSON Lines) and deletes the row."""

    sender = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="messages_sent")
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="messages_received")
    student = models.ForeignKey("students.Student", on_delete=models.CASCADE, null=True, blank=True, related_name="messages")
    body = models.TextField()
    sent_at = models.DateTimeField()
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-sent_at"]
        indexes = [
            models.Index(fields=["recipient", "-sent_at"], name="message_recipient_idx"),
            models.Index(fields=["sent_at"], name="message_sent_idx"),  # archival's age cut
        ]

    def __str__(self) -> str:
        return f"message {self.pk} {self.sender_id} -> {self.recipient_id}"
