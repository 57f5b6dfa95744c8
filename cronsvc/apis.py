"""The assistants endpoints of the LangGraph Server API, and the system ones
(`/ok`, `/info`, `/metrics`)."""

import logging
import warnings
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import TypeAdapter, create_model
from rest_framework import serializers
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from cronsvc import graphs, metrics, services
from cronsvc.errors import Invalid
from cronsvc.http.auth import HasApiKey
from cronsvc.http.inputs import (
    MAX_INT,
    JSONObject,
    StrictCharField,
    StrictUUID,
    column_length,
    query_bool,
    validated,
)
from cronsvc.http.outputs import selected_items
from cronsvc.http.pagination import PAGINATION_HEADERS, SELECTED, search_page
from cronsvc.http.schema import ASSISTANT_ID_OR_GRAPH, errors
from cronsvc.models import Assistant
from cronsvc.selectors import assistant_id_from, assistant_search, assistant_versions
from cronsvc.wire import (
    ASSISTANT_FIELDS,
    AssistantOut,
    AssistantVersionOut,
    GraphOut,
    GraphSchemasOut,
    InfoOut,
    OkOut,
    assistant_out,
    assistant_version_out,
    server_info,
)

logger = logging.getLogger(__name__)


class AssistantCreateIn(serializers.Serializer):
    assistant_id = StrictUUID(required=False, allow_null=True)
    graph_id = StrictCharField(max_length=column_length(Assistant, "graph_id"))
    config = JSONObject(required=False, allow_null=True)
    context = JSONObject(required=False, allow_null=True)
    metadata = JSONObject(required=False, allow_null=True)
    if_exists = serializers.ChoiceField(choices=["raise", "do_nothing"], required=False)
    name = StrictCharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=column_length(Assistant, "name"),
    )
    description = StrictCharField(required=False, allow_null=True, allow_blank=True)


class AssistantPatchIn(serializers.Serializer):
    graph_id = StrictCharField(required=False, max_length=column_length(Assistant, "graph_id"))
    config = JSONObject(required=False, allow_null=True)
    context = JSONObject(required=False, allow_null=True)
    metadata = JSONObject(required=False, allow_null=True)
    name = StrictCharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=column_length(Assistant, "name"),
    )
    description = StrictCharField(required=False, allow_null=True, allow_blank=True)


class AssistantSearchIn(serializers.Serializer):
    metadata = JSONObject(required=False, allow_null=True)
    graph_id = StrictCharField(required=False, allow_null=True)
    name = StrictCharField(required=False, allow_null=True)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=10)
    offset = serializers.IntegerField(required=False, min_value=0, max_value=MAX_INT, default=0)
    sort_by = serializers.ChoiceField(
        choices=["assistant_id", "created_at", "updated_at", "name", "graph_id"], required=False
    )
    sort_order = serializers.ChoiceField(choices=["asc", "desc"], required=False)
    select = serializers.ListField(
        child=serializers.ChoiceField(choices=ASSISTANT_FIELDS), required=False
    )


class AssistantsApi(APIView):
    @extend_schema(
        operation_id="assistants_create",
        summary="Create an assistant",
        request=AssistantCreateIn,
        responses={200: AssistantOut, **errors(400, 404, 409, 422)},
    )
    def post(self, request):
        data = validated(AssistantCreateIn, request.data)
        assistant = services.assistant_create(**{k: v for k, v in data.items() if v is not None})
        return Response(assistant_out(assistant))


