"""Writes of assistants."""

from __future__ import annotations

import uuid

from django.db import IntegrityError, transaction

from cronsvc import graphs
from cronsvc.errors import Conflict, Invalid
from cronsvc.models import Assistant

def assistants_ensure_defaults() -> None:
    """Create the default assistant of every registered graph (idempotent).

    Reads first, so the common case takes no write lock."""
    wanted = {graphs.default_assistant_id(g): g for g in graphs.graph_ids()}
    if Assistant.objects.filter(pk__in=wanted).count() == len(wanted):
        return
    rows = [
        Assistant(
            assistant_id=graphs.default_assistant_id(graph_id),
            graph_id=graph_id,
            name=graph_id,
            metadata={"created_by": "system"},
        )
        for graph_id in graphs.graph_ids()
    ]
    Assistant.objects.bulk_create(rows, ignore_conflicts=True)


def _check_graph(graph_id: str) -> None:
    if graph_id not in graphs.graph_specs():
        raise Invalid(
            f"Graph '{graph_id}' is not registered; known graphs: {', '.join(graphs.graph_ids())}"
        )


@transaction.atomic
def assistant_create(
    *,
    graph_id: str,
    assistant_id: uuid.UUID | None = None,
    config: dict | None = None,
    context: dict | None = None,
    metadata: dict | None = None,
    name: str | None = None,
    description: str | None = None,
    if_exists: str = "raise",
) -> Assistant:
    _check_graph(graph_id)
    if assistant_id is not None:
        existing = Assistant.objects.select_for_update().filter(pk=assistant_id).first()
        if existing is not None:
            if if_exists == "do_nothing":
                return existing
            raise Conflict(f"Assistant {assistant_id} already exists")
    try:
        with transaction.atomic():
            return Assistant.objects.create(
                assistant_id=assistant_id or uuid.uuid4(),
                graph_id=graph_id,
                config=config or {},
                context=context or {},
                metadata=metadata or {},
                name=name or "Untitled",
                description=description,
            )
    except IntegrityError as exc:
        raise Conflict(f"Assistant {assistant_id} already exists") from exc


@transaction.atomic
def assistant_update(
    *,
    assistant: Assistant,
    graph_id: str | None = None,
    config: dict | None = None,
    context: dict | None = None,
    metadata: dict | None = None,
    name: str | None = None,
    description: str | None = None,
) -> Assistant:
    assistant = Assistant.objects.select_for_update().get(pk=assistant.pk)
    if graph_id is not None:
        _check_graph(graph_id)
        assistant.graph_id = graph_id
    if config is not None:
        assistant.config = config
    if context is not None:
        assistant.context = context
    if metadata is not None:
        assistant.metadata = {**assistant.metadata, **metadata}
    if name is not None:
        assistant.name = name
    if description is not None:
        assistant.description = description
    assistant.version += 1
    assistant.save()
    return assistant


@transaction.atomic
def assistant_delete(*, assistant: Assistant) -> None:
    Assistant.objects.filter(pk=assistant.pk).delete()
