"""How the figures of a notifications enqueue (``EnqueueSummary.as_dict`` and the counts jobs
derive from it) read on a run's page: the labels every job that sends declares among its
summary figures (``Job.figures``, scheduling/summaries.py), so "queued" and "not queued" mean
the same on every job's page."""
from __future__ import annotations

from notifications.services import Reason

ENQUEUE_FIGURES: dict[str, str | tuple[str, str]] = {
    "requests": ("Messages asked for", "one per recipient and channel, before the family rules"),
    "inserted": ("Notifications queued", "new messages put in the outbox for delivery"),
    "notifications_queued": ("Notifications queued", "new messages put in the outbox for delivery"),
    "deferred": ("Held for quiet hours", "queued, delivered when the recipient's quiet hours end"),
    "digested": ("Added to digests", "held for the recipient's daily or weekly digest (their preference)"),
    "notifications_digested": ("Added to digests", "held for the recipient's daily or weekly digest (their preference)"),
    "digest_items": ("Added to digests", "held for the recipient's daily or weekly digest (their preference)"),
    "duplicates": ("Already queued", "queued by an earlier run of this slot: not sent twice"),
    "notifications_duplicate": ("Already queued", "queued by an earlier run of this slot: not sent twice"),
    "failed": ("Could not be queued", "the message could not be built (see the log)"),
    "suppressed": ("Not sent, by reason", "a family rule or a missing address said no; nothing failed"),
    "notifications_suppressed": ("Not sent by a family rule",
                                 "a preference, revoked access, age 18 without consent, no address"),
    "notifications_not_queued": ("Notifications not queued",
                                 "asked for but not queued: a family rule said no, or an earlier run queued it"),
    # The reasons (Notification.status_reason), keys of "suppressed".
    Reason.RECIPIENT_MISSING: "recipient missing",
    Reason.RECIPIENT_INACTIVE: "recipient inactive",
    Reason.GUARDIAN_REVOKED: "guardian's access revoked",
    Reason.ADULT_NO_CONSENT: "student 18 or older without consent",
    Reason.CLASS_MUTED: "class muted",
    Reason.PREFERENCE_NEVER: "preference: never",
    Reason.NO_EMAIL: "no email address",
    Reason.EMAIL_BOUNCING: "email bouncing",
    Reason.NO_DEVICE: "no device for push",
    Reason.NO_MOBILE: "no mobile number",
    Reason.SMS_OPTED_OUT: "opted out of SMS",
    Reason.SMS_NO_CONSENT: "no consent to SMS",
    # Channels, keys of per-channel figures.
    "email": "email", "push": "push", "sms": "SMS",
}
