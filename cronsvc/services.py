"""Writes of assistants.

Every registered graph has a default assistant (its id derived from the
graph's name, as on the LangGraph Server). `assistants_ensure_defaults`
creates the missing ones: after every migrate (a post_migrate handler, see
cronsvc.apps, which also covers test databases and their flushes), and
wherever an assistant is looked up by the API (`assistant_resolve`, the
assistant search), so a deleted default assistant comes back. Selectors only
read.
"""

from __future__ import annotations

import logging
import uuid

from django.apps import apps as global_apps
from django.db import DEFAULT_DB_ALIAS, IntegrityError, transaction
from django.db.models import Max

from crons.mirror import mirrors_delete_for
from crons.models import Cron
from cronsvc import custom_auth, graphs
from cronsvc.errors import AssistantNotFound, BadRequest, Conflict, Invalid, NotFound
from cronsvc.models import Assistant, AssistantVersion
from cronsvc.selectors import (
    assistant_auth_q,
    assistant_get_or_404,
    assistant_id_from,
    graph_check,
    is_default_assistant_id,
    parse_uuid,
)
from threads.models import Thread
from threads.services import thread_delete

log = logging.getLogger(__name__)


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
    with transaction.atomic():
        Assistant.objects.bulk_create(rows, ignore_conflicts=True)
        # Version 1 of each, once: a restart adds no versions (the constraint).
        AssistantVersion.objects.bulk_create(
            [_version_of(row) for row in rows], ignore_conflicts=True
        )


VERSIONED_FIELDS = ("graph_id", "name", "description", "config", "context", "metadata")


def _version_of(assistant: Assistant) -> AssistantVersion:
    return AssistantVersion(
        assistant_id=assistant.assistant_id,
        version=assistant.version,
        **{field: getattr(assistant, field) for field in VERSIONED_FIELDS},
    )


def assistants_ensure_defaults_after_migrate(*, using: str, apps=None, **kwargs) -> None:
    """post_migrate handler (connected in cronsvc.apps): the default assistants
    exist once the database is migrated. Skipped when the assistants table is
    migrated away, and, with a warning, when langgraph.json cannot be read
    (the API creates them on first use then)."""
    if using != DEFAULT_DB_ALIAS:
        return
    try:
        (apps or global_apps).get_model("cronsvc", "Assistant")
    except LookupError:
        return
    try:
        assistants_ensure_defaults()
    except (OSError, ValueError) as exc:
        log.warning("default assistants not created: cannot read the graphs (%s)", exc)


def assistant_resolve(
    value: str, *, graph_alias: bool = True, action: str | None = "read"
) -> Assistant:
    """The assistant `value` names, as cronsvc.selectors.assistant_get_or_404
    finds it (by id, or with `graph_alias` by graph name, authorizing `action`);
    a default assistant deleted since is created again first, as the LangGraph
    Server always has one per graph."""
    try:
        return assistant_get_or_404(value, graph_alias=graph_alias, action=action)
    except AssistantNotFound:
        assistant_id = assistant_id_from(value) if graph_alias else parse_uuid(value)
        if not is_default_assistant_id(assistant_id):
            raise
    assistants_ensure_defaults()
    return assistant_get_or_404(value, graph_alias=graph_alias, action=action)


def config_and_context(config: dict | None, context: dict | None) -> tuple[dict, dict]:
    """`config.configurable` and `context` mirror each other, as on the LangGraph Server:
    the one given is copied to the other; giving both is an error."""
    config = dict(config or {})
    configurable = config.get("configurable") or {}
    if not isinstance(configurable, dict):
        raise Invalid("Invalid request: config.configurable: Must be a JSON object.")
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
    # Custom auth: the handler sees (and may change) what is stored.
    value = {
        "assistant_id": assistant_id,
        "graph_id": graph_id,
        "config": config,
        "context": context,
        "metadata": dict(metadata or {}),
        "if_exists": if_exists,
        "name": name,
    }
    custom_auth.authorize("assistants", "create", value)
    metadata = value.get("metadata")
    if assistant_id is not None:
        existing = Assistant.objects.select_for_update().filter(pk=assistant_id).first()
        if existing is not None:
            if if_exists == "do_nothing":
                return existing
            raise Conflict(f"Assistant {assistant_id} already exists")
    try:
        with transaction.atomic():
            assistant = Assistant.objects.create(
                assistant_id=assistant_id or uuid.uuid4(),
                graph_id=graph_id,
                config=config,
                context=context,
                metadata=metadata or {},
                name=name or "Untitled",
                description=description,
            )
            _version_of(assistant).save()
            return assistant
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
    """Update `assistant`; with custom auth, as assistants.update allows (an
    assistant its filter hides is not found; the handler may change metadata)."""
    value = {
        "assistant_id": assistant.pk,
        "graph_id": graph_id,
        "config": config,
        "context": context,
        "metadata": dict(metadata or {}),
        "name": name,
        "version": None,
    }
    allowed = assistant_auth_q("update", value)
    metadata = value.get("metadata")
    assistant = (
        Assistant.objects.select_for_update().filter(allowed).filter(pk=assistant.pk).first()
    )
    if assistant is None:
        raise AssistantNotFound(f"Assistant '{value['assistant_id']}' not found")
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
    # A new version after the newest, whichever one is current (set_latest).
    newest = AssistantVersion.objects.filter(assistant=assistant).aggregate(v=Max("version"))["v"]
    assistant.version = max(newest or 0, assistant.version) + 1
    assistant.save()
    _version_of(assistant).save()
    return assistant


@transaction.atomic
def assistant_set_latest(*, assistant: Assistant, version: int) -> Assistant:
    """Make `version` the assistant's current one: its fields are copied back
    onto the assistant; no version is added. With custom auth, as
    assistants.update allows (hidden by its filter: not found)."""
    allowed = assistant_auth_q("update", {"assistant_id": assistant.pk, "version": version})
    found = Assistant.objects.select_for_update().filter(allowed).filter(pk=assistant.pk).first()
    if found is None:
        raise AssistantNotFound(f"Assistant '{assistant.pk}' not found")
    assistant = found
    chosen = AssistantVersion.objects.filter(assistant=assistant, version=version).first()
    if chosen is None:
        raise NotFound(f"Assistant {assistant.assistant_id} has no version {version}")
    for field in VERSIONED_FIELDS:
        setattr(assistant, field, getattr(chosen, field))
    assistant.version = chosen.version
    assistant.save()
    return assistant


@transaction.atomic
def assistant_delete(*, assistant: Assistant, delete_threads: bool = False) -> None:
    """Delete an assistant; with `delete_threads`, also the threads it ran on
    (`metadata.assistant_id`), with their runs and checkpoints. With custom
    auth, as assistants.delete allows (hidden by its filter: not found)."""
    allowed = assistant_auth_q("delete", {"assistant_id": assistant.pk})
    if not Assistant.objects.filter(allowed).filter(pk=assistant.pk).exists():
        raise AssistantNotFound(f"Assistant '{assistant.pk}' not found")
    if delete_threads:
        for thread in Thread.objects.filter(metadata__assistant_id=str(assistant.pk)):
            thread_delete(thread=thread)
    mirrors_delete_for(Cron.objects.filter(assistant_id=assistant.pk))
    Assistant.objects.filter(pk=assistant.pk).delete()
