"""Encryption in transit: production refuses, at start-up and with one line, a connection that
would carry student data in clear text over a network (skillcore/transport.py); and
``sslmode=verify-full`` really connects over TLS to a PostgreSQL whose certificate this test
makes (a throwaway cluster with ssl=on, its own CA, a server certificate for
db.skillcore.test reached at 127.0.0.1), and refuses a server it cannot verify; ``rediss://``
likewise carries the cache and django-q2's broker to a TLS-only Redis made here.

Runs on both suites: the servers are its own (PostgreSQL's binaries, redis-server), not the
test database."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from skillcore.transport import is_local

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
KEY = "CaQZq09I-CL_fOaXK8TfVoiR6yGcJq3QGS4tA_f3JAs="
HOST = "db.skillcore.test"  # a network name: the production rules apply to it


def _env(**extra: str) -> dict[str, str]:
    keep = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    return {**keep, "DJANGO_SETTINGS_MODULE": "skillcore.settings", "SECRET_KEY": "transport-test-" + "k" * 40,
            "ARCHIVE_ENCRYPTION_KEY": KEY, "DATABASE_POOL": "false", **extra}


def _start_up(**extra: str) -> subprocess.CompletedProcess:
    """Production's start-up: the settings, as every process imports them."""
    return subprocess.run([sys.executable, "-c", "import skillcore.settings"], cwd=ROOT, env=_env(**extra),
                          capture_output=True, text=True, timeout=60)


def _refused(result: subprocess.CompletedProcess, variable: str, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"SkillCore: environment variable {variable} "), line
    for word in words:
        assert word in line, line


# -- what counts as this machine ------------------------------------------------------------------
@pytest.mark.parametrize("host, local", [
    ("", True), (None, True), ("/var/run/postgresql", True), ("localhost", True), ("127.0.0.1", True),
    ("127.8.9.10", True), ("::1", True), ("[::1]", True), ("api.localhost", True),
    ("10.0.0.5", False), ("db", False), ("db.skillcore.test", False), ("192.168.1.2", False), ("localhost.evil.example", False),
])
def test_only_a_unix_socket_or_loopback_counts_as_this_machine(host, local):
    assert is_local(host) is local


# -- start-up refusals ---------------------------------------------------------------------------
@pytest.mark.parametrize("query, words", [
    ("", ["sslmode=prefer (the default)", "verify-full"]),
    ("?sslmode=require", ["sslmode=require"]),
    ("?sslmode=verify-ca&sslrootcert=/etc/hostname", ["sslmode=verify-ca"]),
    ("?sslmode=verify-full", ["sslrootcert=(none)"]),
    ("?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem", ["/nonexistent/ca.pem is not a CA file"]),
])
def test_production_refuses_a_database_over_the_network_without_verify_full(query, words):
    _refused(_start_up(DATABASE_URL=f"postgres://app@{HOST}:5432/skillcore{query}"), "DATABASE_URL", HOST, *words)


def test_the_override_names_the_service_it_lets_through():
    url = f"postgres://app@{HOST}:5432/skillcore?sslmode=disable"
    assert _start_up(DATABASE_URL=url, ALLOW_PLAINTEXT_TRANSPORT="database").returncode == 0
    # Allowing another service does not let the database through.
    _refused(_start_up(DATABASE_URL=url, ALLOW_PLAINTEXT_TRANSPORT="redis"), "DATABASE_URL", "ALLOW_PLAINTEXT_TRANSPORT")
    _refused(_start_up(ALLOW_PLAINTEXT_TRANSPORT="everything"), "ALLOW_PLAINTEXT_TRANSPORT", "'everything'")


def test_this_machine_needs_no_tls_and_the_demo_is_not_checked():
    assert _start_up(DATABASE_URL="postgres://app@127.0.0.1:5432/skillcore").returncode == 0
    assert _start_up(DATABASE_URL="postgres://app@%2Fvar%2Frun%2Fpostgresql/skillcore").returncode == 0
    assert _start_up(DATABASE_URL="postgres:///skillcore?host=/var/run/postgresql").returncode == 0
    _refused(_start_up(DATABASE_URL="postgres:///skillcore?host=db.internal"), "DATABASE_URL", "db.internal")
    assert _start_up(DATABASE_URL=f"postgres://app@{HOST}/skillcore", DEBUG="1").returncode == 0


