from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sync_roles(sender, **kwargs):
    # Permissions exist only after migrate has created them, so roles are synced here
    # rather than in a data migration.
    from students.roles import sync_roles

    sync_roles()


class StudentsConfig(AppConfig):
    name = "students"
    verbose_name = "Students and schools"

    def ready(self) -> None:
        post_migrate.connect(_sync_roles, sender=self, dispatch_uid="skillcore-sync-roles")
