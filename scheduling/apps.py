from django.apps import AppConfig


class SchedulingConfig(AppConfig):
    name = "scheduling"
    verbose_name = "Scheduled jobs"

    def ready(self):
        from scheduling import scheduler, signals  # noqa: F401  (signal receivers)

        scheduler.install()
