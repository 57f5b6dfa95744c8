"""Reads of assistants."""

import uuid

from django.db.models import Q, QuerySet

from cronsvc import custom_auth, graphs, statements
from cronsvc.errors import AssistantNotFound, GraphNotFound, Invalid
from cronsvc.filters import InvalidFilter, json_filter
from cronsvc.models import Assistant, AssistantVersion


def parse_uuid(value) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        return None


def assistant_id_from(value: str) -> uuid.UUID | None:
    """An assistant's UUID from its id or from a graph name (its default assistant)."""
    parsed = parse_uuid(value)
    if parsed is not None:
        return parsed
    if isinstance(value, str) and value in graphs.graph_specs():
        return graphs.default_assistant_id(value)
    return None


def graph_check(graph_id: str) -> None:
    if graph_id not in graphs.graph_specs():
        raise GraphNotFound(f"Graph '{graph_id}' not found. Expected one of: {graphs.graph_ids()}")


def assistant_get_or_404(
    value: str, *, graph_alias: bool = True, action: str | None = "read"
) -> Assistant:
    """The assistant with UUID `value`, or, with `graph_alias`, the default assistant of
    graph `value`. Without `graph_alias` (the /assistants/{id} paths) a non-UUID is a 422,
    as on the LangGraph Server. Only reads: a default assistant missing from the
    database is not found here (cronsvc.services.assistant_resolve creates it).

    With custom auth, `action` (assistants.read by default; None: the caller
    authorizes) is authorized on it: an assistant its filter hides is not
    found (the default assistants are readable by all)."""
    if graph_alias:
        assistant_id = assistant_id_from(value)
    else:
        assistant_id = parse_uuid(value)
        if assistant_id is None:
            raise Invalid("Invalid assistant ID: must be a UUID")
    if assistant_id is None:
        raise AssistantNotFound(f"Assistant '{value}' not found")

    def build(pk) -> QuerySet[Assistant]:
        qs = Assistant.objects.filter(pk=pk)
        if action is not None:
            return qs.filter(assistant_auth_q(action, {"assistant_id": pk}))
        return qs

    assistant = statements.first(f"assistant:{action}", build, assistant_id)
    if assistant is None:
        raise AssistantNotFound(f"Assistant '{value}' not found")
    return assistant


def assistant_auth_q(action: str, value: dict) -> Q:
    """The assistants the current user may `action` (custom auth; all without it)."""
    filter_ = custom_auth.authorize("assistants", action, value)
    if action == "update" or action == "delete":
        return custom_auth.filter_q(filter_)
    return custom_auth.assistant_read_q(filter_)


def is_default_assistant_id(assistant_id: uuid.UUID | None) -> bool:
    """Whether `assistant_id` is the default assistant of a registered graph."""
    return assistant_id in {graphs.default_assistant_id(g) for g in graphs.graph_ids()}


def assistant_search(
    *,
    graph_id: str | None = None,
    name: str | None = None,
    metadata: dict | None = None,
    sort_by: str | None = None,
    sort_order: str | None = None,
) -> QuerySet[Assistant]:
    """Only reads: the API ensures the default assistants first
    (cronsvc.services.assistants_ensure_defaults)."""
    if graph_id is not None:
        graph_check(graph_id)
    qs = Assistant.objects.filter(
        assistant_auth_q(
            "search",
            {"graph_id": graph_id, "metadata": metadata or {}, "limit": 0, "offset": 0},
        )
    )
    if graph_id:
        qs = qs.filter(graph_id=graph_id)
    if name:
        qs = qs.filter(name__icontains=name)
    qs = filter_metadata(qs, "metadata", metadata)
    return order(
        qs,
        sort_by,
        sort_order,
        allowed={"assistant_id", "graph_id", "name", "created_at", "updated_at"},
    )


def assistant_versions(
    *, assistant: Assistant, metadata: dict | None = None
) -> QuerySet[AssistantVersion]:
    """An assistant's versions, newest first, those whose metadata matches."""
    return filter_metadata(
        AssistantVersion.objects.filter(assistant=assistant), "metadata", metadata
    ).order_by("-version")


def filter_metadata(qs: QuerySet, field: str, metadata: dict | None) -> QuerySet:
    """Rows whose JSON `field` matches the LangGraph filter `metadata`
    (cronsvc.filters: keys taken literally, @> semantics, $eq/$contains/$or);
    a filter that breaks the grammar is Invalid (422)."""
    try:
        return qs.filter(json_filter(field, metadata, what=field))
    except InvalidFilter as exc:
        raise Invalid(str(exc)) from exc


def order(
    qs: QuerySet, sort_by: str | None, sort_order: str | None, *, allowed: set[str]
) -> QuerySet:
    if not sort_by:
        return qs
    if sort_by not in allowed:
        raise Invalid(f"Cannot sort by '{sort_by}'; use one of {sorted(allowed)}")
    prefix = "-" if (sort_order or "desc").lower() == "desc" else ""
    pk = qs.model._meta.pk.name
    return qs.order_by(f"{prefix}{sort_by}", f"{prefix}{pk}")
