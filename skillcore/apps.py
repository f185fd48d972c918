from django.apps import AppConfig


class SkillcoreConfig(AppConfig):
    name = "skillcore"
    verbose_name = "FERPA access trail"

    def ready(self):
        from skillcore import forked_db

        # django-q2 and gunicorn fork: a child must not share its parent's pooled sessions.
        forked_db.install()
