"""Wire formats of assistants and the system endpoints, as the LangGraph Server
sends them."""

from __future__ import annotations

from importlib.metadata import version as package_version

from rest_framework import serializers

from cronsvc.http.outputs import IsoDateTime, ObjectOut, WireSerializer
from cronsvc.models import Assistant, AssistantVersion

ASSISTANT_FIELDS = [
    "assistant_id",
    "graph_id",
    "config",
    "context",
    "created_at",
    "updated_at",
    "metadata",
    "version",
    "name",
    "description",
]


class AssistantOut(WireSerializer):
    assistant_id = serializers.UUIDField()
    graph_id = serializers.CharField()
    config = ObjectOut()
    context = ObjectOut()
    created_at = IsoDateTime()
    updated_at = IsoDateTime()
    metadata = ObjectOut()
    version = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField(allow_null=True)


def assistant_out(assistant: Assistant, select: list[str] | None = None) -> dict:
    return AssistantOut(assistant, context={"select": select}).data


class AssistantVersionOut(WireSerializer):
    assistant_id = serializers.UUIDField()
    graph_id = serializers.CharField()
    config = ObjectOut()
    context = ObjectOut()
    created_at = IsoDateTime()
    metadata = ObjectOut()
    version = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField(allow_null=True)


def assistant_version_out(version: AssistantVersion) -> dict:
    return AssistantVersionOut(version).data


class GraphSchemasOut(serializers.Serializer):
    """JSON schemas of an assistant's graph; null where the graph has none."""

    graph_id = serializers.CharField()
    input_schema = serializers.JSONField(allow_null=True)
    output_schema = serializers.JSONField(allow_null=True)
    state_schema = serializers.JSONField(allow_null=True)
    config_schema = serializers.JSONField(allow_null=True)
    context_schema = serializers.JSONField(allow_null=True)


class GraphOut(serializers.Serializer):
    """A drawing of the graph (LangGraph's `Graph.to_json()`)."""

    nodes = serializers.ListField(child=serializers.DictField())
    edges = serializers.ListField(child=serializers.DictField())


class OkOut(serializers.Serializer):
    ok = serializers.BooleanField()
    services = serializers.DictField(
        child=serializers.ChoiceField(["healthy", "unhealthy", "skipped"]),
        help_text="each dependency checked: the database unless check_db=1 is skipped",
    )


class InfoOut(serializers.Serializer):
    version = serializers.CharField()
    langgraph_py_version = serializers.CharField()
    flags = serializers.DictField(child=serializers.BooleanField())
    metadata = serializers.DictField()


def server_info() -> dict:
    """`GET /info`: versions and the feature flags SDKs and UIs read."""
    return {
        "version": package_version("cronsvc"),
        "langgraph_py_version": package_version("langgraph"),
        "flags": {
            "assistants": True,
            "crons": True,
            "store": True,
            "langsmith": False,
            "langsmith_tracing_replicas": False,
        },
        "metadata": {"server": "cronsvc"},
    }


class HealthComponentOut(serializers.Serializer):
    status = serializers.ChoiceField(choices=["ok", "dead"])
    seen_seconds_ago = serializers.FloatField(allow_null=True)
    detail = serializers.CharField()
    nodes = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text="workers only: each live worker's name and seen_seconds_ago",
    )


class HealthOut(serializers.Serializer):
    """Anyone gets `status`; the rest only a caller the API serves (a valid API
    key, or anyone when no keys are configured) or a staff session."""

    status = serializers.ChoiceField(choices=["ok", "unhealthy"])
    detail = serializers.CharField(required=False, help_text="what is down, when something is")
    database = HealthComponentOut(required=False)
    beat = HealthComponentOut(required=False)
    workers = HealthComponentOut(required=False, help_text="the run workers")
    webhooks = HealthComponentOut(
        required=False, help_text="the webhook workers: reported, not part of `status`"
    )
