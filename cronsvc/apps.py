from django.apps import AppConfig


class CronsvcConfig(AppConfig):
    name = "cronsvc"
    verbose_name = "Assistants"
    default_auto_field = "django.db.models.BigAutoField"
