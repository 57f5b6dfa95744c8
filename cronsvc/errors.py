"""Typed service errors and the one exception handler that maps them to HTTP.

Every error body carries a top-level human-readable `detail` string; the SDK
shows it. Validation errors add `errors` with the per-field messages.
"""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response


class ServiceError(Exception):
    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class BadRequest(ServiceError):
    pass


class NotFound(ServiceError):
    status_code = status.HTTP_404_NOT_FOUND


class Conflict(ServiceError):
    status_code = status.HTTP_409_CONFLICT


class Invalid(ServiceError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY


class Forbidden(ServiceError):
    """A custom auth handler refused the action (it returned False)."""

    status_code = status.HTTP_403_FORBIDDEN


class AuthFailed(ServiceError):
    """Custom authentication refused the request: the status and detail of the
    handler's Auth.exceptions.HTTPException, else 401."""

    def __init__(self, detail: str, status_code: int = 401, headers=None):
        super().__init__(detail)
        self.status_code = status_code
        self.headers = dict(headers or {})


class Unavailable(ServiceError):
    """The server is at a limit of its own (e.g. CRONSVC_MAX_OPEN_STREAMS): try later."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE


class AssistantNotFound(NotFound):
    pass


class GraphNotFound(NotFound):
    """A graph id not declared in langgraph.json (also: an assistant whose graph
    was removed from it). The one class; `cronsvc.graphs` raises it too."""


class ThreadNotFound(NotFound):
    pass


class RunNotFound(NotFound):
    pass


class CronNotFound(NotFound):
    pass


def _flatten(errors, prefix: str = "") -> list[str]:
    if isinstance(errors, dict):
        out: list[str] = []
        for key, value in errors.items():
            name = key if key != "non_field_errors" else ""
            out += _flatten(value, f"{prefix}.{name}" if prefix and name else (name or prefix))
        return out
    if isinstance(errors, list):
        out = []
        for item in errors:
            out += _flatten(item, prefix)
        return out
    return [f"{prefix}: {errors}" if prefix else str(errors)]


def exception_handler(exc, context):
    # Imported here: rest_framework.views loads the authentication classes,
    # and custom auth's (cronsvc.http.auth) raises the errors of this module.
    from rest_framework.views import exception_handler as drf_exception_handler  # noqa: PLC0415

    if isinstance(exc, ServiceError):
        return Response(
            {"detail": exc.detail},
            status=exc.status_code,
            headers=getattr(exc, "headers", None) or None,
        )
    if isinstance(exc, DjangoValidationError):
        messages = exc.messages
        return Response(
            {"detail": "; ".join(messages), "errors": messages},
            status=status.HTTP_422_UNPROCESSABLE_ENTITY,
        )
    if isinstance(exc, exceptions.ValidationError):
        messages = _flatten(exc.detail)
        return Response(
            {"detail": "Invalid request: " + "; ".join(messages), "errors": exc.detail},
            status=status.HTTP_422_UNPROCESSABLE_ENTITY,
        )
    if isinstance(exc, exceptions.ParseError):
        return Response(
            {"detail": f"Invalid JSON in request body: {exc.detail}"},
            status=status.HTTP_422_UNPROCESSABLE_ENTITY,
        )
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return Response(
            {"detail": f"Unsupported content type: {exc.detail}. Send application/json."},
            status=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        )
    if isinstance(exc, Http404):
        return Response({"detail": "Not found"}, status=status.HTTP_404_NOT_FOUND)
    response = drf_exception_handler(exc, context)
    if response is not None and not isinstance(response.data, dict):
        response.data = {"detail": str(response.data)}
    if response is not None and "detail" in response.data:
        response.data["detail"] = str(response.data["detail"])
    return response
