"""A local Twilio-compatible server for the demo: it takes texts and writes them down.

The demo has no Twilio account, so it points ``TWILIO_API_BASE_URL`` here and the outbox
sends through the real ``twilio`` client, unchanged, to this server. It answers the two
calls SkillCore makes, the way Twilio's REST API does:

- ``POST /2010-04-01/Accounts/<sid>/Messages.json`` (form fields To, From, Body; HTTP basic
  auth with the account SID and auth token, else 401 and Twilio's error 20003): appends the
  message as one JSON line to the record file and answers 201 with a message resource
  (``sid`` ``SM`` + 32 hex digits, status ``queued``);
- ``GET /2010-04-01/Accounts/<sid>.json``: the account, status ``active`` (the system-health
  summary's Twilio status).

Nothing is delivered anywhere: the record file is the phone. It listens on 127.0.0.1 only.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

API = "/2010-04-01/Accounts/"


class SmsRecorder:
    """``with SmsRecorder(sid, token, path) as base_url: ...`` or ``start()``/``stop()``."""

    def __init__(self, account_sid: str, auth_token: str, path: Path, *, port: int = 0):
        self.account_sid, self.auth_token, self.path = account_sid, auth_token, Path(path)
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # the demo's terminal is for the demo
                pass

            def _answer(self, status: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _authorised(self) -> bool:
                expected = base64.b64encode(f"{recorder.account_sid}:{recorder.auth_token}".encode()).decode()
                return self.headers.get("Authorization", "") == f"Basic {expected}"

            def do_GET(self):
                if self.path.split("?")[0] != f"{API}{recorder.account_sid}.json":
                    return self._answer(404, {"code": 20404, "message": "The requested resource was not found", "status": 404})
                if not self._authorised():
                    return self._answer(401, {"code": 20003, "message": "Authenticate", "status": 401})
                return self._answer(200, {"sid": recorder.account_sid, "status": "active", "friendly_name": "SkillCore demo"})

            def do_POST(self):
                if self.path.split("?")[0] != f"{API}{recorder.account_sid}/Messages.json":
                    return self._answer(404, {"code": 20404, "message": "The requested resource was not found", "status": 404})
                if not self._authorised():
                    return self._answer(401, {"code": 20003, "message": "Authenticate", "status": 401})
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if not form.get("To") or not form.get("Body"):
                    return self._answer(400, {"code": 21604, "message": "A 'To' phone number and a 'Body' are required.", "status": 400})
                message = {"sid": f"SM{uuid.uuid4().hex}", "account_sid": recorder.account_sid, "to": form["To"],
                           "from": form.get("From", ""), "body": form["Body"], "status": "queued",
                           "date_created": dt.datetime.now(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")}
                recorder.record(message)
                return self._answer(201, message)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def record(self, message: dict) -> None:
        with self._lock, self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(message) + "\n")

    def messages(self) -> list[dict]:
        """Every message recorded in the file so far (earlier demos' too)."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def start(self) -> str:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self.server.serve_forever, name="sms-recorder", daemon=True)
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
