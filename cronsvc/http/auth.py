"""Who may call the API: LangGraph custom auth, or optional API keys.

With custom auth configured (`auth` in langgraph.json, cronsvc.custom_auth),
`LangGraphAuthentication` runs its authenticate handler on every request and
API keys are not required. Without it, `ApiKeyAuthentication` recognises a
valid `x-api-key` (LANGGRAPH_API_KEY; what the OpenAPI document declares as
the security scheme) and `HasApiKey` refuses a request without one when keys
are configured. Views open to all (`/ok`, `/health`, the OpenAPI document and
/docs) set `permission_classes = [AllowAny]`: neither applies to them.
"""

import hmac

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import AllowAny, BasePermission

from cronsvc import custom_auth

HEADER = "x-api-key"


def is_public(view) -> bool:
    """A view open to all: every permission class it has is AllowAny."""
    classes = getattr(view, "permission_classes", None) or ()
    return bool(classes) and all(c is AllowAny for c in classes)


class LangGraphAuthentication(BaseAuthentication):
    """Custom auth's authenticate handler (cronsvc.custom_auth), when configured.

    Sets the request's user (an AuthUser), which is also the current user that
    services authorize as. Sync: adrf runs it in a thread for async views too,
    and async handlers go to the one auth event loop. Refusals keep the
    handler's status (a 401 is not turned into a 403 as DRF does for its own
    authentication errors)."""

    def authenticate(self, request):
        if not custom_auth.enabled():
            return None
        if is_public((request.parser_context or {}).get("view")):
            return None
        user = custom_auth.authenticate_request(request)
        custom_auth.set_current_user(user)
        return (user, None)


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
        if custom_auth.enabled():
            return True  # LangGraphAuthentication decided
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

    def get_security_requirement(self, auto_schema):
        # With custom auth the API key is not what lets a request in.
        return None if custom_auth.enabled() else {self.name: []}


class LangGraphAuthScheme(OpenApiAuthenticationExtension):
    target_class = LangGraphAuthentication
    name = "LangGraphAuth"

    def get_security_requirement(self, auto_schema):
        return {self.name: []} if custom_auth.enabled() else None

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "Whatever langgraph.json's custom auth handler reads (a bearer "
            "token, usually); only when `auth` is configured.",
        }
