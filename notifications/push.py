"""Push through Firebase Cloud Messaging (firebase-admin, HTTP v1 API, ``send_each``).

Credentials: ``FCM_CREDENTIALS_FILE`` (a service-account JSON) and ``FCM_PROJECT_ID``;
without a file, Google application-default credentials. ``FCM_DRY_RUN`` validates at FCM
without delivering (the demo). ``FCM_ENDPOINT`` replaces the messages:send URL (an
emulator, a proxy, the test suite's local HTTP server); firebase-admin has no public option
for it, so the messaging service's ``_fcm_url`` is set after the service is created.

FCM has no idempotency key. What it has is display collapsing: the Android notification
``tag``, ``collapse_key``, APNs ``apns-collapse-id`` and the web push ``tag`` are all set to a
hash of the dedupe key, so a message sent twice (a worker died after FCM accepted it,
see delivery.py) replaces itself on the device instead of showing twice.
"""
from __future__ import annotations

import hashlib
import re
import threading
import warnings
from dataclasses import dataclass

from django.conf import settings

from notifications.mail import Outcome
from notifications.rendering import Rendered

APP_NAME = "skillcore-notifications"
SEND_EACH_LIMIT = 500  # firebase-admin's maximum per send_each call
# FCM registration tokens are URL-safe base64 plus ':' and run to ~160-200 characters; a
# value outside this shape is a client bug or corruption and FCM would reject it anyway.
TOKEN_RE = re.compile(r"^[A-Za-z0-9_:\-]{20,4096}$")

_lock = threading.Lock()


def token_is_wellformed(token: str) -> bool:
    return bool(TOKEN_RE.match(token or ""))


def collapse_id(dedupe_key: str) -> str:
    return hashlib.sha256(dedupe_key.encode()).hexdigest()[:32]


def firebase_app():
    """The firebase-admin app for our settings, created once per process."""
    import firebase_admin
    from firebase_admin import credentials, messaging

    with _lock:
        try:
            app = firebase_admin.get_app(APP_NAME)
        except ValueError:
            cred = (
                credentials.Certificate(settings.FCM_CREDENTIALS_FILE) if settings.FCM_CREDENTIALS_FILE
                else credentials.ApplicationDefault()
            )
            options = {"httpTimeout": 15}
            if settings.FCM_PROJECT_ID:
                options["projectId"] = settings.FCM_PROJECT_ID
            app = firebase_admin.initialize_app(cred, options, name=APP_NAME)
        endpoint = getattr(settings, "FCM_ENDPOINT", "")
        if endpoint:
            service = messaging._get_messaging_service(app)
            service._fcm_url = endpoint.format(project_id=app.project_id)
        return app


def reset_firebase_app() -> None:
    """Forget the app (tests and settings changes)."""
    import firebase_admin

    with _lock:
        try:
            firebase_admin.delete_app(firebase_admin.get_app(APP_NAME))
        except ValueError:
            pass


def build_message(notification, rendered: Rendered, token: str):
    from firebase_admin import messaging

    tag = collapse_id(notification.dedupe_key)
    high = notification.priority == "high"
    # Data carries ids only; the app fetches details after the user signs in.
    data = {"notification_id": str(notification.pk), "category": notification.category}
    if notification.student_id:
        data["student_id"] = str(notification.student_id)
    with warnings.catch_warnings():
        # firebase-admin 7.7 deprecates ``token`` in favour of Firebase installation ids;
        # our DeviceToken rows hold registration tokens, which the v1 API still takes.
        warnings.filterwarnings("ignore", "Message.token is deprecated", DeprecationWarning)
        return messaging.Message(
            token=token,
            notification=messaging.Notification(title=rendered.push_title, body=rendered.push_body),
            data=data,
            android=messaging.AndroidConfig(
                collapse_key=tag, priority="high" if high else "normal", notification=messaging.AndroidNotification(tag=tag)
            ),
            apns=messaging.APNSConfig(headers={"apns-collapse-id": tag, "apns-priority": "10" if high else "5"}),
            webpush=messaging.WebpushConfig(notification=messaging.WebpushNotification(tag=tag)),
        )


@dataclass
class TokenResult:
    ok: bool
    message_id: str = ""
    transient: bool = False
    deactivate: bool = False
    reason: str = ""


def classify(exc) -> TokenResult:
    from firebase_admin import exceptions, messaging

    detail = f"{type(exc).__name__}: {exc}"[:500]
    if isinstance(exc, (messaging.UnregisteredError, messaging.SenderIdMismatchError)):
        return TokenResult(False, deactivate=True, reason=f"device token no longer valid ({detail})")
    if isinstance(exc, exceptions.InvalidArgumentError) and "token" in str(exc).lower():
        return TokenResult(False, deactivate=True, reason=f"device token rejected ({detail})")
    if isinstance(exc, (exceptions.UnavailableError, exceptions.InternalError, exceptions.DeadlineExceededError,
                        exceptions.ResourceExhaustedError, exceptions.UnknownError, messaging.QuotaExceededError)):
        return TokenResult(False, transient=True, reason=f"FCM unavailable ({detail})")
    return TokenResult(False, reason=f"FCM rejected the message ({detail})")


def send_batch(pairs: list[tuple[object, Rendered, str]]) -> list[TokenResult]:
    """Send (notification, rendered, token) triples with send_each, in slices of 500."""
    from firebase_admin import exceptions, messaging

    try:
        app = firebase_app()
    except Exception as exc:  # missing or unreadable credentials: every message waits and retries
        reason = f"FCM not configured ({type(exc).__name__}: {exc})"[:500]
        return [TokenResult(False, transient=True, reason=reason) for _ in pairs]
    results: list[TokenResult] = []
    for start in range(0, len(pairs), SEND_EACH_LIMIT):
        part = pairs[start:start + SEND_EACH_LIMIT]
        messages = [build_message(n, r, t) for n, r, t in part]
        try:
            batch = messaging.send_each(messages, dry_run=settings.FCM_DRY_RUN, app=app)
        except (exceptions.FirebaseError, OSError) as exc:  # the whole call failed (auth, network)
            results += [TokenResult(False, transient=True, reason=f"FCM call failed ({type(exc).__name__}: {exc})"[:500])] * len(part)
            continue
        for resp in batch.responses:
            results.append(TokenResult(True, message_id=resp.message_id or "") if resp.success else classify(resp.exception))
    return results


def settle(token_results: list[TokenResult]) -> Outcome:
    """One notification's outcome from its tokens: sent if any device accepted it."""
    sent = [t for t in token_results if t.ok]
    if sent:
        return Outcome("sent", provider_message_id=sent[0].message_id[:255])
    if any(t.transient for t in token_results):
        return Outcome("retry", reason="FCM temporarily unavailable", error="; ".join(t.reason for t in token_results)[:2000])
    return Outcome("fail", reason=(token_results[0].reason if token_results else "no device token")[:200],
                   error="; ".join(t.reason for t in token_results)[:2000])
