"""Durable per-endpoint request metrics for the monthly system-health summary.

django-prometheus's counters live in each worker's memory and vanish at a restart, so a
month's response times and error rates cannot be read back from them. This middleware
adds each request to an in-process buffer keyed by (endpoint, UTC hour) and flushes the
buffer at most every REQUEST_METRICS_FLUSH_SECONDS (60) with one upsert per key
(``INSERT ... ON CONFLICT DO UPDATE SET requests = requests + excluded.requests``): a
request costs a dict update, a minute costs a handful of statements per process. A crash
loses at most the unflushed minute. Endpoints are URL routes (``admin:index``,
``health``), never raw paths, so the table stays bounded (endpoints x hours; the health
job deletes hours older than 400 days).
"""
from __future__ import annotations

import datetime as dt
import threading
import time

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from scheduling.models import RequestMetric

_lock = threading.Lock()
_buffer: dict[tuple[str, dt.datetime], list[float]] = {}
_last_flush = time.monotonic()


def endpoint_of(request) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return "unmatched"
    name = match.view_name or match.route or "unnamed"
    return name[:200]


def record(endpoint: str, status: int, ms: float, *, at: dt.datetime) -> None:
    hour = at.replace(minute=0, second=0, microsecond=0)
    with _lock:
        row = _buffer.setdefault((endpoint, hour), [0, 0, 0, 0.0, 0.0])
        row[0] += 1
        row[1] += status >= 500
        row[2] += 400 <= status < 500
        row[3] += ms
        row[4] = max(row[4], ms)


def discard() -> None:
    """Drop what is buffered (tests)."""
    with _lock:
        _buffer.clear()


def flush() -> int:
    """Write the buffer: one upsert per (endpoint, hour). Returns the keys written."""
    global _last_flush
    with _lock:
        items = list(_buffer.items())
        _buffer.clear()
        _last_flush = time.monotonic()
    if not items:
        return 0
    table = RequestMetric._meta.db_table
    greatest = "GREATEST" if connection.vendor == "postgresql" else "MAX"
    sql = (
        f"INSERT INTO {table} (endpoint, hour, requests, errors, client_errors, total_ms, max_ms) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (endpoint, hour) DO UPDATE SET "
        f"requests = {table}.requests + excluded.requests, errors = {table}.errors + excluded.errors, "
        f"client_errors = {table}.client_errors + excluded.client_errors, total_ms = {table}.total_ms + excluded.total_ms, "
        f"max_ms = {greatest}({table}.max_ms, excluded.max_ms)"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(sql, [(e, h, int(r[0]), int(r[1]), int(r[2]), r[3], r[4]) for (e, h), r in items])
    return len(items)


class RequestMetricsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.monotonic()
        status = 500
        try:
            response = self.get_response(request)
            status = response.status_code
            return response
        finally:
            record(endpoint_of(request), status, (time.monotonic() - started) * 1000, at=timezone.now())
            interval = getattr(settings, "REQUEST_METRICS_FLUSH_SECONDS", 60)
            if time.monotonic() - _last_flush >= interval:
                try:
                    flush()
                except Exception:  # metrics must never fail a request
                    import logging

                    logging.getLogger(__name__).exception("request metrics: flush failed")
