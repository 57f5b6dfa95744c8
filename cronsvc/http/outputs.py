"""Response output: the fields wire serializers share, and the error bodies."""

from __future__ import annotations

from datetime import datetime

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class IsoDateTime(serializers.DateTimeField):
    """`datetime.isoformat()`, as the LangGraph Server writes instants (`+00:00`,
    where DRF's DateTimeField would write `Z`)."""

    def to_representation(self, value):
        return iso(value)


@extend_schema_field(OpenApiTypes.OBJECT)
class ObjectOut(serializers.JSONField):
    """A JSON object, passed through as stored."""


class WireSerializer(serializers.Serializer):
    """An output serializer; `context={"select": [...]}` keeps only those fields,
    in that order (the searches' `select`)."""

    def to_representation(self, instance) -> dict:
        data = super().to_representation(instance)
        select = self.context.get("select")
        return {k: data[k] for k in select} if select else dict(data)


def selected_items(serializer_class: type[WireSerializer]) -> type[WireSerializer]:
    """The items of a search that takes `select`: the same fields, none required
    (with `select`, each item has only the selected ones). A component of its own,
    `<Name>Selected`, so the full shape stays required everywhere else."""
    fields = {
        # Rebuilt from the field's own arguments: DRF copies fields that way.
        name: type(field)(*field._args, **{**field._kwargs, "required": False})
        for name, field in serializer_class._declared_fields.items()
    }
    name = serializer_class.__name__.removesuffix("Out") + "SelectedOut"
    return type(name, (serializer_class,), {**fields, "__doc__": serializer_class.__doc__})


class ErrorSerializer(serializers.Serializer):
    """Every error body: a human-readable `detail` (the SDK shows it)."""

    detail = serializers.CharField()


class ValidationErrorSerializer(ErrorSerializer):
    """A 422: `detail`, and for invalid fields `errors` with their messages."""

    errors = serializers.JSONField(required=False, help_text="The messages, per field.")


class ContentNegotiation(DefaultContentNegotiation):
    """DRF's, with the common case answered at once: a view with one renderer
    (every API view: JSON) asked for anything (`*/*`, no Accept header, as the
    SDKs send) or for that renderer's own type. DRF's parses and ranks the
    Accept header each time (~10% of a count's time in the server)."""

    def select_renderer(self, request, renderers, format_suffix=None):
        if len(renderers) == 1 and not format_suffix:
            renderer = renderers[0]
            accept = request.META.get("HTTP_ACCEPT", "*/*")
            if accept in ("*/*", renderer.media_type):
                return renderer, renderer.media_type
        return super().select_renderer(request, renderers, format_suffix)
