"""Writes of threads."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from langgraph.errors import InvalidUpdateError

from crons.mirror import mirrors_delete_for
from crons.models import Cron
from cronsvc import checkpointer, custom_auth
from cronsvc.errors import BadRequest, Conflict, ThreadNotFound
from runs.models import Run
from threads import state
from threads import ttl as thread_ttl
from threads.models import Thread
from threads.selectors import thread_auth_q


# Nested without a savepoint (two round trips): no caller goes on in its
# transaction after this failed.
@transaction.atomic(savepoint=False)
def thread_create(
    *,
    thread_id: uuid.UUID | None = None,
    metadata: dict | None = None,
    if_exists: str = "raise",
    ttl: dict | None = None,
) -> Thread:
    """Create a thread; with custom auth, as threads.create allows, storing the
    metadata its handler leaves. `do_nothing` answers an existing thread only
    when the caller may read it (else it is a conflict). `ttl`: {"strategy",
    "ttl"} (validated), else langgraph.json's default (threads.ttl)."""
    value = {"thread_id": thread_id, "metadata": dict(metadata or {}), "if_exists": if_exists}
    custom_auth.authorize("threads", "create", value)
    metadata = value.get("metadata")
    if thread_id is not None:
        existing = Thread.objects.filter(pk=thread_id).first()
        if existing is not None:
            if if_exists == "do_nothing" and (
                custom_auth.current_user() is None
                or Thread.objects.filter(pk=thread_id)
                .filter(thread_auth_q("read", {"thread_id": thread_id}))
                .exists()
            ):
                return existing
            raise Conflict(f"Thread with ID {thread_id} already exists")
    fields = _ttl_fields(ttl or _default_ttl())
    if thread_id is None:  # a new random id: no duplicate to catch in a savepoint
        return Thread.objects.create(thread_id=uuid.uuid4(), metadata=metadata or {}, **fields)
    try:
        with transaction.atomic():
            return Thread.objects.create(thread_id=thread_id, metadata=metadata or {}, **fields)
    except IntegrityError as exc:
        if if_exists == "do_nothing":
            return Thread.objects.get(pk=thread_id)
        raise Conflict(f"Thread with ID {thread_id} already exists") from exc


def _in_flight(thread: Thread) -> list[str]:
    return [
        str(run_id)
        for run_id in Run.objects.filter(
            thread=thread, status__in=(Run.Status.PENDING, Run.Status.RUNNING)
        ).values_list("run_id", flat=True)
    ]


def thread_copy(*, thread: Thread) -> Thread:
    """A new thread with the source's metadata, values, status and every
    checkpoint. Refused (409) while a run is pending or running on the source:
    its checkpoints would change under the copy. The checkpoints are copied
    first, under the new id; the row is written last, so a failure leaves no
    thread without its state."""
    with transaction.atomic():
        source = Thread.objects.select_for_update().get(pk=thread.pk)
        active = _in_flight(source)
        if active:
            raise Conflict(f"Thread {source.thread_id} has in-flight runs: {', '.join(active)}")
        new_id = uuid.uuid4()
        # Custom auth: the copy is a thread the caller creates (threads.create,
        # whose handler may stamp its metadata).
        value = {"thread_id": new_id, "metadata": dict(source.metadata), "if_exists": "raise"}
        custom_auth.authorize("threads", "create", value)
        try:
            checkpointer.copy_thread(str(source.thread_id), str(new_id))
            return Thread.objects.create(
                thread_id=new_id,
                metadata=dict(value.get("metadata") or {}),
                values=source.values,
                status=source.status,
                graph_id=source.graph_id,
            )
        except BaseException:
            checkpointer.delete_thread(str(new_id))
            raise


@transaction.atomic
def threads_prune(*, thread_ids: list[uuid.UUID], strategy: str = "delete") -> int:
    """`delete`: the threads go as `thread_delete` removes one (runs, crons,
    checkpoints); `keep_latest`: only each namespace's latest checkpoint stays.
    Unknown ids are ignored; returns how many threads were pruned."""
    # Custom auth: only threads threads.delete lets the caller remove.
    allowed = thread_auth_q("delete", {"thread_id": None, "run_id": None})
    threads = list(Thread.objects.select_for_update().filter(allowed).filter(pk__in=thread_ids))
    if strategy == "delete":
        for thread in threads:
            thread_delete(thread=thread)
    elif threads:
        ids = [str(thread.thread_id) for thread in threads]
        transaction.on_commit(lambda: checkpointer.prune_keep_latest(ids))
    return len(threads)


def _default_ttl() -> dict | None:
    default = thread_ttl.default()
    return None if default is None else {"strategy": default[0], "ttl": default[1]}


def _ttl_fields(ttl: dict | None) -> dict[str, Any]:
    """A thread's TTL columns for `ttl` ({"strategy", "ttl"} or None), from now."""
    if ttl is None:
        return {}
    return {
        "ttl_strategy": ttl.get("strategy") or "delete",
        "ttl_minutes": float(ttl["ttl"]),
        "expires_at": thread_ttl.expiry(float(ttl["ttl"]), timezone.now()),
    }


