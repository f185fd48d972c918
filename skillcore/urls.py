from django.contrib import admin
from django.urls import path

from notifications import webhooks
from scheduling.dashboard import urls as dashboard_urls
from scheduling.monitoring import health

admin.site.site_header = "SkillCore district administration"
admin.site.site_title = "SkillCore"
admin.site.index_title = "District data and scheduled jobs"

# A refused page in the admin's look, whichever view refused it (skillcore/sites.py).
handler403 = "skillcore.sites.permission_denied"

# /admin/scheduled-jobs/: the scheduling engine's dashboard, mounted inside the admin site's
# URL namespace (names admin:scheduled_jobs*, so the admin's templates and redirects reverse
# them like the admin's own) and before the admin's catch-all. Its views gate themselves
# through the admin site (scheduling.dashboard.views.system_admin_required).
admin_patterns, admin_app, admin_namespace = admin.site.urls

urlpatterns = [
    path("admin/", (dashboard_urls.urlpatterns + admin_patterns, admin_app, admin_namespace)),
    # Observability (scheduling/monitoring/health.py): Prometheus through django-prometheus, behind
    # METRICS_TOKEN / METRICS_ALLOWED_NETWORKS; health for monitors and load balancers.
    path("metrics", health.metrics_view, name="prometheus-django-metrics"),
    path("health", health.health, name="health"),
    path("health/db", health.health_db, name="health-db"),
    # Twilio's inbound SMS webhook (STOP/START replies), signature-checked: notifications/webhooks.py.
    path("notifications/twilio/inbound", webhooks.twilio_inbound, name="twilio-inbound"),
]
