"""Store items on the wire, as the LangGraph Server sends them."""

from __future__ import annotations

from typing import Any

from langgraph.store.base import Item
from rest_framework import serializers


class ItemOut(serializers.Serializer):
    namespace = serializers.ListField(child=serializers.CharField())
    key = serializers.CharField()
    value = serializers.DictField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class SearchItemOut(ItemOut):
    score = serializers.FloatField(required=False, allow_null=True)


class SearchItemsOut(serializers.Serializer):
    items = SearchItemOut(many=True)


class NamespacesOut(serializers.Serializer):
    namespaces = serializers.ListField(child=serializers.ListField(child=serializers.CharField()))


def item_out(item: Item) -> dict[str, Any]:
    out = item.dict()
    score = getattr(item, "score", None)
    if score is not None:
        out["score"] = score
    return out