@transaction.atomic
def thread_update(
    *, thread: Thread, metadata: dict | None = None, ttl: dict | None = None
) -> Thread:
    """Merge `metadata` in, and set `ttl` (from now) when given; with custom
    auth, as threads.update allows (a thread its filter hides is not found; the
    metadata its handler leaves is stored)."""
    value = {
        "thread_id": thread.pk,
        "metadata": dict(metadata or {}),
        "action": None,
    }
    allowed = thread_auth_q("update", value)
    metadata = value.get("metadata")
    found = Thread.objects.select_for_update().filter(allowed).filter(pk=thread.pk).first()
    if found is None:
        raise ThreadNotFound(f"Thread with ID {value['thread_id']} not found")
    thread = found
    if metadata is not None:
        thread.metadata = {**thread.metadata, **metadata}
    for name, value in _ttl_fields(ttl).items():
        setattr(thread, name, value)
    thread.save()
    return thread


@transaction.atomic
def thread_delete(*, thread: Thread) -> None:
    """Delete a thread with its runs and crons; its checkpoints go after commit."""
    thread_id = str(thread.thread_id)
    mirrors_delete_for(Cron.objects.filter(thread_id=thread.pk))
    Thread.objects.filter(pk=thread.pk).delete()
    transaction.on_commit(lambda: checkpointer.delete_thread(thread_id))


# Threads with no active run, no cron and no open stream, with their runs and
# their events, in one statement (one thread or many); its conditions are read
# after the caller locked the rows.
_DELETE_IDLE_SQL = """
WITH t AS (
    SELECT th.thread_id FROM threads_thread th WHERE th.thread_id = ANY(%(ids)s::uuid[])
    AND NOT EXISTS (SELECT 1 FROM runs_run
                    WHERE thread_id = th.thread_id AND status IN ('pending', 'running'))
    AND NOT EXISTS (SELECT 1 FROM crons_cron WHERE thread_id = th.thread_id)
    AND NOT EXISTS (SELECT 1 FROM runs_threadstream
                    WHERE thread_id = th.thread_id AND expires_at > now())
), events AS (
    DELETE FROM runs_runevent e USING runs_run r, t
    WHERE e.run_id = r.run_id AND r.thread_id = t.thread_id
), runs AS (
    DELETE FROM runs_run r USING t WHERE r.thread_id = t.thread_id
), streams AS (
    DELETE FROM runs_threadstream s USING t WHERE s.thread_id = t.thread_id
)
DELETE FROM threads_thread th USING t WHERE th.thread_id = t.thread_id
RETURNING th.thread_id::text
"""


def threads_delete_if_idle_postgres(*, thread_ids: list[str]) -> set[str]:
    """thread_delete_if_idle_postgres for many threads locked by the caller's
    transaction, in one statement; their checkpoints after commit, in one
    transaction. Returns the ids (as text) of those it deleted."""
    with connection.cursor() as cursor:
        cursor.execute(_DELETE_IDLE_SQL, {"ids": [str(t) for t in thread_ids]})
        deleted = {row[0] for row in cursor.fetchall()}
    if deleted:
        ids = sorted(deleted)
        transaction.on_commit(lambda: checkpointer.delete_threads(ids))
    return deleted


def thread_delete_if_idle_postgres(*, thread_id: uuid.UUID | str) -> bool:
    """thread_delete for a thread locked by the caller's transaction that has
    no pending or running run, no cron and no open stream (a stateless run's
    thread), without
    reading it: its events, runs and row in one statement, its checkpoints
    after commit. False when it has either (then nothing is deleted)."""
    with connection.cursor() as cursor:
        cursor.execute(_DELETE_IDLE_SQL, {"ids": [str(thread_id)]})
        deleted = cursor.fetchone() is not None
    if deleted:
        transaction.on_commit(lambda: checkpointer.delete_thread(str(thread_id)))
    return deleted


@transaction.atomic
def thread_update_state(
    *, thread: Thread, values: Any, as_node: str | None = None, checkpoint: dict | None = None
) -> dict:
    """Write a checkpoint as if `as_node` had returned `values`, then refresh the thread's
    copy of its values and its status. Refused while a run is pending or running on the
    thread (that run would write over it): the thread row lock orders this against
    run_create and the worker's claim."""
    thread = Thread.objects.select_for_update().get(pk=thread.pk)
    active = list(
        Run.objects.filter(
            thread=thread, status__in=(Run.Status.PENDING, Run.Status.RUNNING)
        ).values_list("run_id", flat=True)
    )
    if active:
        raise Conflict(
            f"Thread {thread.thread_id} has in-flight runs: {', '.join(map(str, active))}"
        )
    if not state.graph_id_of(thread):
        raise BadRequest(
            f"Thread '{thread.thread_id}' has no assigned graph ID. Create it with a graph_id "
            "(metadata.graph_id) or run an assistant on it before updating its state."
        )
    try:
        result = state.thread_update_state(
            thread=thread, values=values, as_node=as_node, checkpoint=checkpoint
        )
    except (InvalidUpdateError, ValueError, KeyError) as exc:
        raise BadRequest(f"Invalid state update: {exc}") from exc
    thread.values, pending_nodes = state.latest_values_and_next(thread)
    thread.status = Thread.Status.INTERRUPTED if pending_nodes else Thread.Status.IDLE
    thread.save(update_fields=["values", "status", "updated_at"])
    return result
