"""The assistants endpoints of the LangGraph Server API, and the health check."""

from django.db import connection
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from cronsvc import graphs, services
from cronsvc.api import JSONObject, iso, paginated, validated
from cronsvc.errors import Invalid
from cronsvc.models import Assistant
from cronsvc.selectors import assistant_get_or_404, assistant_search

ASSISTANT_FIELDS = [
    "assistant_id", "graph_id", "config", "context", "created_at", "updated_at", "metadata",
    "version", "name", "description",
]


def assistant_out(a: Assistant, select: list[str] | None = None) -> dict:
    data = {
        "assistant_id": str(a.assistant_id),
        "graph_id": a.graph_id,
        "config": a.config,
        "context": a.context,
        "created_at": iso(a.created_at),
        "updated_at": iso(a.updated_at),
        "metadata": a.metadata,
        "version": a.version,
        "name": a.name,
        "description": a.description,
    }
    return {k: data[k] for k in select} if select else data


class AssistantCreateIn(serializers.Serializer):
    assistant_id = serializers.UUIDField(required=False, allow_null=True)
    graph_id = serializers.CharField()
    config = JSONObject(required=False, allow_null=True)
    context = JSONObject(required=False, allow_null=True)
    metadata = JSONObject(required=False, allow_null=True)
    if_exists = serializers.ChoiceField(choices=["raise", "do_nothing"], required=False)
    name = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    description = serializers.CharField(required=False, allow_null=True, allow_blank=True)


class AssistantPatchIn(serializers.Serializer):
    graph_id = serializers.CharField(required=False)
    config = JSONObject(required=False, allow_null=True)
    context = JSONObject(required=False, allow_null=True)
    metadata = JSONObject(required=False, allow_null=True)
    name = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    description = serializers.CharField(required=False, allow_null=True, allow_blank=True)


class AssistantSearchIn(serializers.Serializer):
    metadata = JSONObject(required=False, allow_null=True)
    graph_id = serializers.CharField(required=False, allow_null=True)
    name = serializers.CharField(required=False, allow_null=True)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=10)
    offset = serializers.IntegerField(required=False, min_value=0, default=0)
    sort_by = serializers.ChoiceField(
        choices=["assistant_id", "created_at", "updated_at", "name", "graph_id"], required=False
    )
    sort_order = serializers.ChoiceField(choices=["asc", "desc"], required=False)
    select = serializers.ListField(
        child=serializers.ChoiceField(choices=ASSISTANT_FIELDS), required=False
    )


class AssistantsApi(APIView):
    def post(self, request):
        data = validated(AssistantCreateIn, request.data)
        assistant = services.assistant_create(**{k: v for k, v in data.items() if v is not None})
        return Response(assistant_out(assistant))


class AssistantApi(APIView):
    def get(self, request, assistant_id):
        return Response(assistant_out(assistant_get_or_404(assistant_id)))

    def patch(self, request, assistant_id):
        data = validated(AssistantPatchIn, request.data)
        assistant = services.assistant_update(
            assistant=assistant_get_or_404(assistant_id), **data
        )
        return Response(assistant_out(assistant))

    def delete(self, request, assistant_id):
        services.assistant_delete(assistant=assistant_get_or_404(assistant_id))
        return Response(status=204)


class AssistantSearchApi(APIView):
    def post(self, request):
        data = validated(AssistantSearchIn, request.data)
        qs = assistant_search(
            graph_id=data.get("graph_id"),
            name=data.get("name"),
            metadata=data.get("metadata"),
            sort_by=data.get("sort_by"),
            sort_order=data.get("sort_order"),
        )
        offset, limit = data["offset"], data["limit"]
        items = [assistant_out(a, data.get("select")) for a in qs[offset : offset + limit]]
        return paginated(items, total=qs.count(), offset=offset, limit=limit)


class AssistantCountApi(APIView):
    def post(self, request):
        data = validated(AssistantSearchIn, request.data)
        qs = assistant_search(
            graph_id=data.get("graph_id"), name=data.get("name"), metadata=data.get("metadata")
        )
        return Response(qs.count())


class AssistantGraphApi(APIView):
    def get(self, request, assistant_id):
        assistant = assistant_get_or_404(assistant_id)
        xray = request.query_params.get("xray", "false").lower()
        graph = graphs.get_graph(assistant.graph_id)
        try:
            drawable = graph.get_graph(xray=xray in ("true", "1") or (xray.isdigit() and int(xray)))
        except Exception as exc:  # noqa: BLE001 - a graph that cannot draw itself
            raise Invalid(f"Graph '{assistant.graph_id}' cannot be drawn: {exc}") from exc
        return Response(drawable.to_json())


class AssistantSchemasApi(APIView):
    def get(self, request, assistant_id):
        assistant = assistant_get_or_404(assistant_id)
        graph = graphs.get_graph(assistant.graph_id)

        def schema(getter):
            try:
                return getter().model_json_schema()
            except Exception:  # noqa: BLE001 - not every graph has every schema
                return None

        return Response(
            {
                "graph_id": assistant.graph_id,
                "input_schema": schema(graph.get_input_schema),
                "output_schema": schema(graph.get_output_schema),
                "state_schema": schema(lambda: graph.get_input_schema()),
                "config_schema": schema(graph.get_config_schema),
                "context_schema": schema(graph.get_context_jsonschema_model)
                if hasattr(graph, "get_context_jsonschema_model")
                else None,
            }
        )


class OkApi(APIView):
    permission_classes = [AllowAny]

    def get(self, request):
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return Response({"ok": True})
