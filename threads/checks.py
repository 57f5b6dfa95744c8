"""langgraph.json's `checkpointer.ttl` is checked as the service starts (every
manage.py command runs the checks), not at the first thread it would apply to."""

from django.core.checks import Error, register
from django.core.exceptions import ImproperlyConfigured

from threads import ttl


@register()
def thread_ttl_config(app_configs, **kwargs) -> list[Error]:
    ttl.config.cache_clear()
    try:
        ttl.config()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="cronsvc.E101")]
    return []
