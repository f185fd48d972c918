from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self):
        # /metrics counts the outbox through the engine's collector, which knows no app.
        from notifications.metrics import NOTIFICATIONS
        from scheduling.monitoring.metrics import add_outbox_source

        add_outbox_source(NOTIFICATIONS)

        # The blast-radius guard holds a run's messages through this store (the engine
        # knows no domain app: skillcore/held_messages.py).
        from notifications.held import OUTBOX_HOLDS
        from skillcore.held_messages import add_store

        add_store(OUTBOX_HOLDS)
