"""Real servers on localhost for the delivery tests: an SMTP server (aiosmtpd) and, through
pytest-httpserver, Google's token endpoint and FCM's messages:send. Nothing leaves the machine."""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
import threading
from email import message_from_bytes

import pytest
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug import Response

from notifications import push
from students.models import Role
from tests import factories as f

PROJECT = "skillcore-test"
FCM_PATH = f"/v1/projects/{PROJECT}/messages:send"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SMTPRecorder:
    """aiosmtpd handler: records each message; ``refuse`` maps an address to an SMTP reply."""

    def __init__(self):
        self.messages = []
        self.refuse: dict[str, str] = {}
        self.on_data = None
        self.delay = 0.0
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        msg = message_from_bytes(envelope.content)
        with self.lock:
            self.messages.append(msg)
        if self.on_data:
            self.on_data(msg)
        return "250 Message accepted for delivery"

    def message_ids(self):
        return [m["Message-ID"] for m in self.messages]


@pytest.fixture
def smtp_server(settings):
    handler = SMTPRecorder()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_TIMEOUT = 5
    handler.port = port
    yield handler
    controller.stop()


@pytest.fixture
def pg_only():
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (row locks with SKIP LOCKED, a database other processes can reach)")


@pytest.fixture
def fcm(httpserver, settings, tmp_path):
    """firebase-admin with a fake service account (a fresh RSA key) whose token_uri and the
    FCM endpoint are the local HTTP server. ``fcm.responses`` maps a token to a handler."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    account = {
        "type": "service_account", "project_id": PROJECT, "private_key_id": "test-key-1", "private_key": pem,
        "client_email": f"fcm@{PROJECT}.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": httpserver.url_for("/token"),
    }
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(account))
    settings.FCM_CREDENTIALS_FILE = str(path)
    settings.FCM_PROJECT_ID = PROJECT
    settings.FCM_ENDPOINT = httpserver.url_for("/v1/projects/{project_id}/messages:send")
    settings.FCM_DRY_RUN = False

    class State:
        received: list[dict] = []
        behaviour: dict[str, tuple[int, dict]] = {}  # token -> (status, body)

    state = State()
    state.received = []
    state.behaviour = {}
    counter = iter(range(1, 10**9))

    def send_handler(request):
        body = request.get_json()
        state.received.append({"json": body, "auth": request.headers.get("Authorization")})
        token = body["message"]["token"]
        status, payload = state.behaviour.get(token, (200, None))
        if payload is None:
            payload = {"name": f"projects/{PROJECT}/messages/{next(counter)}"}
        return Response(json.dumps(payload), status=status, content_type="application/json")

    httpserver.expect_request("/token", method="POST").respond_with_json(
        {"access_token": "local-test-token", "expires_in": 3600, "token_type": "Bearer"}
    )
    httpserver.expect_request(FCM_PATH, method="POST").respond_with_handler(send_handler)
    push.reset_firebase_app()
    yield state
    push.reset_firebase_app()


def fcm_error(status: int, grpc_status: str, fcm_code: str | None = None, message: str = "error") -> tuple[int, dict]:
    err = {"code": status, "message": message, "status": grpc_status}
    if fcm_code:
        err["details"] = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": fcm_code}]
    return status, {"error": err}


@pytest.fixture
def family(school):
    """A student (Maria, 15) with a guardian (Spanish) and her own account."""
    student_user = f.UserFactory(username="maria", first_name="Maria", roles=[Role.STUDENT])
    student = f.StudentFactory(school=school, first_name="Maria", user=student_user, birth_date=dt.date(2011, 3, 15))
    guardian = f.UserFactory(username="ana", first_name="Ana", email="ana@example.org", roles=[Role.GUARDIAN])
    link = f.GuardianLinkFactory(guardian=guardian, student=student, preferred_language="es")
    return {"student": student, "student_user": student_user, "guardian": guardian, "link": link}


TWILIO_SID = "AC" + "5" * 32
TWILIO_TOKEN = "local-test-auth-token"
TWILIO_FROM = "+15005550006"


@pytest.fixture
def twilio(httpserver, settings):
    """The twilio library's REST client pointed at a local Twilio-compatible server
    (TWILIO_API_BASE_URL): Messages.json records each form and answers like Twilio (201,
    a message SID); ``twilio.behaviour`` maps a To number to (status, JSON body), e.g. a
    503 or a 400 with a Twilio error code; the account resource answers ``account_status``."""
    settings.TWILIO_ACCOUNT_SID = TWILIO_SID
    settings.TWILIO_AUTH_TOKEN = TWILIO_TOKEN
    settings.TWILIO_FROM_NUMBER = TWILIO_FROM
    settings.TWILIO_API_BASE_URL = httpserver.url_for("/")

    class State:
        received: list[dict]
        behaviour: dict[str, list[tuple[int, dict]]]
        account_status = "active"

    state = State()
    state.received, state.behaviour = [], {}
    counter = iter(range(1, 10**9))

    def messages(request):
        form = request.form.to_dict()
        state.received.append({"form": form, "auth": request.authorization})
        queued = state.behaviour.get(form["To"])
        status, payload = queued.pop(0) if queued else (201, None)
        if payload is None:
            payload = {"sid": f"SM{next(counter):032x}", "status": "queued", "to": form["To"], "from": form["From"],
                       "body": form["Body"], "account_sid": TWILIO_SID}
        return Response(json.dumps(payload), status=status, content_type="application/json")

    def account(request):
        return Response(json.dumps({"sid": TWILIO_SID, "status": state.account_status, "friendly_name": "SkillCore test"}),
                        status=200, content_type="application/json")

    httpserver.expect_request(f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json", method="POST").respond_with_handler(messages)
    httpserver.expect_request(f"/2010-04-01/Accounts/{TWILIO_SID}.json", method="GET").respond_with_handler(account)
    yield state


def twilio_error(status: int, code: int, message: str = "error") -> tuple[int, dict]:
    return status, {"code": code, "message": message, "status": status}
