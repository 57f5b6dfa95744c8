"""Writes of assistants."""

from __future__ import annotations

import uuid

from django.db import IntegrityError, transaction

from cronsvc import graphs
from cronsvc.errors import BadRequest, Conflict
from cronsvc.models import Assistant
from cronsvc.selectors import graph_check


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


def config_and_context(config: dict | None, context: dict | None) -> tuple[dict, dict]:
    """`config.configurable` and `context` mirror each other, as on the LangGraph Server:
    the one given is copied to the other; giving both is an error."""
    config = dict(config or {})
    configurable = config.get("configurable") or {}
    if configurable and context:
        raise BadRequest(
            "Cannot specify both configurable and context. Prefer setting context alone. "
            "Context was introduced in LangGraph 0.6.0 and is the long term planned "
            "replacement for configurable."
        )
    if context:
        config["configurable"] = dict(context)
        return config, dict(context)
    return config, dict(configurable)


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
    graph_check(graph_id)
    config, context = config_and_context(config, context)
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
                config=config,
                context=context,
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
        graph_check(graph_id)
        assistant.graph_id = graph_id
    # A non-empty config replaces the old one; a given context replaces it (server rules).
    if config:
        assistant.config, assistant.context = config_and_context(config, context)
    elif context is not None:
        assistant.config, assistant.context = config_and_context(
            {**assistant.config, "configurable": {}}, context
        )
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
def assistant_delete(*, assistant: Assistant, delete_threads: bool = False) -> None:
    """Delete an assistant; with `delete_threads`, also the threads it ran on
    (`metadata.assistant_id`), with their runs and checkpoints."""
    from threads.models import Thread
    from threads.services import thread_delete

    if delete_threads:
        for thread in Thread.objects.filter(metadata__assistant_id=str(assistant.pk)):
            thread_delete(thread=thread)
    from crons.mirror import mirrors_delete_for
    from crons.models import Cron

    mirrors_delete_for(Cron.objects.filter(assistant_id=assistant.pk))
    Assistant.objects.filter(pk=assistant.pk).delete()
