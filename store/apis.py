"""The `/store` endpoints of the LangGraph Server API: items in namespaces,
LangGraph's long-term memory (store.services)."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from cronsvc.errors import Invalid
from cronsvc.http.inputs import (
    MAX_INT,
    AnyJSON,
    JSONObject,
    StrictBooleanField,
    StrictCharField,
    StrictFloatField,
    query_bool,
    validated,
)
from cronsvc.http.schema import errors
from store import services
from store.wire import NamespacesOut, SearchItemsOut, item_out

NO_CONTENT = {204: OpenApiResponse(description="Done; no body.")}
# GET /store/items: an Item, or JSON null when there is none.
ITEM_OR_NULL = {
    "type": "object",
    "nullable": True,
    "required": ["namespace", "key", "value", "created_at", "updated_at"],
    "properties": {
        "namespace": {"type": "array", "items": {"type": "string"}},
        "key": {"type": "string"},
        "value": {"type": "object", "additionalProperties": {}},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
}


def _labels(**kwargs) -> serializers.ListField:
    return serializers.ListField(child=StrictCharField(allow_blank=True), **kwargs)


class StorePutIn(serializers.Serializer):
    namespace = _labels()
    key = StrictCharField()
    value = JSONObject()
    index = AnyJSON(required=False, allow_null=True)
    ttl = StrictFloatField(required=False, allow_null=True, min_value=0)

    def validate_index(self, value):
        if value is None or value is False:
            return value
        if isinstance(value, list) and all(isinstance(path, str) for path in value):
            return value
        raise serializers.ValidationError("Must be false, null or a list of field paths.")


class StoreDeleteIn(serializers.Serializer):
    namespace = _labels(required=False, default=list)
    key = StrictCharField()


class StoreSearchIn(serializers.Serializer):
    namespace_prefix = _labels(required=False, allow_null=True, default=list)
    filter = JSONObject(required=False, allow_null=True)
    limit = serializers.IntegerField(required=False, min_value=0, max_value=1000, default=10)
    offset = serializers.IntegerField(required=False, min_value=0, max_value=MAX_INT, default=0)
    query = StrictCharField(required=False, allow_null=True, allow_blank=True)
    refresh_ttl = StrictBooleanField(required=False, allow_null=True, default=None)


class StoreNamespacesIn(serializers.Serializer):
    prefix = _labels(required=False, allow_null=True)
    suffix = _labels(required=False, allow_null=True)
    max_depth = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=MAX_INT
    )
    limit = serializers.IntegerField(required=False, min_value=0, max_value=1000, default=100)
    offset = serializers.IntegerField(required=False, min_value=0, max_value=MAX_INT, default=0)


class StoreItemsApi(APIView):
    @extend_schema(
        operation_id="store_put_item",
        summary="Store or update an item",
        request=StorePutIn,
        responses={**NO_CONTENT, **errors(422)},
    )
    def put(self, request):
        data = validated(StorePutIn, request.data)
        services.item_put(**{k: v for k, v in data.items() if v is not None or k == "index"})
        return Response(status=204)

    @extend_schema(
        operation_id="store_get_item",
        summary="Get an item (null when there is none)",
        parameters=[
            OpenApiParameter("key", OpenApiTypes.STR, required=True),
            OpenApiParameter("namespace", OpenApiTypes.STR, description="labels joined by '.'"),
            OpenApiParameter("refresh_ttl", OpenApiTypes.BOOL),
        ],
        responses={
            200: OpenApiResponse(
                ITEM_OR_NULL,
                description="The item, or null when there is none.",
            ),
            **errors(422),
        },
    )
    def get(self, request):
        key = request.query_params.get("key")
        if not key:
            raise Invalid("key is required")
        if "\x00" in key or "\x00" in request.query_params.get("namespace", ""):
            raise Invalid("strings may not contain NUL (\\u0000)")
        refresh = (
            query_bool(request.query_params, "refresh_ttl")
            if "refresh_ttl" in request.query_params
            else None
        )
        item = services.item_get(
            namespace=services.namespace_parse(request.query_params.get("namespace")),
            key=key,
            refresh_ttl=refresh,
        )
        if item is None:
            # JSON null (DRF would send an empty body for None).
            return HttpResponse(b"null", content_type="application/json")
        return Response(item_out(item))

    @extend_schema(
        operation_id="store_delete_item",
        summary="Delete an item",
        request=StoreDeleteIn,
        responses={**NO_CONTENT, **errors(422)},
    )
    def delete(self, request):
        data = validated(StoreDeleteIn, request.data)
        services.item_delete(namespace=data["namespace"], key=data["key"])
        return Response(status=204)


class StoreSearchApi(APIView):
    @extend_schema(
        operation_id="store_search_items",
        summary="Search or list items under a namespace prefix",
        request=StoreSearchIn,
        responses={200: SearchItemsOut, **errors(422)},
    )
    def post(self, request):
        data = validated(StoreSearchIn, request.data)
        data["namespace_prefix"] = data.get("namespace_prefix") or []
        items = services.items_search(**data)
        return Response({"items": [item_out(item) for item in items]})


class StoreNamespacesApi(APIView):
    @extend_schema(
        operation_id="store_list_namespaces",
        summary="List namespaces",
        request=StoreNamespacesIn,
        responses={200: NamespacesOut, **errors(422)},
    )
    def post(self, request):
        data = validated(StoreNamespacesIn, request.data)
        namespaces = services.namespaces_list(**data)
        return Response({"namespaces": [list(ns) for ns in namespaces]})
