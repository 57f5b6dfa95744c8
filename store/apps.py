import json

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class StoreConfig(AppConfig):
    name = "store"
    verbose_name = "Store"

    def ready(self) -> None:
        from store import backend  # noqa: PLC0415 - settings are ready here

        # `migrate` creates the vector tables when "store.index" is configured.
        post_migrate.connect(
            backend.setup_index_tables, sender=self, dispatch_uid="store.index_tables"
        )
        # A bad "store" (index dims, an embed that does not load) fails at
        # startup, with its reason, rather than on the first store call.
        try:
            backend.index_config()
        except (OSError, json.JSONDecodeError):
            pass  # no readable langgraph.json: the graphs report it where they are used