class AssistantApi(APIView):
    @extend_schema(
        operation_id="assistants_get",
        summary="Get an assistant",
        responses={200: AssistantOut, **errors(404, 422)},
    )
    def get(self, request, assistant_id):
        return Response(assistant_out(services.assistant_resolve(assistant_id, graph_alias=False)))

    @extend_schema(
        operation_id="assistants_patch",
        summary="Update an assistant (a new version)",
        request=AssistantPatchIn,
        responses={200: AssistantOut, **errors(400, 404, 422)},
    )
    def patch(self, request, assistant_id):
        assistant = services.assistant_resolve(assistant_id, graph_alias=False, action=None)
        data = validated(AssistantPatchIn, request.data)
        assistant = services.assistant_update(assistant=assistant, **data)
        return Response(assistant_out(assistant))

    @extend_schema(
        operation_id="assistants_delete",
        summary="Delete an assistant",
        parameters=[
            OpenApiParameter(
                "delete_threads", bool, description="also delete the assistant's threads"
            )
        ],
        responses={204: None, **errors(404, 422)},
    )
    def delete(self, request, assistant_id):
        services.assistant_delete(
            assistant=services.assistant_resolve(assistant_id, graph_alias=False, action=None),
            delete_threads=query_bool(request.query_params, "delete_threads"),
        )
        return Response(status=204)


class AssistantSearchApi(APIView):
    @extend_schema(
        operation_id="assistants_search",
        summary="Search assistants",
        request=AssistantSearchIn,
        parameters=PAGINATION_HEADERS,
        responses={
            200: OpenApiResponse(selected_items(AssistantOut)(many=True), description=SELECTED),
            **errors(404, 422),
        },
    )
    def post(self, request):
        data = validated(AssistantSearchIn, request.data)
        services.assistants_ensure_defaults()
        qs = assistant_search(
            graph_id=data.get("graph_id"),
            name=data.get("name"),
            metadata=data.get("metadata"),
            sort_by=data.get("sort_by"),
            sort_order=data.get("sort_order"),
        )
        return search_page(qs, data, assistant_out)


class AssistantCountApi(APIView):
    @extend_schema(
        operation_id="assistants_count",
        summary="Count assistants",
        request=AssistantSearchIn,
        responses={200: OpenApiTypes.INT, **errors(404, 422)},
    )
    def post(self, request):
        data = validated(AssistantSearchIn, request.data)
        services.assistants_ensure_defaults()
        qs = assistant_search(
            graph_id=data.get("graph_id"), name=data.get("name"), metadata=data.get("metadata")
        )
        return Response(qs.count())


def parse_xray(raw: str | None) -> bool | int:
    """`xray` as the server reads it: true/false or a positive depth; else 422."""
    if not raw or raw in ("false", "False"):
        return False
    if raw in ("true", "True"):
        return True
    try:
        depth = int(raw)
    except ValueError:
        depth = 0
    if depth <= 0:
        raise Invalid("Invalid xray value")
    return depth


class AssistantGraphApi(APIView):
    @extend_schema(
        operation_id="assistants_graph",
        summary="Draw an assistant's graph",
        parameters=[
            ASSISTANT_ID_OR_GRAPH,
            OpenApiParameter(
                "xray", str, description="true, false, or a positive depth of subgraphs"
            ),
        ],
        responses={200: GraphOut, **errors(404, 422)},
    )
    def get(self, request, assistant_id):
        # Only this assistant path also takes a graph id (its default assistant).
        alias = assistant_id_from(assistant_id)
        assistant = services.assistant_resolve(str(alias or assistant_id), graph_alias=False)
        xray = parse_xray(request.query_params.get("xray"))
        graph = graphs.get_graph(assistant.graph_id)
        try:
            drawing = graph.get_graph(xray=xray).to_json()
        except NotImplementedError as exc:
            raise Invalid("The graph does not support visualization") from exc
        for node in drawing.get("nodes", []):
            if isinstance(node.get("data"), dict):
                node["data"].pop("id", None)
        return Response(drawing)


def _schema(getter):
    try:
        return getter()
    except Exception:  # noqa: BLE001 - not every graph has every schema
        return None


