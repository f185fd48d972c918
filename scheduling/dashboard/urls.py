"""/admin/scheduled-jobs/...: mounted by skillcore/urls.py inside the admin's URL namespace,
so the names stay ``admin:scheduled_jobs*`` and the paths sit under /admin/."""
from django.urls import path

from scheduling.dashboard import views

urlpatterns = [
    path("scheduled-jobs/", views.index, name="scheduled_jobs"),
    path("scheduled-jobs/<int:pk>/", views.schedule_detail, name="scheduled_jobs_schedule"),
    path("scheduled-jobs/<int:pk>/run/", views.run_now, name="scheduled_jobs_run_now"),
    path("scheduled-jobs/<int:pk>/pause/", views.pause, name="scheduled_jobs_pause"),
    path("scheduled-jobs/<int:pk>/resume/", views.resume, name="scheduled_jobs_resume"),
    path("scheduled-jobs/<int:pk>/cron/", views.edit_cron, name="scheduled_jobs_cron"),
    path("scheduled-jobs/<int:pk>/preview/", views.preview, name="scheduled_jobs_preview"),
    path("scheduled-jobs/<int:pk>/delete/", views.delete, name="scheduled_jobs_delete"),
    path("scheduled-jobs/runs/<int:pk>/", views.run_detail, name="scheduled_jobs_run"),
    path("scheduled-jobs/runs/<int:pk>/progress.json", views.run_progress, name="scheduled_jobs_run_progress"),
    path("scheduled-jobs/runs/<int:pk>/retry/", views.retry, name="scheduled_jobs_retry"),
    path("scheduled-jobs/holds/<int:pk>/<str:decision>/", views.hold_decide, name="scheduled_jobs_hold_decide"),
]
