"""Request input: body validation, query parameters, and the serializer fields
the input serializers of every app share."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from rest_framework import serializers

from cronsvc.errors import Invalid
from runs.webhooks.guard import MAX_URL_LENGTH, url_problem


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict:
    """`data` (a request body) checked by `serializer_class`: a 422 with the reasons
    unless it is a JSON object that passes. No body at all counts as `{}`; a JSON
    `null` is not an object."""
    if not isinstance(data, dict):
        raise Invalid("Request body must be a JSON object")
    serializer = _take(serializer_class, data)
    try:
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)
    finally:
        _idle.__dict__.setdefault("serializers", {})[serializer_class] = serializer


# One idle instance per input serializer and thread, its fields built and
# bound once: DRF deep-copies and binds every declared field for each new
# instance (~0.1 ms for a search body, as much as the rest of its validation).
# An instance is taken out while it validates, so a nested call gets its own.
_idle = threading.local()
_STATE = ("_validated_data", "_errors", "_data")


def _take(serializer_class: type[serializers.Serializer], data: dict) -> serializers.Serializer:
    serializer = _idle.__dict__.setdefault("serializers", {}).pop(serializer_class, None)
    if serializer is None:
        return serializer_class(data=data)
    for name in _STATE:
        serializer.__dict__.pop(name, None)
    serializer.initial_data = data
    return serializer


def require_uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise Invalid(f"Invalid {what} ID: must be a UUID") from exc


def query_int(params, name: str, default: int, *, min_value: int = 0) -> int:
    """An integer query parameter; 422 `Invalid <name> <value>` as the server says."""
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < min_value or value > MAX_INT:
        raise Invalid(f"Invalid {name} {raw}")
    return value


def column_length(model: type, field: str) -> int:
    """The `max_length` of `model.field`'s column, so an input field refuses a
    longer string with a 422 instead of the database refusing it with a 500."""
    return model._meta.get_field(field).max_length


TRUE_WORDS = ("1", "true", "yes")
FALSE_WORDS = ("0", "false", "no")


def query_bool(params, name: str, default: bool = False) -> bool:
    """A boolean query parameter; anything but true/false (1/0, yes/no) is a 422."""
    raw = params.get(name)
    if raw is None:
        return default
    if raw.lower() in TRUE_WORDS:
        return True
    if raw.lower() in FALSE_WORDS:
        return False
    raise Invalid(f"Invalid {name} {raw!r}: expected true or false")


# PostgreSQL's OFFSET/LIMIT are bigints; a larger number is a client mistake, not a 500.
MAX_INT = 2**31 - 1


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class AnyJSON(serializers.JSONField):
    """Any JSON value (object, list, string...) that PostgreSQL's jsonb can store."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if _has_nul(value):
            raise serializers.ValidationError("Must not contain NUL (\\u0000) characters.")
        return value


class JSONObject(AnyJSON):
    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if value is not None and not isinstance(value, dict):
            raise serializers.ValidationError("Must be a JSON object.")
        return value


class StrictCharField(serializers.CharField):
    """A string, given as a string (DRF's CharField also takes numbers and booleans)."""

    default_error_messages = {"not_a_string": "Must be a string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    """A number, given as a number (DRF's FloatField also takes booleans and strings)."""

    default_error_messages = {"not_a_number": "Must be a number."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("not_a_number")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """An integer, given as a JSON integer (DRF's IntegerField also takes
    booleans, strings and whole floats)."""

    default_error_messages = {"not_an_integer": "Must be an integer."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("not_an_integer")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """A boolean, given as JSON true or false (DRF's BooleanField also takes
    0 and 1, "yes", "on" and other strings: the document says boolean)."""

    default_error_messages = {"not_a_boolean": "Must be a boolean."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("not_a_boolean")
        return data


class StrictUUID(serializers.UUIDField):
    """A UUID given as a string (DRF's UUIDField also takes integers)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


class NodeList(serializers.JSONField):
    """`"*"` or a list of node names (interrupt_before / interrupt_after)."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if value is None or value == "*":
            return value
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise serializers.ValidationError('Must be "*" or a list of node names.')


STREAM_MODES = {
    "values",
    "messages",
    "messages-tuple",
    "tasks",
    "checkpoints",
    "updates",
    "events",
    "debug",
    "custom",
}


class StreamMode(serializers.JSONField):
    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        modes = [value] if isinstance(value, str) else value
        if value is None:
            return value
        if not isinstance(modes, list) or not all(
            isinstance(m, str) and m in STREAM_MODES for m in modes
        ):
            raise serializers.ValidationError(f"Must be one or a list of {sorted(STREAM_MODES)}.")
        return value


class WebhookUrl(serializers.CharField):
    """A webhook URL that can be delivered to: http(s), a host, at most
    MAX_URL_LENGTH characters (runs.webhooks.guard.url_problem). Whether its
    address may be reached is decided when sending."""

    def __init__(self, **kwargs):
        super().__init__(trim_whitespace=False, max_length=MAX_URL_LENGTH, **kwargs)

    def to_internal_value(self, data):
        problem = url_problem(data)
        if problem:
            raise serializers.ValidationError(problem)
        return super().to_internal_value(data)


class RunOptionsIn(serializers.Serializer):
    """What a run is created with; shared by runs and crons."""

    input = AnyJSON(required=False, allow_null=True)
    command = JSONObject(required=False, allow_null=True)
    metadata = JSONObject(required=False, allow_null=True)
    config = JSONObject(required=False, allow_null=True)
    context = JSONObject(required=False, allow_null=True)
    webhook = WebhookUrl(required=False, allow_null=True)
    interrupt_before = NodeList(required=False, allow_null=True)
    interrupt_after = NodeList(required=False, allow_null=True)
    multitask_strategy = serializers.ChoiceField(
        choices=["reject", "rollback", "interrupt", "enqueue"], required=False, allow_null=True
    )
    stream_mode = StreamMode(required=False, allow_null=True)
    stream_subgraphs = StrictBooleanField(required=False, allow_null=True)
    stream_resumable = StrictBooleanField(required=False, allow_null=True)
    durability = serializers.ChoiceField(
        choices=["sync", "async", "exit"], required=False, allow_null=True
    )
    checkpoint_during = StrictBooleanField(required=False, allow_null=True)