def _state_schema(graph) -> dict:
    """The state's JSON schema: one field per output channel (as langgraph-api builds it)."""
    fields: dict = {}
    for key in graph.stream_channels_list:
        update_type = graph.channels[key].UpdateType
        try:
            create_model(key, __root__=(update_type, None)).model_json_schema()
            fields[key] = (update_type, None)
        except Exception:  # noqa: BLE001 - a type pydantic cannot describe
            fields[key] = (Any, None)
    return create_model(graph.get_name("State"), **fields).model_json_schema()


def _config_schema(graph) -> dict:
    """Only the `configurable` part of the config schema, as the server returns it."""
    with warnings.catch_warnings():
        # Deprecated in LangGraph 1.0, but still what the server reports as config_schema.
        warnings.simplefilter("ignore", DeprecationWarning)
        model = graph.config_schema()
    fields = getattr(model, "model_fields", None) or {}
    if "configurable" not in fields:
        return {}
    return TypeAdapter(fields["configurable"].annotation).json_schema()


class AssistantSchemasApi(APIView):
    @extend_schema(
        operation_id="assistants_schemas",
        summary="JSON schemas of an assistant's graph",
        responses={200: GraphSchemasOut, **errors(404, 422)},
    )
    def get(self, request, assistant_id):
        assistant = services.assistant_resolve(assistant_id, graph_alias=False)
        return Response(_graph_schemas(assistant.graph_id, graphs.get_graph(assistant.graph_id)))


def _graph_schemas(graph_id: str, graph) -> dict:
    return {
        "graph_id": graph_id,
        "input_schema": _schema(graph.get_input_jsonschema),
        "output_schema": _schema(graph.get_output_jsonschema),
        "state_schema": _schema(lambda: _state_schema(graph)),
        "config_schema": _schema(lambda: _config_schema(graph)),
        "context_schema": _schema(graph.get_context_jsonschema),
    }


class AssistantSubgraphsApi(APIView):
    @extend_schema(
        operation_id="assistants_subgraphs",
        summary="JSON schemas of the subgraphs of an assistant's graph, by namespace",
        parameters=[
            OpenApiParameter("recurse", OpenApiTypes.BOOL, description="subgraphs of subgraphs")
        ],
        responses={200: OpenApiTypes.OBJECT, **errors(404, 422)},
    )
    def get(self, request, assistant_id, namespace=None):
        assistant = services.assistant_resolve(assistant_id, graph_alias=False)
        recurse = query_bool(request.query_params, "recurse")
        graph = graphs.get_graph(assistant.graph_id)
        return Response(
            {
                ns: _graph_schemas(assistant.graph_id, subgraph)
                for ns, subgraph in graph.get_subgraphs(namespace=namespace, recurse=recurse)
            }
        )


class AssistantSubgraphsAtApi(AssistantSubgraphsApi):
    @extend_schema(
        operation_id="assistants_subgraphs_at",
        summary="JSON schemas of the subgraphs of an assistant's graph under a namespace",
        parameters=[
            OpenApiParameter("recurse", OpenApiTypes.BOOL, description="subgraphs of subgraphs")
        ],
        responses={200: OpenApiTypes.OBJECT, **errors(404, 422)},
    )
    def get(self, request, assistant_id, namespace=None):
        return super().get(request, assistant_id, namespace)


class AssistantVersionsIn(serializers.Serializer):
    metadata = JSONObject(required=False, allow_null=True)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=1000, default=10)
    offset = serializers.IntegerField(required=False, min_value=0, max_value=MAX_INT, default=0)


class AssistantLatestIn(serializers.Serializer):
    version = serializers.IntegerField(min_value=1, max_value=MAX_INT)


class AssistantVersionsApi(APIView):
    @extend_schema(
        operation_id="assistants_versions",
        summary="An assistant's versions, newest first",
        request=AssistantVersionsIn,
        responses={200: AssistantVersionOut(many=True), **errors(404, 422)},
    )
    def post(self, request, assistant_id):
        assistant = services.assistant_resolve(assistant_id, graph_alias=False)
        data = validated(AssistantVersionsIn, request.data)
        versions = assistant_versions(assistant=assistant, metadata=data.get("metadata"))
        page = versions[data["offset"] : data["offset"] + data["limit"]]
        return Response([assistant_version_out(v) for v in page])


