from django.contrib import admin
from django.urls import path

admin.site.site_header = "SkillCore district administration"
admin.site.site_title = "SkillCore"
admin.site.index_title = "District data and scheduled jobs"

urlpatterns = [
    path("admin/", admin.site.urls),
]
