"""Optional API keys, sent by the SDK as `x-api-key` (LANGGRAPH_API_KEY)."""

import hmac

from django.conf import settings
from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import BasePermission


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


class HasApiKey(BasePermission):
    def has_permission(self, request, view) -> bool:
        if api_key_is_valid(request.headers.get("x-api-key")):
            return True
        raise NotAuthenticated("Missing or invalid API key (x-api-key header).")
