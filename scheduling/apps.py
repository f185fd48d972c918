from django.apps import AppConfig


class SchedulingConfig(AppConfig):
    name = "scheduling"
    verbose_name = "Scheduling"

    def ready(self):
        from scheduling import checks, scheduler, signals  # noqa: F401  (checks, signal receivers)

        scheduler.install()
