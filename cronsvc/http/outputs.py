"""Response output: the fields wire serializers share, and the error bodies."""

from __future__ import annotations

from datetime import datetime

import orjson
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import renderers, serializers
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


class JSONRenderer(renderers.JSONRenderer):
    """DRF's JSON, encoded by orjson: a page of crons in a fifth of the time.
    The same JSON as DRF's compact UTF-8 output for what the views return;
    the types orjson writes differently (datetimes, dataclasses) go through
    DRF's encoder, and anything orjson refuses
    (an integer past 64 bits, a key that is not a string), an indented
    rendering or U+2028/U+2029 (which DRF escapes) is rendered by DRF."""

    _OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if (
            data is not None
            and self.get_indent(accepted_media_type, renderer_context or {}) is None
        ):
            try:
                out = orjson.dumps(data, default=self.encoder_class().default, option=self._OPTIONS)
            except (TypeError, orjson.JSONEncodeError):
                pass
            else:
                if b"\xe2\x80\xa8" not in out and b"\xe2\x80\xa9" not in out:
                    return out
        return super().render(data, accepted_media_type, renderer_context)
