"""SMS through Twilio's Messaging REST API (the ``twilio`` library's ``Client``).

Settings: ``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN``, ``TWILIO_FROM_NUMBER`` (E.164) and
``TWILIO_API_BASE_URL``, which replaces ``https://api.twilio.com`` (a Twilio-compatible
server: the demo's recorder, the tests' local HTTP server); the library has no option for
it, so the ``api`` domain's ``base_url`` is set after the client is built. Without an
account SID every text waits and retries ("Twilio not configured"), as push does without
credentials.

What a text may say: at most 320 characters, and no grade or attendance figures. Texts
travel in clear through carriers and sit on lock screens, so, like push, they tell a family
that something is waiting and where, never the score. The bodies come from
``<template>.<lang>.sms.txt``; rendering.render_sms holds the two rules (``fit``,
``figures_in``): a body that still carries a figure (a percentage, a fraction, a decimal)
fails that one message instead of going out. Emergencies are the district's own words and
are not checked for figures ("opens at 10:30"); they are cut to 320 characters like
everything else.

Twilio has no idempotency key for outbound messages and no collapse on the phone: a worker
that dies between Twilio's acceptance and the settle leaves the row "sending", and the next
drainer re-sends it after the lease (at-least-once, notifications/delivery.py). The outbox
settles and counts each message once; the message SID Twilio returned is kept in
``provider_message_id``.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from notifications.mail import Outcome

# Twilio error codes that say the number itself cannot take this text (never retried):
# 21211 invalid 'To', 21408 region not enabled, 21610 the recipient replied STOP to Twilio
# (carrier-level opt-out), 21612 cannot route, 21614 not a mobile number.
PERMANENT_NUMBER_CODES = {21211: "invalid number", 21408: "region not enabled", 21610: "recipient unsubscribed at Twilio (STOP)",
                          21612: "number not reachable", 21614: "not a mobile number"}


def configured() -> bool:
    return bool(settings.TWILIO_ACCOUNT_SID and settings.TWILIO_AUTH_TOKEN and settings.TWILIO_FROM_NUMBER)


def client():
    """A Twilio REST client for our settings (cheap: one per drain batch)."""
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    twilio = Client(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN,
                    http_client=TwilioHttpClient(timeout=settings.TWILIO_TIMEOUT))
    if settings.TWILIO_API_BASE_URL:
        twilio.api.base_url = settings.TWILIO_API_BASE_URL.rstrip("/")
    return twilio


def classify(exc: Exception) -> Outcome:
    """Transient (retry with backoff) or permanent (fail now)."""
    from twilio.base.exceptions import TwilioException, TwilioRestException

    if isinstance(exc, TwilioRestException):
        # exc.msg, not str(exc): the library's __str__ colours its text for a terminal.
        detail = f"Twilio HTTP {exc.status} code {exc.code}: {exc.msg}"[:2000]
        if exc.status == 429 or exc.status >= 500:
            return Outcome("retry", reason=f"Twilio unavailable (HTTP {exc.status})", error=detail)
        if exc.code in PERMANENT_NUMBER_CODES:
            return Outcome("fail", reason=f"Twilio refused the number: {PERMANENT_NUMBER_CODES[exc.code]} ({exc.code})", error=detail)
        if exc.status in (401, 403):
            # Credentials revoked or wrong: every text fails alike; retrying gives ops time to fix them.
            return Outcome("retry", reason=f"Twilio refused our credentials (HTTP {exc.status})", error=detail)
        return Outcome("fail", reason=f"Twilio rejected the message (HTTP {exc.status}, code {exc.code})", error=detail)
    detail = f"{type(exc).__name__}: {exc}"[:2000]
    if isinstance(exc, OSError | TimeoutError) or type(exc).__module__.startswith(("requests", "urllib3")):
        return Outcome("retry", reason="Twilio unreachable or timed out", error=detail)
    if isinstance(exc, TwilioException):
        return Outcome("fail", reason="Twilio error", error=detail)
    return Outcome("fail", reason=f"unexpected SMS error ({type(exc).__name__})", error=detail)


@dataclass
class Sender:
    """Sends the texts of one drain batch through one client."""

    twilio: object = None

    def send(self, *, to: str, body: str) -> Outcome:
        if not configured():
            return Outcome("retry", reason="Twilio not configured (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM_NUMBER)")
        try:
            if self.twilio is None:
                self.twilio = client()
            message = self.twilio.messages.create(to=to, from_=settings.TWILIO_FROM_NUMBER, body=body)
        except Exception as exc:
            return classify(exc)
        if message.status in ("failed", "undelivered"):
            return Outcome("fail", reason=f"Twilio could not send it (status {message.status}, code {message.error_code})",
                           error=str(message.error_message or "")[:2000])
        return Outcome("sent", provider_message_id=str(message.sid or "")[:255])


def account_status() -> dict:
    """Twilio's view of our account, for the system-health summary: {"configured",
    "status" ("active", "suspended", "closed", or why it could not be read)}. One API call."""
    if not configured():
        return {"configured": False, "status": "not configured"}
    try:
        account = client().api.v2010.accounts(settings.TWILIO_ACCOUNT_SID).fetch()
    except Exception as exc:
        outcome = classify(exc)
        return {"configured": True, "status": f"unreachable: {outcome.reason}"[:200]}
    return {"configured": True, "status": str(account.status)}
