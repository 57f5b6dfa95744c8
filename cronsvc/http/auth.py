"""Optional API keys, sent by the SDK as `x-api-key` (LANGGRAPH_API_KEY).

`ApiKeyAuthentication` recognises a valid key (and is what the OpenAPI
document declares as the security scheme); `HasApiKey` refuses a request
without one when keys are configured. Views open to all (`/ok`, `/health`)
set `permission_classes = [AllowAny]`.
"""

import hmac

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import BasePermission

HEADER = "x-api-key"


def api_key_is_valid(presented: str | None) -> bool:
    keys = settings.CRONSVC_API_KEYS
    if not keys:
        return True
    if not presented:
        return False
    presented_bytes = presented.encode()
    # Compare against every key so the time taken does not reveal which matched.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(presented_bytes, key.encode())
    return matched


class ApiKeyAuthentication(BaseAuthentication):
    """`request.auth` is the key when a configured key was presented; otherwise
    None, and the permission decides (so open views stay open). No
    WWW-Authenticate challenge: a refused request answers 403, as the LangGraph
    Server does."""

    def authenticate(self, request):
        presented = request.headers.get(HEADER)
        if settings.CRONSVC_API_KEYS and api_key_is_valid(presented):
            return (None, presented)
        return None


class HasApiKey(BasePermission):
    def has_permission(self, request, view) -> bool:
        if not settings.CRONSVC_API_KEYS or request.auth is not None:
            return True
        raise NotAuthenticated("Missing or invalid API key (x-api-key header).")


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": HEADER,
            "description": "One of CRONSVC_API_KEYS; not required when none are configured.",
        }
