"""Watching SkillCore from outside: /health (JSON, 503 when unhealthy), /health/db (the web
tier only, for load-balancer readiness) and /metrics (Prometheus, access restricted).

/metrics access (settings, from the environment):
- METRICS_TOKEN: ``Authorization: Bearer <token>`` is accepted (constant-time compare).
- METRICS_ALLOWED_NETWORKS: a client whose REMOTE_ADDR is in one of these CIDR networks is
  accepted. Behind a reverse proxy REMOTE_ADDR is the proxy's: use the token there.
- Neither set: denied, except from localhost when DEBUG is on (the demo).
"""
from __future__ import annotations

import hmac
import ipaddress
import time

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from scheduling import periodic_tasks
from scheduling.monitoring import metrics, status

LOCALHOST = ("127.0.0.1/32", "::1/128")


def metrics_access(request: HttpRequest) -> tuple[bool, int]:
    """(allowed, status when not): 401 when a token is configured and none/a wrong one was
    given, 403 otherwise."""
    token = settings.METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "")
        if given.startswith("Bearer ") and hmac.compare_digest(given[7:].strip().encode(), token.encode()):
            return True, 200
    networks = list(settings.METRICS_ALLOWED_NETWORKS)
    if not token and not networks and settings.DEBUG:
        networks = list(LOCALHOST)
    if networks and _in_networks(request.META.get("REMOTE_ADDR", ""), networks):
        return True, 200
    return False, 401 if token else 403


def _in_networks(address: str, networks: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """django-prometheus's exporter (requests, database, cache, process) plus the job
    metrics collector, behind the access check."""
    from django_prometheus.exports import ExportToDjangoView

    allowed, code = metrics_access(request)
    if not allowed:
        response = HttpResponse("metrics: access denied\n", status=code, content_type="text/plain")
        if code == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    metrics.register()
    return ExportToDjangoView(request)


def _database() -> dict:
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "not reachable" to a probe
        return {"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}
    return {"ok": True, "latency_ms": round((time.monotonic() - started) * 1000, 1)}


@never_cache
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """Database reachable, scheduler heartbeat, overdue schedules, the periodic tasks (the
    outbox drain) in place; 503 when unhealthy.

    For the uptime monitor and the on-call dashboard, not for a load balancer's readiness
    probe: a stopped scheduler must page someone, not take the web site out of rotation
    (use /health/db for that). Shows counts and job slugs only, no student data.
    """
    db = _database()
    body: dict = {"status": "unhealthy", "database": db}
    if db["ok"]:
        try:
            s = status.system_status()
            # The outbox drain is a periodic task, not a job: no overdue row shows it missing.
            periodic = periodic_tasks.problems()
        except Exception as exc:
            db.update(ok=False, error=f"{type(exc).__name__}: {str(exc)[:200]}")
        else:
            body["scheduler"] = {
                "ok": s.scheduler_ok,
                "last_heartbeat": s.last_heartbeat.isoformat() if s.last_heartbeat else None,
                "heartbeat_age_seconds": s.heartbeat_age_seconds,
            }
            body["overdue_schedules"] = {"count": s.overdue, "examples": s.overdue_examples}
            body["runs"] = {"running": s.running, "long_running": s.long_running}
            body["failing"] = s.failing
            body["open_incidents"] = {"critical": s.open_critical, "warning": s.open_warning}
            body["periodic_tasks"] = {"ok": not periodic, "problems": periodic}
            if s.scheduler_ok and s.overdue == 0 and not periodic:
                body["status"] = "ok"
    return JsonResponse(body, status=200 if body["status"] == "ok" else 503)


@never_cache
@require_GET
def health_db(request: HttpRequest) -> JsonResponse:
    """The web tier can serve: the database answers. For load-balancer readiness."""
    db = _database()
    return JsonResponse({"status": "ok" if db["ok"] else "unhealthy", "database": db}, status=200 if db["ok"] else 503)
