from django.apps import AppConfig


class IepConfig(AppConfig):
    name = "iep"
    verbose_name = "Special education (IEP and 504)"