@pytest.mark.parametrize("env, variable, words", [
    ({"REDIS_URL": "redis://cache.internal:6379/0"}, "REDIS_URL", ["cache.internal", "rediss://"]),
    ({"REDIS_URL": "rediss://cache.internal:6380/0?ssl_cert_reqs=none"}, "REDIS_URL", ["certificate"]),
    ({"REDIS_URL": "rediss://cache.internal:6380/0?ssl_check_hostname=false"}, "REDIS_URL", ["certificate"]),
    ({"EMAIL_HOST": "smtp.district.example"}, "EMAIL_HOST", ["EMAIL_USE_TLS", "EMAIL_USE_SSL"]),
    ({"EMAIL_HOST": "smtp.district.example", "EMAIL_USE_TLS": "1", "EMAIL_USE_SSL": "1"}, "EMAIL_USE_SSL", ["exclusive"]),
    ({"ARCHIVE_S3_BUCKET": "b", "ARCHIVE_S3_ENDPOINT_URL": "http://minio.internal:9000"}, "ARCHIVE_S3_ENDPOINT_URL", ["https://"]),
    ({"SLACK_WEBHOOK_URL": "http://hooks.slack.example/services/T/B/x"}, "SLACK_WEBHOOK_URL", ["https://"]),
    ({"FCM_ENDPOINT": "http://push.internal/v1/projects/{project_id}/messages:send"}, "FCM_ENDPOINT", ["https://"]),
    ({"TWILIO_API_BASE_URL": "http://sms-gateway.internal"}, "TWILIO_API_BASE_URL", ["https://"]),
])
def test_production_refuses_other_clear_text_connections(env, variable, words):
    _refused(_start_up(**env), variable, *words)


@pytest.mark.parametrize("env", [
    {"REDIS_URL": "rediss://cache.internal:6380/0?ssl_ca_certs=/etc/ssl/certs/ca-certificates.crt"},
    {"REDIS_URL": "redis://127.0.0.1:6379/0"},
    {"REDIS_URL": "unix:///run/redis.sock"},
    {"EMAIL_HOST": "smtp.district.example", "EMAIL_USE_TLS": "1", "EMAIL_PORT": "587"},
    {"EMAIL_HOST": "smtp.district.example", "EMAIL_USE_SSL": "1", "EMAIL_PORT": "465"},
    {"EMAIL_HOST": "smtp.district.example", "EMAIL_BACKEND": "anymail.backends.sendgrid.EmailBackend"},
    {"ARCHIVE_S3_BUCKET": "b", "ARCHIVE_S3_ENDPOINT_URL": "https://minio.internal:9000"},
    {"ARCHIVE_S3_BUCKET": "b"},  # AWS itself: https
    {"ARCHIVE_S3_BUCKET": "b", "ARCHIVE_S3_ENDPOINT_URL": "http://127.0.0.1:9000"},
    {"SLACK_WEBHOOK_URL": "https://hooks.slack.example/services/T/B/x"},
    {"TWILIO_API_BASE_URL": "http://127.0.0.1:8025"},  # the demo's local recorder
])
def test_production_starts_with_encrypted_or_local_connections(env):
    result = _start_up(**env)
    assert result.returncode == 0, result.stderr


def test_server_side_encryption_settings_are_checked():
    _refused(_start_up(ARCHIVE_S3_BUCKET="b", ARCHIVE_S3_SERVER_SIDE_ENCRYPTION="yes"), "ARCHIVE_S3_SERVER_SIDE_ENCRYPTION", "'yes'")
    _refused(_start_up(ARCHIVE_S3_BUCKET="b", ARCHIVE_S3_KMS_KEY_ID="k1"), "ARCHIVE_S3_KMS_KEY_ID", "aws:kms")
    code = ("import skillcore.settings as s; "
            "print(s.STORAGES['archive']['OPTIONS']['object_parameters'])")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env=_env(ARCHIVE_S3_BUCKET="b", ARCHIVE_S3_SERVER_SIDE_ENCRYPTION="aws:kms", ARCHIVE_S3_KMS_KEY_ID="k1"))
    assert done.stdout.strip() == "{'ServerSideEncryption': 'aws:kms', 'SSEKMSKeyId': 'k1'}", done.stderr


