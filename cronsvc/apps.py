from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CronsvcConfig(AppConfig):
    name = "cronsvc"
    verbose_name = "Assistants"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Connecting only; the database is written when migrate has run
        # (manage.py migrate, dev, runall, the compose `migrate` service, the
        # test database), never at import.
        from cronsvc import checks, custom_auth, services  # noqa: PLC0415 - models load once ready

        del checks  # registered on import

        # Custom auth fails at startup, with its reason, rather than on a request.
        try:
            custom_auth.get_auth()
        except (OSError, ValueError):
            pass  # no readable langgraph.json: the graphs report it where they are used

        post_migrate.connect(
            services.assistants_ensure_defaults_after_migrate,
            sender=self,
            dispatch_uid="cronsvc.default_assistants",
        )
