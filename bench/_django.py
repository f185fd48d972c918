"""Shared set-up for benchmarks: a PostgreSQL database of the benchmark's own, migrated."""
from __future__ import annotations

import os


def setup(database: str) -> None:
    """Point Django at postgres://.../<database> (BENCH_DATABASE_URL overrides), create the
    database if needed, migrate it, and set Django up."""
    url = os.environ.get("BENCH_DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{database}")
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("SECRET_KEY", "benchmark-only-not-a-secret")
    from skillcore.archives import new_key

    os.environ.setdefault("ARCHIVE_ENCRYPTION_KEY", new_key())  # production settings need one; the bench archives nothing it keeps
    os.environ.setdefault("DATABASE_POOL", "false")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "skillcore.settings")
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
