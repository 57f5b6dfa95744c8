"""Response output: the fields wire serializers share, and the error bodies."""

from __future__ import annotations

from datetime import datetime

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


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


class ErrorSerializer(serializers.Serializer):
    """Every error body: a human-readable `detail` (the SDK shows it)."""

    detail = serializers.CharField()


class ValidationErrorSerializer(ErrorSerializer):
    """A 422: `detail`, and for invalid fields `errors` with their messages."""

    errors = serializers.JSONField(required=False, help_text="The messages, per field.")