class AssistantLatestApi(APIView):
    @extend_schema(
        operation_id="assistants_set_latest",
        summary="Make one of an assistant's versions the current one",
        request=AssistantLatestIn,
        responses={200: AssistantOut, **errors(404, 422)},
    )
    def post(self, request, assistant_id):
        assistant = services.assistant_resolve(assistant_id, graph_alias=False, action=None)
        data = validated(AssistantLatestIn, request.data)
        assistant = services.assistant_set_latest(assistant=assistant, version=data["version"])
        return Response(assistant_out(assistant))


class InfoApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="info",
        summary="Server version and feature flags",
        tags=["system"],
        responses={200: InfoOut},
    )
    def get(self, request):
        return Response(server_info())


class OkApi(APIView):
    permission_classes = [AllowAny]

    """The health check, as the LangGraph Server answers it: the API answers
    (`services.database` "skipped"), and with `check_db=1` its database too
    ("healthy", or "unhealthy" and a 500). Without `check_db` nothing waits for
    the database, so the check stays fast while a burst of runs keeps the
    database busy (compose's health check; `/health` reports every component)."""

    @extend_schema(
        operation_id="ok",
        summary="The API answers (with check_db=1: and its database)",
        tags=["system"],
        parameters=[
            OpenApiParameter(
                "check_db", OpenApiTypes.INT, enum=[0, 1], description="also check the database"
            )
        ],
        responses={200: OkOut, 500: OkOut, **errors(422)},
    )
    def get(self, request):
        # 0 or 1, as documented (the LangGraph Server's int()): "true" is a 422.
        check_db = request.query_params.get("check_db", "0")
        if check_db not in ("0", "1"):
            raise Invalid(f"Invalid check_db {check_db!r}: expected 0 or 1")
        if check_db == "0":
            return Response({"ok": True, "services": {"database": "skipped"}})
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except DatabaseError:
            logger.warning("health check: the database did not answer", exc_info=True)
            return Response({"ok": False, "services": {"database": "unhealthy"}}, status=500)
        return Response({"ok": True, "services": {"database": "healthy"}})


class _FormatIsOurs(BaseContentNegotiation):
    """`?format=` picks the exposition, not a DRF renderer."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


METRICS_FORMATS = ("prometheus", "json")


class MetricsApi(APIView):
    """GET /metrics: counters of ticks, runs and webhook deliveries, the fire
    lag histogram and gauges (cronsvc.metrics), as the Prometheus text
    exposition (default) or JSON. Needs an API key or an authenticated user,
    like the rest of the API, unless CRONSVC_METRICS_PUBLIC is set."""

    content_negotiation_class = _FormatIsOurs

    def get_authenticators(self):
        return [] if settings.CRONSVC_METRICS_PUBLIC else super().get_authenticators()

    def get_permissions(self):
        return [AllowAny()] if settings.CRONSVC_METRICS_PUBLIC else [HasApiKey()]

    @extend_schema(
        operation_id="metrics",
        summary="Scheduler metrics (Prometheus text or JSON)",
        tags=["system"],
        parameters=[
            OpenApiParameter(
                "format", OpenApiTypes.STR, enum=list(METRICS_FORMATS), default="prometheus"
            )
        ],
        responses={
            (200, "text/plain"): OpenApiTypes.STR,
            (200, "application/json"): OpenApiTypes.OBJECT,
            **errors(422),
        },
    )
    def get(self, request):
        fmt = request.query_params.get("format", "prometheus")
        if fmt == "json":
            return Response(metrics.as_json())
        if fmt != "prometheus":
            raise Invalid(f"format must be one of {', '.join(METRICS_FORMATS)}, not {fmt!r}")
        return HttpResponse(metrics.prometheus_text(), content_type=CONTENT_TYPE_LATEST)
