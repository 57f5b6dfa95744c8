from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import JsonResponse

from cronsvc import custom_auth


class AuthUserMiddleware:
    """Each request starts without a current user (cronsvc.custom_auth) and
    leaves none behind in its thread."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._acall(request)
        token = custom_auth.set_current_user(None)
        try:
            return self.get_response(request)
        finally:
            custom_auth.reset_current_user(token)

    async def _acall(self, request):
        token = custom_auth.set_current_user(None)
        try:
            return await self.get_response(request)
        finally:
            custom_auth.reset_current_user(token)


class BodySizeLimitMiddleware:
    """Answer 413 for a body over CRONSVC_MAX_BODY_BYTES before anything reads it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.CRONSVC_MAX_BODY_BYTES
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit:
            return JsonResponse(
                {"detail": f"Request body is {length} bytes; the limit is {limit} bytes."},
                status=413,
            )
        return self.get_response(request)
