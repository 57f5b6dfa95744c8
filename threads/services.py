"""Writes of threads."""

from __future__ import annotations

import uuid

from django.db import IntegrityError, transaction

from cronsvc import checkpointer
from cronsvc.errors import Conflict
from threads.models import Thread


@transaction.atomic
def thread_create(
    *, thread_id: uuid.UUID | None = None, metadata: dict | None = None, if_exists: str = "raise"
) -> Thread:
    if thread_id is not None:
        existing = Thread.objects.filter(pk=thread_id).first()
        if existing is not None:
            if if_exists == "do_nothing":
                return existing
            raise Conflict(f"Thread {thread_id} already exists")
    try:
        with transaction.atomic():
            return Thread.objects.create(thread_id=thread_id or uuid.uuid4(), metadata=metadata or {})
    except IntegrityError as exc:
        if if_exists == "do_nothing":
            return Thread.objects.get(pk=thread_id)
        raise Conflict(f"Thread {thread_id} already exists") from exc


@transaction.atomic
def thread_update(*, thread: Thread, metadata: dict | None = None) -> Thread:
    thread = Thread.objects.select_for_update().get(pk=thread.pk)
    if metadata is not None:
        thread.metadata = {**thread.metadata, **metadata}
    thread.save()
    return thread


@transaction.atomic
def thread_delete(*, thread: Thread) -> None:
    """Delete a thread with its runs and crons; its checkpoints go after commit."""
    thread_id = str(thread.thread_id)
    Thread.objects.filter(pk=thread.pk).delete()
    transaction.on_commit(lambda: checkpointer.delete_thread(thread_id))
