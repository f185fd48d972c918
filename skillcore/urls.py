from django.contrib import admin
from django.urls import path

from scheduling.monitoring import health

admin.site.site_header = "SkillCore district administration"
admin.site.site_title = "SkillCore"
admin.site.index_title = "District data and scheduled jobs"

urlpatterns = [
    path("admin/", admin.site.urls),
    # Observability (scheduling/monitoring/health.py): Prometheus through django-prometheus, behind
    # METRICS_TOKEN / METRICS_ALLOWED_NETWORKS; health for monitors and load balancers.
    path("metrics", health.metrics_view, name="prometheus-django-metrics"),
    path("health", health.health, name="health"),
    path("health/db", health.health_db, name="health-db"),
]