# -- a real PostgreSQL over TLS, verified -----------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_ca(cwd: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
             "-keyout", f"{name}.key", "-out", f"{name}.crt", "-subj", f"/CN=SkillCore test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=cwd)


@pytest.fixture(scope="module")
def pki():
    """A CA made here, another (rogue) CA, and a server certificate the first one signed for
    db.skillcore.test and 127.0.0.1. Removed after."""
    if not shutil.which("openssl"):
        pytest.skip("needs openssl")
    root = Path(tempfile.mkdtemp(prefix="skc-pki-"))
    try:
        _make_ca(root, "ca")
        _make_ca(root, "rogue-ca")
        (root / "server.ext").write_text(f"subjectAltName=DNS:{HOST},IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                                         "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "server.key",
                 "-out", "server.csr", "-subj", f"/CN={HOST}", cwd=root)
        _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
                 "-out", "server.crt", "-extfile", "server.ext", cwd=root)
        os.chmod(root / "server.key", 0o600)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_postgres(pki):
    """A PostgreSQL cluster of this test's own: ssl=on with the server certificate; clear-text
    TCP connections refused by pg_hba. Stopped and removed after."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"needs PostgreSQL's server binaries ({PG_BIN})")
    root = Path(tempfile.mkdtemp(prefix="skc-pgtls-"))
    as_owner: list[str] = []
    try:
        for name in ("server.crt", "server.key"):
            shutil.copy(pki / name, root / name)
        os.chmod(root / "server.key", 0o600)
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root: the cluster is postgres's
            as_owner = ["runuser", "-u", "postgres", "--"]
            for p in (root, *root.iterdir()):
                shutil.chown(p, "postgres")
        data = root / "data"
        subprocess.run([*as_owner, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync",
                        "-E", "UTF8"], check=True, capture_output=True, timeout=120)
        (data / "pg_hba.conf").write_text(textwrap.dedent("""\
            local all all trust
            hostssl all all 127.0.0.1/32 trust
            hostnossl all all 127.0.0.1/32 reject
        """))
        port = _free_port()
        options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file={root}/server.crt "
                   f"-c ssl_key_file={root}/server.key -c fsync=off")
        subprocess.run([*as_owner, str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-o", options, "-w",
                        "start"], check=True, capture_output=True, timeout=120)
        try:
            yield {"port": port, "ca": pki / "ca.crt", "rogue_ca": pki / "rogue-ca.crt"}
        finally:
            subprocess.run([*as_owner, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=120)
    finally:
        shutil.rmtree(root, ignore_errors=True)


PROBE = """
import django
django.setup()
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    print(*cursor.fetchone())
"""


def _connect(url: str, **extra: str) -> subprocess.CompletedProcess:
    """A production process (the settings' checks, then Django's own connection) asking the
    server whether this connection is encrypted."""
    return subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=_env(DATABASE_URL=url, **extra),
                          capture_output=True, text=True, timeout=120)


def test_verify_full_connects_over_tls_to_the_server_the_ca_vouches_for(tls_postgres):
    url = (f"postgres://postgres@{HOST}:{tls_postgres['port']}/postgres"
           f"?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={tls_postgres['ca']}")
    done = _connect(url)
    assert done.returncode == 0, done.stderr
    encrypted, protocol = done.stdout.split()
    assert encrypted == "True" and protocol.startswith("TLSv1.")


def test_verify_full_refuses_a_server_another_ca_signed(tls_postgres):
    url = (f"postgres://postgres@{HOST}:{tls_postgres['port']}/postgres"
           f"?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={tls_postgres['rogue_ca']}")
    done = _connect(url)
    assert done.returncode != 0 and "certificate verify failed" in done.stderr


def test_verify_full_refuses_a_certificate_for_another_host(tls_postgres):
    url = (f"postgres://postgres@other.skillcore.test:{tls_postgres['port']}/postgres"
           f"?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={tls_postgres['ca']}")
    done = _connect(url)
    assert done.returncode != 0 and "does not match host name" in done.stderr


def test_the_server_refuses_clear_text_which_the_override_would_have_allowed(tls_postgres):
    url = f"postgres://postgres@{HOST}:{tls_postgres['port']}/postgres?hostaddr=127.0.0.1&sslmode=disable"
    _refused(_connect(url), "DATABASE_URL", "sslmode=disable")
    done = _connect(url, ALLOW_PLAINTEXT_TRANSPORT="database")
    assert done.returncode != 0 and "no encryption" in done.stderr  # pg_hba: hostnossl ... reject


# -- a real Redis over TLS, verified ------------------------------------------------------------------
@pytest.fixture(scope="module")
def tls_redis(pki):
    """A Redis of this test's own that speaks TLS only (no plain port), with the server certificate."""
    if not shutil.which("redis-server"):
        pytest.skip("needs redis-server")
    port = _free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--tls-cert-file", str(pki / "server.crt"),
         "--tls-key-file", str(pki / "server.key"), "--tls-ca-cert-file", str(pki / "ca.crt"), "--tls-auth-clients", "no",
         "--save", "", "--appendonly", "no"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None:
                pytest.fail("redis-server did not start with TLS: " + proc.stdout.read().decode())
            time.sleep(0.1)
        yield {"port": port, "ca": pki / "ca.crt", "rogue_ca": pki / "rogue-ca.crt"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


REDIS_PROBE = """
import django
django.setup()
from django.core.cache import cache
from django_q.brokers import get_broker
cache.set("tls-probe", "through the cache", 30)
print(cache.get("tls-probe"))
print("broker ping", get_broker().ping())
"""


def _redis(url: str) -> subprocess.CompletedProcess:
    """A production process using REDIS_URL as the settings wire it: the cache and django-q2's broker."""
    return subprocess.run([sys.executable, "-c", REDIS_PROBE], cwd=ROOT, env=_env(REDIS_URL=url), capture_output=True,
                          text=True, timeout=120)


def test_rediss_with_the_ca_carries_the_cache_and_the_broker_over_tls(tls_redis):
    done = _redis(f"rediss://127.0.0.1:{tls_redis['port']}/0?ssl_ca_certs={tls_redis['ca']}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["through the cache", "broker ping True"]


def test_rediss_refuses_a_server_another_ca_signed(tls_redis):
    done = _redis(f"rediss://127.0.0.1:{tls_redis['port']}/0?ssl_ca_certs={tls_redis['rogue_ca']}")
    assert done.returncode != 0 and "certificate verify failed" in done.stderr


def test_clear_text_redis_gets_nothing_from_a_tls_only_server(tls_redis):
    done = _redis(f"redis://127.0.0.1:{tls_redis['port']}/0")  # allowed (this machine), and useless: no plain port
    assert done.returncode != 0 and "through the cache" not in done.stdout


# -- SMTP with STARTTLS and implicit TLS, verified ------------------------------------------------------
class _Recorder:
    def __init__(self):
        self.received: list[tuple[bool, str]] = []

    async def handle_DATA(self, server, session, envelope):
        self.received.append((session.ssl is not None, envelope.content.decode()))
        return "250 OK"


@pytest.fixture
def tls_smtp(pki, settings, monkeypatch):
    """An SMTP server with the server certificate that refuses mail before STARTTLS, and the
    SMTP backend pointed at it with EMAIL_USE_TLS; SSL_CERT_FILE makes the CA made here the
    one Python's default context trusts (what the system's store is in production)."""
    import ssl

    from aiosmtpd.controller import Controller

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki / "server.crt", pki / "server.key")
    recorder = _Recorder()
    port = _free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS, settings.EMAIL_USE_SSL = "127.0.0.1", port, True, False
    monkeypatch.setenv("SSL_CERT_FILE", str(pki / "ca.crt"))
    yield recorder
    controller.stop()


def test_starttls_delivers_to_the_server_the_ca_vouches_for(tls_smtp):
    from django.core.mail import send_mail

    assert send_mail("Subject", "Attendance notice", "from@skillcore.test", ["family@skillcore.test"]) == 1
    ((encrypted, content),) = tls_smtp.received
    assert encrypted and "Attendance notice" in content


def test_starttls_refuses_a_server_another_ca_signed(tls_smtp, pki, monkeypatch):
    import ssl

    from django.core.mail import send_mail

    monkeypatch.setenv("SSL_CERT_FILE", str(pki / "rogue-ca.crt"))
    with pytest.raises(ssl.SSLCertVerificationError):
        send_mail("Subject", "Attendance notice", "from@skillcore.test", ["family@skillcore.test"])
    assert tls_smtp.received == []
