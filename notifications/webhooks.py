"""Twilio's inbound-message webhook: a family's "STOP" or "START" reply.

Configure the Twilio number's "A message comes in" webhook (HTTP POST) as
``https://<host>/notifications/twilio/inbound``. Every request must carry a valid
``X-Twilio-Signature`` for the URL Twilio called and its form fields, computed with our
``TWILIO_AUTH_TOKEN`` (the library's ``RequestValidator``; a shared-key signature named in
``X-Twilio-Webhooks-Signature-Settings`` picks its algorithm), and our ``AccountSid``.
Anything else -- no or a wrong signature, another account, no token configured -- is
refused with 403 and logged, and changes nothing. Behind a proxy the URL Django rebuilds
must be the one Twilio called: ``SECURE_PROXY_SSL_HEADER`` and the Host header must be right,
or every request fails the signature check (and is logged as such).

A signed reply whose body is one of the opt-out words (STOP, UNSUBSCRIBE, ...) opts that
number out of everything but emergencies; an opt-in word (START, UNSTOP, YES) opts it back
in (services.sms_reply_apply). The answer is an empty TwiML ``<Response/>``: Twilio's own
opt-out handling already confirms STOP and START to the sender; a second reply would cost a
message and say the same.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from notifications.services import sms_reply_apply, sms_reply_keyword

logger = logging.getLogger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def _masked(number: str) -> str:
    """A phone number in the logs: enough to find it, not enough to dial it."""
    return f"…{number[-4:]}" if number else "(none)"


def _refuse(request: HttpRequest, why: str) -> HttpResponse:
    logger.warning("twilio inbound webhook refused (%s) from %s", why, request.META.get("REMOTE_ADDR", "?"))
    return HttpResponse(f"refused: {why}\n", status=403, content_type="text/plain")


@csrf_exempt  # Twilio cannot hold a CSRF token; the request's signature stands in for it.
@require_POST
def twilio_inbound(request: HttpRequest) -> HttpResponse:
    from twilio.request_validator import (
        SIGNATURE_HEADER,
        SIGNATURE_SETTINGS_HEADER,
        RequestValidator,
        get_signature_algorithm,
    )

    if not settings.TWILIO_AUTH_TOKEN:
        return _refuse(request, "TWILIO_AUTH_TOKEN is not set")
    signature = request.headers.get(SIGNATURE_HEADER, "")
    if not signature:
        return _refuse(request, "no signature")
    algorithm = get_signature_algorithm(request.headers.get(SIGNATURE_SETTINGS_HEADER, ""))
    if not RequestValidator(settings.TWILIO_AUTH_TOKEN).validate(request.build_absolute_uri(), request.POST, signature, algorithm):
        return _refuse(request, "bad signature")
    if request.POST.get("AccountSid", "") != settings.TWILIO_ACCOUNT_SID:
        return _refuse(request, "unknown account")
    sender, keyword = request.POST.get("From", ""), sms_reply_keyword(request.POST.get("Body", ""))
    if keyword:
        changed = sms_reply_apply(mobile_number=sender, keyword=keyword)
        logger.info("twilio inbound %s from %s: %d profile(s) changed", keyword.upper(), _masked(sender), changed)
    else:
        logger.info("twilio inbound message from %s: not a STOP or START reply, ignored", _masked(sender))
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")
