from django.conf import settings
from django.http import JsonResponse


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
