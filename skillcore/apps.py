from django.apps import AppConfig


class SkillcoreConfig(AppConfig):
    name = "skillcore"
    verbose_name = "FERPA access trail"
