"""Email through Django's email API: whatever EMAIL_BACKEND says (an anymail ESP such as
SendGrid in production, the console/file backend in the demo, plain SMTP, locmem in tests).

The dedupe key travels with the message so a re-send after a crash is recognisable:
  * ``Message-ID: <sha256(dedupe key)@skillcore.notifications>``, the same on every attempt;
    mailbox providers (Gmail among them) collapse copies with one Message-ID;
  * anymail ``metadata`` ``{"dedupe_key": ..., "notification_id": ...}``, which anymail maps to
    the ESP's custom data (SendGrid ``custom_args``) and which comes back on its webhooks;
  * ``X-SkillCore-Dedupe-Key`` header for SMTP relays and log searches.
"""
from __future__ import annotations

import hashlib
import smtplib
import socket
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.validators import validate_email

from notifications.rendering import Rendered

try:  # anymail is a dependency, but keep SMTP usable if an ESP package is trimmed
    from anymail.exceptions import AnymailAPIError, AnymailError, AnymailRecipientsRefused
except ImportError:  # pragma: no cover
    AnymailAPIError = AnymailError = AnymailRecipientsRefused = ()


@dataclass
class Outcome:
    """What one provider call did. ``kind``: sent, retry (transient) or fail (permanent)."""

    kind: str
    provider_message_id: str = ""
    reason: str = ""
    error: str = ""
    bounce: bool = False  # permanent recipient failure: mark the channel bouncing


def message_id_for(dedupe_key: str) -> str:
    return f"<{hashlib.sha256(dedupe_key.encode()).hexdigest()[:40]}@skillcore.notifications>"


def build_message(notification, rendered: Rendered, *, connection=None) -> EmailMultiAlternatives:
    msg = EmailMultiAlternatives(
        subject=rendered.subject, body=rendered.text, from_email=settings.DEFAULT_FROM_EMAIL,
        to=[notification.recipient.email], connection=connection,
        headers={"Message-ID": message_id_for(notification.dedupe_key), "X-SkillCore-Dedupe-Key": notification.dedupe_key},
    )
    msg.attach_alternative(rendered.html, "text/html")
    # anymail's normalised attributes; plain Django backends ignore them.
    msg.metadata = {"dedupe_key": notification.dedupe_key, "notification_id": str(notification.pk)}
    msg.tags = [notification.category]
    return msg


def classify(exc: Exception) -> Outcome:
    """Transient (retry with backoff) or permanent (fail now)."""
    try:
        detail = f"{type(exc).__name__}: {exc}"[:2000]
    except Exception:  # some provider exceptions fail to describe themselves without a response
        detail = f"{type(exc).__name__}: {exc.args!r}"[:2000]
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        if codes and all(400 <= c < 500 for c in codes):
            return Outcome("retry", reason="recipient temporarily refused (SMTP 4xx)", error=detail)
        return Outcome("fail", reason=f"recipient refused by the mail server (SMTP {codes[0] if codes else '5xx'})", error=detail, bounce=True)
    if isinstance(exc, smtplib.SMTPResponseException):
        if 400 <= exc.smtp_code < 500:
            return Outcome("retry", reason=f"mail server busy (SMTP {exc.smtp_code})", error=detail)
        return Outcome("fail", reason=f"mail server rejected the message (SMTP {exc.smtp_code})", error=detail)
    if AnymailRecipientsRefused and isinstance(exc, AnymailRecipientsRefused):
        return Outcome("fail", reason="recipient refused by the email provider", error=detail, bounce=True)
    if AnymailAPIError and isinstance(exc, AnymailAPIError):
        status = getattr(exc, "status_code", None)
        if status is None or status >= 500 or status == 429:
            return Outcome("retry", reason=f"email provider unavailable ({status or 'no response'})", error=detail)
        return Outcome("fail", reason=f"email provider rejected the message (HTTP {status})", error=detail)
    if isinstance(exc, (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, socket.timeout, TimeoutError, ConnectionError, OSError)):
        return Outcome("retry", reason="mail server unreachable or timed out", error=detail)
    if AnymailError and isinstance(exc, AnymailError):
        return Outcome("fail", reason="email provider error", error=detail)
    return Outcome("fail", reason=f"unexpected email error ({type(exc).__name__})", error=detail)


class Mailer:
    """One backend connection reused for a batch; reopened after an error."""

    def __init__(self) -> None:
        self.connection = None

    def _conn(self):
        if self.connection is None:
            self.connection = get_connection(fail_silently=False)
        return self.connection

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            except Exception:  # closing a broken SMTP session must not mask the outcome
                pass
            self.connection = None

    def send(self, notification, rendered: Rendered) -> Outcome:
        address = notification.recipient.email or ""
        try:
            validate_email(address)
        except ValidationError:
            return Outcome("fail", reason=f"invalid email address {address[:80]!r}")
        try:
            msg = build_message(notification, rendered, connection=self._conn())
            sent = self._conn().send_messages([msg])
        except Exception as exc:
            self.close()
            return classify(exc)
        if not sent:
            return Outcome("retry", reason="email backend sent nothing")
        status = getattr(msg, "anymail_status", None)
        provider_id = (getattr(status, "message_id", None) if status else None) or msg.extra_headers["Message-ID"]
        return Outcome("sent", provider_message_id=str(provider_id)[:255])
