"""The demo checkout as a new user meets it, through real processes: `make demo` writes a
.env (DEBUG=1, a generated key) that manage.py reads, so the documented commands work without
exporting anything; SIGTERM or Ctrl-C of ``manage.py demo`` stops every process it started.

Each test works in a temporary project root holding a copy of the Makefile and manage.py (the
code itself is imported from this checkout), with its own SQLite file, so it never touches
the checkout's var/ nor the test database."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _clean_env(db: Path) -> dict[str, str]:
    """This process's environment without what the demo's .env provides, and with the
    temporary database (exporting DATABASE_URL only keeps the test off var/)."""
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "DJANGO_SETTINGS_MODULE"}}
    env["DATABASE_URL"] = f"sqlite:///{db}"
    env["PYTHONPATH"] = str(ROOT)  # this checkout's code, whatever the venv has installed
    # The demo's qcluster drains the outbox: its emails go to files beside the database, not
    # into this checkout's var/.
    env["EMAIL_FILE_PATH"] = str(db.parent / "var" / "mail")
    env.pop("REDIS_URL", None)
    return env


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A project root as `make demo` sees it: the Makefile and manage.py, the venv already
    installed (its stamp newer than pyproject.toml, so make does not reinstall)."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    shutil.copy(ROOT / "manage.py", tmp_path / "manage.py")
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / ".venv").mkdir()
    stamp = tmp_path / ".venv" / ".installed"
    stamp.write_text("")
    os.utime(stamp, (time.time() + 5, time.time() + 5))
    return tmp_path


def manage(root: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(root / "manage.py"), *args], cwd=root, env=_clean_env(root / "db.sqlite3"),
                          capture_output=True, text=True, timeout=timeout)


def test_make_writes_a_dotenv_that_every_documented_command_reads(checkout):
    # Without the .env the commands refuse, as a production checkout without a key must.
    refused = manage(checkout, "jobs", "list")
    assert refused.returncode == 2 and "SECRET_KEY must be set when DEBUG is off" in refused.stderr

    made = subprocess.run(["make", "-s", "-C", str(checkout), ".env", f"PY={sys.executable}"],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    dotenv = (checkout / ".env").read_text()
    assert "DEBUG=1\n" in dotenv
    key = next(line.split("=", 1)[1] for line in dotenv.splitlines() if line.startswith("SECRET_KEY="))
    assert len(key) >= 50
    # Written once: a second make keeps the user's file (and its key) as it is.
    subprocess.run(["make", "-s", "-C", str(checkout), ".env", f"PY={sys.executable}"], check=True, timeout=60)
    assert (checkout / ".env").read_text() == dotenv

    assert manage(checkout, "migrate", "-v", "0").returncode == 0
    assert manage(checkout, "seed_district", "--students", "5", "--seed", "1", "--timezone", "America/New_York",
                  "--name", "Lakeside Unified", "--no-progress").returncode == 0
    synced = manage(checkout, "jobs", "sync")
    assert synced.returncode == 0 and synced.stdout.startswith("created 13")
    listed = manage(checkout, "jobs", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("JOB ") and "Lakeside Unified" in listed.stdout
    for args in (("jobs", "next", "attendance-interventions", "--district", "1", "--count", "1"),
                 ("jobs", "history", "attendance-interventions", "--district", "1"),
                 ("rollover", "--district", "1", "--to", "2099-2100", "--start", "2099-08-30", "--end", "2100-06-16",
                  "--dry-run")):
        done = manage(checkout, *args)
        assert done.returncode == 0, (args, done.stderr)
    # What the shell exports still wins over the file.
    env = _clean_env(checkout / "db.sqlite3") | {"DEBUG": "0"}
    overridden = subprocess.run([sys.executable, "manage.py", "demo", "--no-serve"], cwd=checkout, env=env,
                                capture_output=True, text=True, timeout=60)
    assert overridden.returncode == 2 and "DEBUG" in overridden.stderr  # refused: DEBUG is off


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (read from /proc: parent ids)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process tree from /proc")
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_stopping_the_demo_stops_its_qcluster_and_workers(checkout, stop):
    (checkout / ".env").write_text("DEBUG=1\nSECRET_KEY=" + "k" * 50 + "\n")
    port = _free_port()
    demo = subprocess.Popen(
        [sys.executable, "-u", "manage.py", "demo", "--students", "12", "--addrport", f"127.0.0.1:{port}"],
        cwd=checkout, env=_clean_env(checkout / "db.sqlite3") | {"Q_WORKERS": "2"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        started: set[int] = set()
        deadline = time.monotonic() + 240
        # Serving, and the qcluster has forked its workers (leader + sentinel/monitor/pusher + 2).
        while time.monotonic() < deadline and len(started) < 4:
            assert demo.poll() is None, demo.stdout.read()
            started |= _descendants(demo.pid)
            time.sleep(0.5)
        assert len(started) >= 4, f"the demo started {len(started)} processes"
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # the web server answers

        os.kill(demo.pid, stop)
        output, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    assert "6. Serving the admin" in output
    assert demo.returncode in (0, -stop)
    left = {pid for pid in started if _alive(pid)}
    assert not left, f"still running after the demo stopped: {sorted(left)}"


def test_the_served_demos_qcluster_drains_the_outbox_without_anyone_draining_by_hand(checkout):
    """Serving, the demo leaves its emergency broadcast queued: the qcluster's outbox drain
    (the periodic task `jobs sync` keeps; the demo syncs it too) sends the text to the local
    Twilio-compatible server and the emails to files, within a minute or so."""
    import sqlite3

    (checkout / ".env").write_text("DEBUG=1\nSECRET_KEY=" + "k" * 50 + "\n")
    db = checkout / "db.sqlite3"
    mail_dir = checkout / "var" / "mail"  # _clean_env's EMAIL_FILE_PATH
    demo = subprocess.Popen(
        [sys.executable, "-u", "manage.py", "demo", "--students", "12", "--addrport", f"127.0.0.1:{_free_port()}"],
        cwd=checkout, env=_clean_env(db) | {"TWILIO_ACCOUNT_SID": ""},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )

    def texts_sent() -> int:
        try:
            with sqlite3.connect(db, timeout=5) as c:
                return c.execute("SELECT count(*) FROM notifications_notification "
                                 "WHERE category = 'emergency' AND channel = 'sms' AND status = 'sent'").fetchone()[0]
        except sqlite3.OperationalError:  # not migrated yet, or busy
            return 0

    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not texts_sent():
            assert demo.poll() is None, demo.stdout.read()
            time.sleep(1)
        sent = texts_sent()
        os.kill(demo.pid, signal.SIGTERM)  # the demo stops its qcluster itself
        output, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    assert sent == 1, output[-3000:]  # the one guardian with a number on file
    assert "the qcluster sends its texts within a minute" in output  # not drained by the demo itself
    assert any(mail_dir.iterdir())  # the queued emails went to files, not into the terminal
