"""`manage.py check --deploy` is clean under production settings (DEBUG off, a long random
SECRET_KEY, ALLOWED_HOSTS) with the documented defaults, and says what is wrong when a
deployment weakens them. Runs in a subprocess: settings are read at import."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _check(**extra: str) -> subprocess.CompletedProcess:
    keep = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    env = {
        **keep, "DJANGO_SETTINGS_MODULE": "skillcore.settings", "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "skillcore.district.example",
        "ARCHIVE_ENCRYPTION_KEY": "CaQZq09I-CL_fOaXK8TfVoiR6yGcJq3QGS4tA_f3JAs=",
        **extra,
    }
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_check_deploy_is_clean_with_production_defaults():
    result = _check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_flags_weakened_settings():
    result = _check(SECURE_SSL_REDIRECT="false", SECURE_HSTS_SECONDS="0", SESSION_COOKIE_SECURE="false")
    assert result.returncode != 0
    for code in ("security.W004", "security.W008", "security.W012"):
        assert code in result.stderr


def test_production_refuses_to_start_without_a_secret_key():
    result = _check(SECRET_KEY="")
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if line]
    assert len(lines) == 1 and "SECRET_KEY" in lines[0], result.stderr


def test_production_refuses_to_start_without_an_archive_key():
    result = _check(ARCHIVE_ENCRYPTION_KEY="")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "SkillCore: environment variable ARCHIVE_ENCRYPTION_KEY must be set when DEBUG is off (archives are "
        "encrypted with it; `python -m skillcore.archives` prints a new key)"]


def test_a_malformed_archive_key_stops_start_up_with_one_line_that_does_not_repeat_it():
    result = _check(ARCHIVE_ENCRYPTION_KEY="MARKER-not-base64-of-32-bytes")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("SkillCore: environment variable ARCHIVE_ENCRYPTION_KEY must be 32 bytes") and "MARKER" not in line
    result = _check(ARCHIVE_ENCRYPTION_RETIRED_KEYS="CaQZq09I-CL_fOaXK8TfVoiR6yGcJq3QGS4tA_f3JAs=,MARKERshort")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "ARCHIVE_ENCRYPTION_RETIRED_KEYS item 2 must be 32 bytes" in line and "MARKER" not in line
