"""Django's deploy checks for the security middleware, for cronsvc's own
subclasses of it (cronsvc.http.middleware): Django looks for its class names in
MIDDLEWARE (security.W001-W003, silenced in settings) and would not see them."""

from django.conf import settings
from django.core.checks import Tags, Warning, register
from django.core.checks.security.base import W001, W002
from django.core.checks.security.csrf import W003
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.security import SecurityMiddleware
from django.utils.module_loading import import_string

_REQUIRED = [
    (SecurityMiddleware, W001),
    (XFrameOptionsMiddleware, W002),
    (CsrfViewMiddleware, W003),
]


@register(Tags.security, deploy=True)
def security_middleware(app_configs, **kwargs) -> list[Warning]:
    classes = [import_string(path) for path in settings.MIDDLEWARE]
    return [
        Warning(django_warning.msg, hint=django_warning.hint, id=f"cronsvc.{django_warning.id}")
        for base, django_warning in _REQUIRED
        if not any(issubclass(cls, base) for cls in classes if isinstance(cls, type))
    ]
